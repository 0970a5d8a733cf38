"""The Feast operators in real DAG runs (``dag.test()`` on the real metadata DB)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from tests.fixtures.features import START

pytestmark = pytest.mark.integration


def _dag(dag_id, repo, definitions):
    from airflow.sdk import DAG

    from airflow_mlpipe.core.lineage import stage_asset
    from airflow_mlpipe.features.materialize import feature_view_assets
    from airflow_mlpipe.operators.feast import (
        FeastApplyOperator,
        FeastMaterializeOperator,
        FeastOnlineFeaturesOperator,
        FeastTrainingSetOperator,
    )

    store = {"config": repo.config, "feast_conn_id": "mlpipe_feast_absent"}
    with DAG(
        dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        render_template_as_native_obj=True,
    ) as dag:
        apply = FeastApplyOperator(
            task_id="apply",
            definitions=definitions,
            outlets=[stage_asset("features", f"{dag_id}.defs")],
            **store,
        )
        materialize = FeastMaterializeOperator(
            task_id="materialize",
            overlap=dt.timedelta(hours=1),
            # dag.test() runs are manual, with an empty data interval: the window comes from conf,
            # as in a backfill of explicit days.
            start="{{ dag_run.conf['start'] }}",
            end="{{ dag_run.conf['end'] }}",
            outlets=feature_view_assets(["profile", "activity"]),
            **store,
        )
        training = FeastTrainingSetOperator(
            task_id="training_set",
            feature_service="churn_service",
            entity_source=repo.labels_uri,
            label="churned",
            outlets=[stage_asset("features", f"{dag_id}.training_set")],
            **store,
        )
        online = FeastOnlineFeaturesOperator(
            task_id="online",
            online_spec="{{ ti.xcom_pull(task_ids='training_set')['online_spec'] }}",
            entity_rows=[{"customer_id": int(i)} for i in repo.profile.customer_id.unique()[:5]],
        )
        apply >> materialize >> training >> online
    return dag


def test_pipeline_of_feast_operators_over_two_daily_runs(run_dag, feast_repo):
    import pandas as pd

    from airflow_mlpipe.core.datasets import frame_digest, read_table

    dag_id = f"feast_ops_{uuid.uuid4().hex[:8]}"
    dag = _dag(dag_id, feast_repo, str(feast_repo.definitions))
    day = dt.timedelta(days=1)
    first = run_dag(dag, run_conf={"start": START.isoformat(), "end": (START + day).isoformat()})
    assert first.state == "success", first.task_states

    applied = first.xcom("apply")
    assert applied["digest"].startswith("sha256:")
    assert applied["objects"]["FeatureService"] == ["churn_service"]
    assert set(applied["feature_services"]) == {"churn_service"}

    mat = first.xcom("materialize")
    assert mat["window_start"] == (START - dt.timedelta(hours=1)).isoformat()
    assert mat["window_end"] == (START + dt.timedelta(days=1)).isoformat()
    day0 = feast_repo.profile[feast_repo.profile.event_timestamp < START + dt.timedelta(days=1)]
    by_view = {s["feature_view"]: s for s in mat["feature_views"]}
    assert by_view["profile"]["rows_written"] == day0.customer_id.nunique()

    events = dict(first.asset_events())
    assert events["mlpipe://features/profile"]["rows_written"] == by_view["profile"]["rows_written"]
    assert events["mlpipe://features/activity"]["feature_view"] == "activity"
    assert events[f"mlpipe://features/{dag_id}.defs"]["digest"] == applied["digest"]

    ts = first.xcom("training_set")
    for key in (
        "training_set_uri", "row_count", "digest", "feature_service", "feature_service_version",
        "features", "entity_columns", "timestamp_column", "label", "online_spec",
    ):  # fmt: skip
        assert key in ts, key
    frame = read_table(ts["training_set_uri"])
    assert ts["row_count"] == len(frame) == len(feast_repo.labels)
    assert ts["digest"] == frame_digest(frame)
    assert frame["customer_id"].tolist() == feast_repo.labels["customer_id"].tolist()
    assert ts["features"] == ["calls", "spend", "tenure"] and ts["label"] == "churned"
    lineage = events[f"mlpipe://features/{dag_id}.training_set"]
    assert lineage["feature_service_version"] == applied["feature_services"]["churn_service"]
    assert "online_spec" not in lineage

    online = first.xcom("online")
    assert online["features"] == ts["features"]
    assert len(online["rows"]) == 5

    second = run_dag(dag, run_conf={"start": (START + day).isoformat(), "end": (START + 2 * day).isoformat()})
    assert second.state == "success", second.task_states
    mat2 = second.xcom("materialize")
    assert mat2["window_start"] == (START + dt.timedelta(days=1, hours=-1)).isoformat()
    lo = START + dt.timedelta(days=1, hours=-1)
    hi = START + dt.timedelta(days=2)
    in_window = feast_repo.profile[
        (feast_repo.profile.event_timestamp >= lo) & (feast_repo.profile.event_timestamp < hi)
    ]
    assert {s["feature_view"]: s for s in mat2["feature_views"]}["profile"]["rows_written"] == (
        in_window.customer_id.nunique()
    )
    # What serving reads now is the latest value of each customer up to the end of day two.
    latest = (
        feast_repo.profile[feast_repo.profile.event_timestamp < hi]
        .sort_values("event_timestamp")
        .groupby("customer_id")
        .last()
    )
    for row in second.xcom("online")["rows"]:
        assert row["spend"] == pytest.approx(latest.loc[row["customer_id"], "spend"])
    assert isinstance(pd.Timestamp(mat2["feature_views"][0]["materialized_at"]), pd.Timestamp)


def test_failures_emit_no_asset_event(run_dag, feast_repo):
    from airflow.sdk import DAG

    from airflow_mlpipe.core.lineage import stage_asset
    from airflow_mlpipe.operators.feast import FeastApplyOperator, FeastTrainingSetOperator

    dag_id = f"feast_bad_{uuid.uuid4().hex[:8]}"
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        apply = FeastApplyOperator(
            task_id="apply", definitions=str(feast_repo.definitions), config=feast_repo.config
        )
        bad = FeastTrainingSetOperator(
            task_id="training_set",
            feature_service="no_such_service",
            entity_source=feast_repo.labels_uri,
            config=feast_repo.config,
            outlets=[stage_asset("features", f"{dag_id}.training_set")],
        )
        apply >> bad
    result = run_dag(dag)
    assert result.task_states == {"apply": "success", "training_set": "failed"}
    assert result.asset_events() == []
