"""Feast's PostgreSQL offline store: training sets joined in the database and streamed to parquet.

The same seeded data as the file-store tests (``tests/fixtures/features.py``) is loaded into a
PostgreSQL database of its own (dropped at the end); one store reads it from parquet files, the
other from tables and a query. Their training sets must be the same file, row for row.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path
from typing import Any

import pytest

from airflow_mlpipe.config.features import MaterializeConfig, TrainingSetConfig
from airflow_mlpipe.exceptions import ConfigError
from tests.fixtures.features import DAYS, START, FeastRepo, build_feast_repo, expected_point_in_time
from tests.fixtures.services import fresh_database

pytestmark = [pytest.mark.integration, pytest.mark.scale]
DAY = dt.timedelta(days=1)
PG_DEFINITIONS = """\
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, ValueType
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.types import Float64, Int64

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)

profile = FeatureView(
    name="profile",
    entities=[customer],
    ttl=timedelta(days=30),
    schema=[Field(name="spend", dtype=Float64), Field(name="tenure", dtype=Int64)],
    source=PostgreSQLSource(name="profile_source", table="profile", timestamp_field="event_timestamp"),
)

activity = FeatureView(
    name="activity",
    entities=[customer],
    ttl=timedelta(days=30),
    schema=[Field(name="calls", dtype=Int64)],
    source=PostgreSQLSource(
        name="activity_source",
        query="SELECT customer_id, event_timestamp, calls FROM activity",
        timestamp_field="event_timestamp",
    ),
)

