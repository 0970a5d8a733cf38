"""Training logic as plain functions (data checks, fitting, metrics, MLflow logging, search).

The operators in :mod:`airflow_mlpipe.operators.mlflow` only wire these to Airflow; heavy libraries
are imported inside the functions.
"""
