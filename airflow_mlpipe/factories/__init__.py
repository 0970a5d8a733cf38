"""DAG factories: typed config → plain graph description → Airflow DAG.

Use :func:`~airflow_mlpipe.factories.pipelines.training_dag` and
:func:`~airflow_mlpipe.factories.pipelines.monitoring_dag` from a DAG file.
"""