churn_service = FeatureService(name="churn_service", features=[activity, profile])
"""


@dataclasses.dataclass
class Warehouse:
    repo: FeastRepo  # the file-store repository (parquet sources)
    database: str
    config: dict[str, Any]  # the postgres-store configuration
    definitions: Path
    file_store: Any = None
    pg_store: Any = None


def _offline(database: str) -> dict[str, Any]:
    return {
        "type": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "database": database,
        "db_schema": "public",
        "user": "postgres",
        "password": "",
        "sslmode": "disable",
    }


def _load_tables(database: str, repo: FeastRepo) -> None:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}", autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE profile (customer_id bigint, event_timestamp timestamptz, "
            "spend double precision, tenure bigint)"
        )
        conn.execute("CREATE TABLE activity (customer_id bigint, event_timestamp timestamptz, calls bigint)")
        for table, frame in (("profile", repo.profile), ("activity", repo.activity)):
            with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                for row in frame.itertuples(index=False):
                    copy.write_row(tuple(row))


def _store(config: dict[str, Any], definitions: Path) -> Any:
    from airflow_mlpipe.features.definitions import apply_definitions, load_definitions
    from airflow_mlpipe.hooks.feast import FeastHook

    store = FeastHook("mlpipe_feast_absent", config=config).get_store()
    apply_definitions(store, load_definitions(str(definitions)))
    return store


@pytest.fixture(scope="module")
def warehouse(postgres_dsn, tmp_path_factory):
    with fresh_database(postgres_dsn, "mlpipe_pgoffline") as database:
        root = tmp_path_factory.mktemp("pg_offline")
        repo = build_feast_repo(root)
        _load_tables(database, repo)
        definitions = root / "pg_definitions" / "churn.py"
        definitions.parent.mkdir()
        definitions.write_text(PG_DEFINITIONS)
        config = {
            **repo.config,
            "project": "mlpipe_pg",
            "registry": {"registry_type": "file", "path": "pg_registry.db", "cache_ttl_seconds": 0},
            "online_store": {"type": "sqlite", "path": "pg_online.db"},
            "offline_store": _offline(database),
        }
        wh = Warehouse(repo=repo, database=database, config=config, definitions=definitions)
        wh.file_store = _store(repo.config, repo.definitions)
        wh.pg_store = _store(config, definitions)
        yield wh


def _entities(repo: FeastRepo) -> Any:
    """The labels, with duplicated rows (same key and timestamp) and no sorted order."""
    import pandas as pd

    labels = repo.labels
    return pd.concat([labels, labels.iloc[[3, 3, 10]]], ignore_index=True).sample(frac=1.0, random_state=3)


def _sets(store: Any, entities: Any, out: Path, held: Any = None, **cfg: Any) -> Any:
    from airflow.sdk import ObjectStoragePath

    from airflow_mlpipe.features.training_output import write_training_sets

    config = TrainingSetConfig(
        feature_service="churn_service", entity_source="labels", label="churned", **cfg
    )
    return write_training_sets(store, config, entities, ObjectStoragePath(f"file://{out}"), held)


def test_postgres_training_set_is_the_file_store_one_streamed_in_row_groups(warehouse, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    from airflow_mlpipe.core.datasets import frame_digest, read_table

    entities = _entities(warehouse.repo)
    from_files = _sets(warehouse.file_store, entities, tmp_path / "file")
    from_pg = _sets(warehouse.pg_store, entities, tmp_path / "pg", chunk_rows=16)
    assert (from_files.offline_store, from_pg.offline_store) == ("file", "postgres")

    want, got = read_table(from_files.training.uri), read_table(from_pg.training.uri)
    assert list(got.columns) == ["customer_id", "event_timestamp", "churned", "calls", "spend", "tenure"]
    pd.testing.assert_frame_equal(got, want)  # values, nulls, dtypes, row order
    assert from_pg.training.digest == from_files.training.digest == frame_digest(got)
    assert from_pg.training.rows == len(entities)
    assert got["customer_id"].tolist() == entities["customer_id"].tolist()
    assert str(got["event_timestamp"].dt.tz) == "UTC"

    # Point in time, against a reference computed without Feast: no feature stamped after a row's
    # timestamp reaches it, and a row without a valid value has nulls.
    ttl = dt.timedelta(days=30)
    ordered = entities.reset_index(drop=True)
    profile = expected_point_in_time(ordered, warehouse.repo.profile, ["spend", "tenure"], ttl)
    calls = expected_point_in_time(ordered, warehouse.repo.activity, ["calls"], ttl)
    for column, reference in (("spend", profile), ("tenure", profile), ("calls", calls)):
        pd.testing.assert_series_equal(got[column].astype(float), reference[column], check_names=False)
    assert got["spend"].isna().any() and got["spend"].notna().any()

    # Streamed: one row group per chunk of 16 rows, none larger.
    meta = pq.ParquetFile(from_pg.training.uri.removeprefix("file://")).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert meta.num_row_groups == math.ceil(len(entities) / 16) == from_pg.training.row_groups
    assert max(sizes) == 16 and sum(sizes) == len(entities)


def test_fetches_through_a_server_side_cursor_a_chunk_at_a_time(warehouse, tmp_path, monkeypatch):
    import psycopg

    fetched: list[tuple[str, int]] = []
    original = psycopg.ServerCursor.fetchmany

    def recording(self, size=0):
        rows = original(self, size)
        fetched.append((type(self).__name__, len(rows)))
        return rows

    monkeypatch.setattr(psycopg.ServerCursor, "fetchmany", recording)
    entities = _entities(warehouse.repo)
    streamed = _sets(warehouse.pg_store, entities, tmp_path, chunk_rows=10)
    assert streamed.training.rows == len(entities)
    # Every row came through the named (server-side) cursor, never more than a chunk per fetch.
    assert sum(n for _, n in fetched) == len(entities)
    assert {kind for kind, _ in fetched} == {"ServerCursor"}
    assert max(n for _, n in fetched) == 10 and len(fetched) >= math.ceil(len(entities) / 10)
    # The scratch table with the entity keys is gone.
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{warehouse.database}") as conn:
        left = conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'mlpipe_entities_%' "
            "OR tablename LIKE 'feast_entity_df_%'"
        ).fetchall()
    assert left == []


def test_holdout_rows_stream_to_their_own_file(warehouse, tmp_path):
    import numpy as np
    import pandas as pd

    from airflow_mlpipe.core.datasets import frame_digest, read_table

    entities = _entities(warehouse.repo).reset_index(drop=True)
    held = pd.Series(np.arange(len(entities)) % 4 == 0)
    sets = _sets(warehouse.pg_store, entities, tmp_path / "pg", held, chunk_rows=7)
    whole = _sets(warehouse.file_store, entities, tmp_path / "file")
    train, holdout = read_table(sets.training.uri), read_table(sets.holdout.uri)
    expected = read_table(whole.training.uri)
    pd.testing.assert_frame_equal(train, expected[~held].reset_index(drop=True))
    pd.testing.assert_frame_equal(holdout, expected[held].reset_index(drop=True))
    assert (sets.training.rows, sets.holdout.rows) == (int((~held).sum()), int(held.sum()))
    assert sets.training.digest == frame_digest(train) and sets.holdout.digest == frame_digest(holdout)


def test_materialize_from_postgres_counts_each_row_once(warehouse):
    from airflow_mlpipe.features.materialize import materialize_window
    from airflow_mlpipe.features.online import OnlineFeatureReader

    repo, store = warehouse.repo, warehouse.pg_store
    total = 0
    for day in range(DAYS):
        window = MaterializeConfig(start=START + day * DAY, end=START + (day + 1) * DAY)
        counts = {s["feature_view"]: s["rows_written"] for s in materialize_window(store, window)}
        lo, hi = window.start, window.end
        in_window = repo.profile[(repo.profile.event_timestamp >= lo) & (repo.profile.event_timestamp < hi)]
        # Rows stamped exactly at the next midnight belong to the next day only.
        assert counts["profile"] == in_window.customer_id.nunique(), (day, counts)
        total += counts["profile"]
    assert total == len(repo.profile)
    latest = repo.profile.sort_values("event_timestamp").groupby("customer_id").last()
    reader = OnlineFeatureReader(warehouse.config, "churn_service")
    online = reader.read([{"customer_id": int(i)} for i in latest.index])
    assert online["spend"].tolist() == latest["spend"].tolist()


def test_sources_and_settings_that_do_not_fit_are_refused(warehouse, tmp_path):
    from airflow_mlpipe.features.definitions import apply_definitions, load_definitions
    from airflow_mlpipe.hooks.feast import FeastHook

    pg_defs = load_definitions(str(warehouse.definitions))
    with pytest.raises(
        ConfigError, match=r"needs the postgres offline store.*'file'.*\"type\": \"postgres\""
    ):
        apply_definitions(warehouse.file_store, pg_defs)
    file_defs = load_definitions(str(warehouse.repo.definitions))
    with pytest.raises(ConfigError, match="cannot be read by the postgres offline store.*PostgreSQLSource"):
        apply_definitions(warehouse.pg_store, file_defs)

    no_host = {k: v for k, v in _offline(warehouse.database).items() if k not in ("host", "password")}
    with pytest.raises(ConfigError, match=r"lacks \['host', 'password'\].*connection's extra"):
        FeastHook("mlpipe_feast_absent", config={**warehouse.config, "offline_store": no_host}).repo_config()

    broken = tmp_path / "broken.py"
    broken.write_text(
        PG_DEFINITIONS.replace('table="profile", ', "").replace(
            'name="profile_source"', 'name="profile_source", query=None'
        )
    )
    with pytest.raises(ConfigError, match="'profile_source' needs exactly one of table=.*neither"):
        apply_definitions(warehouse.pg_store, load_definitions(str(broken)))
    with pytest.raises(ConfigError, match="chunk_rows must be a positive integer"):
        TrainingSetConfig(feature_service="s", entity_source="e", chunk_rows=0)


def test_training_set_operator_with_the_postgres_offline_store(warehouse, run_dag):
    import uuid

    from airflow_mlpipe.core.datasets import frame_digest, read_table
    from tests.integration.features.test_training_window import _dag

    dag_id = f"pg_offline_{uuid.uuid4().hex[:8]}"
    repo = dataclasses.replace(warehouse.repo, config=warehouse.config, definitions=warehouse.definitions)
    result = run_dag(_dag(dag_id, repo, holdout={"method": "time", "fraction": 0.25}, chunk_rows=20))
    assert result.state == "success", result.task_states
    out = result.xcom("training_set")
    train, held = read_table(out["training_set_uri"]), read_table(out["holdout_set_uri"])
    assert out["offline_store"] == "postgres"
    assert out["row_count"] == len(train) and len(train) + len(held) == len(warehouse.repo.labels)
    assert out["digest"] == frame_digest(train) and out["holdout"]["digest"] == frame_digest(held)
    assert train["event_timestamp"].max() < held["event_timestamp"].min()
    assert list(train.columns) == ["customer_id", "event_timestamp", "churned", "calls", "spend", "tenure"]
    lineage = dict(result.asset_events())[f"mlpipe://features/{dag_id}.training_set"]
    assert lineage["offline_store"] == "postgres" and lineage["training_set_uri"] == out["training_set_uri"]
