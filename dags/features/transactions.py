"""Feast definitions of the one-table example (``example_one_table.py``): card transactions.

The entity is the id that repeats from row to row (``card_id``); the feature view reads the same
file the labels come from, with the row's own timestamp as ``timestamp_field``, and lists the
feature columns only — never the label.
"""

from __future__ import annotations

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, String

from airflow_mlpipe.factories.render import mlpipe_env

DATA_DIR = mlpipe_env("MLPIPE_DATA_DIR", "{airflow_home}/mlpipe/data/transactions")

card = Entity(name="card", join_keys=["card_id"], value_type=ValueType.INT64)

transactions = FileSource(
    name="transactions",
    path=f"{DATA_DIR}/transactions.parquet",
    timestamp_field="event_timestamp",
)

transaction_features = FeatureView(
    name="transaction_features",
    entities=[card],
    # each row is joined with its own values (stamped at its own time); the TTL only has to be > 0
    ttl=timedelta(days=1),
    schema=[Field(name="amount", dtype=Float64), Field(name="merchant_category", dtype=String)],
    source=transactions,
    online=False,
)

transactions_model = FeatureService(name="transactions_model", features=[transaction_features])
