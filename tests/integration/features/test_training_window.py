"""The training-set stage chooses its window and holds out the newest rows (real Feast, real DAG runs)."""

from __future__ import annotations

import uuid

import pytest

from tests.fixtures.features import START

pytestmark = pytest.mark.integration


def _dag(dag_id, repo, **training_args):
    from airflow.sdk import DAG

    from airflow_mlpipe.core.lineage import stage_asset
    from airflow_mlpipe.operators.feast import FeastApplyOperator, FeastTrainingSetOperator

    store = {"config": repo.config, "feast_conn_id": "mlpipe_feast_absent"}
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        apply = FeastApplyOperator(task_id="apply", definitions=str(repo.definitions), **store)
        training = FeastTrainingSetOperator(
            task_id="training_set",
            feature_service="churn_service",
            entity_source=repo.labels_uri,
            label="churned",
            outlets=[stage_asset("features", f"{dag_id}.training_set")],
            **training_args,
            **store,
        )
        apply >> training
    return dag


def _keys(frame):
    return set(zip(frame["customer_id"], frame["event_timestamp"], strict=True))


def test_time_holdout_is_the_newest_rows_and_never_trained_on(run_dag, feast_repo):
    from airflow_mlpipe.core.datasets import read_table

    dag_id = f"window_time_{uuid.uuid4().hex[:8]}"
    result = run_dag(_dag(dag_id, feast_repo, holdout={"method": "time", "fraction": 0.25}))
    assert result.state == "success", result.task_states
    out = result.xcom("training_set")
    train, held = read_table(out["training_set_uri"]), read_table(out["holdout_set_uri"])
    assert len(train) + len(held) == len(feast_repo.labels)
    assert len(held) == pytest.approx(0.25 * len(feast_repo.labels), abs=2)
    assert not _keys(train) & _keys(held)
    assert train["event_timestamp"].max() < held["event_timestamp"].min()  # out of time
    assert held.columns.tolist() == train.columns.tolist()  # scored like training rows
    lineage = dict(result.asset_events())[f"mlpipe://features/{dag_id}.training_set"]
    assert lineage["holdout"]["rows"] == len(held) and lineage["holdout"]["method"] == "time"
    assert lineage["window"]["mode"] == "all" and lineage["window"]["rows"] == len(feast_repo.labels)


def test_drift_started_run_trains_on_rows_since_the_drift(run_dag, feast_repo):
    import pandas as pd

    from airflow_mlpipe.core.datasets import read_table

    labels = feast_repo.labels.sort_values("event_timestamp")
    since = labels["event_timestamp"].iloc[len(labels) // 2]
    dag_id = f"window_drift_{uuid.uuid4().hex[:8]}"
    result = run_dag(
        _dag(dag_id, feast_repo, training_window={"min_rows": 10}, holdout={"fraction": 0.2}),
        run_conf={"drift_since": since.isoformat()},
    )
    assert result.state == "success", result.task_states
    out = result.xcom("training_set")
    train, held = read_table(out["training_set_uri"]), read_table(out["holdout_set_uri"])
    assert out["window"]["mode"] == "since_drift" and out["window"]["configured_mode"] == "auto"
    assert pd.Timestamp(out["window"]["drift_since"]) == since
    assert train["event_timestamp"].min() >= since  # the old regime is left out
    assert len(train) + len(held) == int((labels["event_timestamp"] >= since).sum())
    assert not _keys(train) & _keys(held)


def test_separate_holdout_source_rows_are_removed_from_training(run_dag, feast_repo, tmp_path):
    from airflow_mlpipe.core.datasets import read_table

    holdout = feast_repo.labels.sample(n=15, random_state=3)
    holdout_uri = str(tmp_path / "holdout.parquet")
    holdout.to_parquet(holdout_uri, index=False)
    result = run_dag(_dag(f"window_excl_{uuid.uuid4().hex[:8]}", feast_repo, exclude_source=holdout_uri))
    assert result.state == "success", result.task_states
    out = result.xcom("training_set")
    train = read_table(out["training_set_uri"])
    assert out["excluded_rows"] >= 15 and "holdout_set_uri" not in out
    assert not _keys(train) & _keys(holdout)
    assert len(train) == len(feast_repo.labels) - out["excluded_rows"]
