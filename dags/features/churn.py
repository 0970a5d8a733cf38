"""Feast definitions of the churn use case, applied by the ``features.apply`` task of churn_training.

Versioned with the DAGs: their digest is recorded as lineage on the training set and the model.
The batch source is the directory of daily feature files under ``MLPIPE_DATA_DIR`` (read when the
apply task runs, with the same embedded default as ``config/churn.yaml``).
"""

from __future__ import annotations

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String

from airflow_mlpipe.factories.render import mlpipe_env

DATA_DIR = mlpipe_env("MLPIPE_DATA_DIR", "{airflow_home}/mlpipe/data/churn")

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)

customer_daily = FileSource(
    name="customer_daily",
    path=f"{DATA_DIR}/features",
    timestamp_field="event_timestamp",
)

customer_features = FeatureView(
    name="customer_features",
    entities=[customer],
    ttl=timedelta(days=30),
    schema=[
        Field(name="tenure_months", dtype=Int64),
        Field(name="monthly_charges", dtype=Float64),
        Field(name="support_calls_30d", dtype=Int64),
        Field(name="usage_gb", dtype=Float64),
        Field(name="contract_type", dtype=String),
        Field(name="region", dtype=String),
        Field(name="payment_method", dtype=String),
    ],
    source=customer_daily,
    online=True,
)

churn_model = FeatureService(name="churn_model", features=[customer_features])
