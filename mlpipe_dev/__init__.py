"""Development-only support beside the provider, never in its wheel.

The demo driver (:mod:`mlpipe_dev.demo`), the embedded Airflow/MLflow stack (:mod:`mlpipe_dev.local`),
the loopback load generator (:mod:`mlpipe_dev.loadgen`) and the seeded churn use case
(:mod:`mlpipe_dev.churn_data`), used by ``make demo``, the tests and the benchmarks.
"""
