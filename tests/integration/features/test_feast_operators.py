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


def test_an_asset_triggered_run_materializes_the_batch_that_triggered_it(run_dag, feast_repo, tmp_path):
    """Each validated daily batch triggers a materialization of its own time: the second run writes
    the second day (and the hour of overlap before it), not the history again."""
    from airflow.sdk import DAG

    from airflow_mlpipe.core.lineage import stage_asset
    from airflow_mlpipe.operators.feast import FeastApplyOperator, FeastMaterializeOperator
    from airflow_mlpipe.operators.great_expectations import DataValidationOperator
    from tests.fixtures.airflow import run_asset_triggered

    suffix = uuid.uuid4().hex[:8]
    batch_asset = stage_asset("validation", f"batches_{suffix}.validated")
    store = {"config": feast_repo.config, "feast_conn_id": "mlpipe_feast_absent"}
    with DAG(f"batches_{suffix}", schedule=None, start_date=START) as producer:
        DataValidationOperator(
            task_id="validate",
            dataset_uri="{{ dag_run.conf['batch'] }}",
            suite=[{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}}],
            timestamp_column="event_timestamp",
            outlets=[batch_asset],
        )
    with DAG(f"features_{suffix}", schedule=[batch_asset], start_date=START) as consumer:
        apply = FeastApplyOperator(task_id="apply", definitions=str(feast_repo.definitions), **store)
        materialize = FeastMaterializeOperator(
            task_id="materialize", feature_views=["profile"], overlap=dt.timedelta(hours=1), **store
        )
        apply >> materialize

    profile = feast_repo.profile
    day = dt.timedelta(days=1)
    runs = []
    for i in range(2):
        batch = profile[
            (profile.event_timestamp >= START + i * day) & (profile.event_timestamp < START + (i + 1) * day)
        ]
        path = tmp_path / f"batch_{i}.parquet"
        batch.to_parquet(path, index=False)
        validated = run_dag(producer, run_conf={"batch": str(path)})
        assert validated.state == "success", validated.task_states
        [(_, extra)] = validated.asset_events()
        assert extra["time_range"] == {
            "column": "event_timestamp",
            "start": batch.event_timestamp.min().isoformat(),
            "end": batch.event_timestamp.max().isoformat(),
        }
        run = run_asset_triggered(consumer, validated)
        assert run.state == "success", run.task_states
        assert run.dag_run.run_type == "asset_triggered" and run.dag_run.data_interval_start is None
        runs.append((batch, run.xcom("materialize")))

    (first_batch, first), (second_batch, second) = runs
    # first run: the batch, reaching back over the view's TTL (never materialized before)
    assert first["rows_written"] == first_batch.customer_id.nunique()
    end = second_batch.event_timestamp.max() + dt.timedelta(microseconds=1)
    assert second["window_end"] == end.isoformat()
    # second run: from where the first ended (its batch's last row), less the overlap
    lo = first_batch.event_timestamp.max() + dt.timedelta(microseconds=1) - dt.timedelta(hours=1)
    assert second["window_start"] == lo.isoformat()
    written = profile[(profile.event_timestamp >= lo) & (profile.event_timestamp < end)]
    assert second["rows_written"] == written.customer_id.nunique()
    history = profile[profile.event_timestamp < end]
    assert second["rows_written"] < history.customer_id.nunique()
    assert first["window_source"] == second["window_source"] == "triggering_batch"
