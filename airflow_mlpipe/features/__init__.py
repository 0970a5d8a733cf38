"""The feature store stage (Feast): definitions, materialization, training sets, online reads.

Plain functions used by :mod:`airflow_mlpipe.operators.feast` and by the serving process
(:mod:`airflow_mlpipe.features.online`). Feast and pandas are imported inside functions only.
"""
