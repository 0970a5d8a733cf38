"""Evaluation gate logic as plain functions: metrics, criteria, report, promotion.

The Airflow operators in :mod:`airflow_mlpipe.operators.evaluation` are a thin layer over these
modules. Nothing here imports a heavy library at module level.
"""
