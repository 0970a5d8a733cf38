"""Production-style store: Redis online store + SQL registry on PostgreSQL (this machine's servers).

Each run uses its own PostgreSQL database and its own Feast project (Redis keys end with the
project name), and removes both at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
import yaml

from airflow_mlpipe.config.features import MaterializeConfig, TrainingSetConfig
from tests.fixtures.features import DAYS, START

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_database(postgres_dsn):
    import psycopg

    name = f"mlpipe_feast_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_redis_online_store_and_postgres_registry_through_a_connection(
    feast_repo, pg_database, redis_url, monkeypatch
):
    import pandas as pd
    import redis

    from airflow_mlpipe.features.definitions import apply_definitions, load_definitions
    from airflow_mlpipe.features.materialize import materialize_window
    from airflow_mlpipe.features.online import OnlineFeatureReader
    from airflow_mlpipe.features.training_set import retrieve
    from airflow_mlpipe.hooks.feast import FeastHook

    project = f"mlpipe_{uuid.uuid4().hex[:10]}"
    # The repository's feature_store.yaml is the embedded-style layout; the connection turns it into
    # the production store. The database user comes from the environment, never from the spec.
    (feast_repo.root / "feature_store.yaml").write_text(yaml.safe_dump(feast_repo.config))
    monkeypatch.setenv("MLPIPE_TEST_PG_USER", "postgres")
    extra = {
        "project": project,
        "online_store": {"type": "redis", "connection_string": "127.0.0.1:6379,db=0"},
        "registry": {
            "registry_type": "sql",
            "path": f"postgresql+psycopg://${{MLPIPE_TEST_PG_USER}}@127.0.0.1:5432/{pg_database}",
            "cache_ttl_seconds": 60,
        },
    }
    conn = {"conn_type": "mlpipe_feast", "host": str(feast_repo.root), "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_MLPIPE_FEAST_PROD", json.dumps(conn))
    hook = FeastHook("mlpipe_feast_prod")
    config = hook.repo_config()
    assert config["project"] == project
    assert "${MLPIPE_TEST_PG_USER}" in config["registry"]["path"]  # unexpanded in what travels
    store = hook.get_store()
    client = redis.Redis.from_url(redis_url)
    try:
        apply_definitions(store, load_definitions(str(feast_repo.definitions)))
        assert hook.test_connection()[0]
        # Registry lives in PostgreSQL: a fresh store (another process) sees the service.
        assert [s.name for s in FeastHook("mlpipe_feast_prod").get_store().list_feature_services()] == [
            "churn_service"
        ]
        window = MaterializeConfig(start=START, end=START + dt.timedelta(days=DAYS))
        first = materialize_window(store, window)
        again = materialize_window(store, window)
        assert [s["rows_written"] for s in first] == [s["rows_written"] for s in again]
        assert {s["feature_view"]: s["rows_written"] for s in first}["profile"] == (
            feast_repo.profile.customer_id.nunique()
        )
        assert any(project.encode() in k for k in client.scan_iter(count=1000))

        ids = [int(i) for i in feast_repo.profile.customer_id.unique()[:25]]
        at = pd.Timestamp(START + dt.timedelta(days=DAYS))
        offline, info = retrieve(
            store,
            TrainingSetConfig(feature_service="churn_service", entity_source="now"),
            pd.DataFrame({"customer_id": ids, "event_timestamp": [at] * len(ids)}),
        )
        spec = json.loads(json.dumps({"repo_config": config, "feature_service": "churn_service"}))
        online = OnlineFeatureReader.from_spec(spec).read([{"customer_id": i} for i in ids])
        pd.testing.assert_frame_equal(online.astype(float), offline[info.features].astype(float))
    finally:
        store.teardown()
    assert not [k for k in client.scan_iter(match=b"*" + project.encode(), count=1000)]
