"""Data validation with Great Expectations: suite loading, distribution shift, runs, Data Docs.

The logic lives in plain functions (:func:`airflow_mlpipe.validation.runner.validate_dataset`);
:class:`~airflow_mlpipe.operators.great_expectations.DataValidationOperator` is a thin wrapper.
"""
