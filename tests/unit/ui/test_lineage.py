"""The lineage boxes of the Models page: short, readable lines from the stage results as they are."""

from __future__ import annotations

from airflow_mlpipe.ui.lineage import lineage_nodes
from airflow_mlpipe.ui.loop import Rollout
from airflow_mlpipe.ui.page import lineage_graph


def _results() -> list[dict]:
    ids = {"dag_id": "churn_training", "run_id": "r1", "run_type": "manual", "at": "t"}
    validation = {"success": True, "row_count": 3500, "suite": "churn_features"}
    validation |= {"dataset_uri": "/data/churn/features", "data_docs_uri": "file:///a/index.html"}
    # The shape FeastMaterializeOperator returns: one record per view, named by "feature_view".
    views = {"feature_views": [{"feature_view": "customer_features", "materialized_at": "2026-12-03T07:33"}]}
    training_set = {"training_set_uri": "file:///a/training_set.parquet", "row_count": 2800}
    return [
        {**ids, "task_id": "validate", "value": validation},
        {**ids, "task_id": "materialize", "value": views},
        {**ids, "task_id": "training_set", "value": training_set},
    ]


def _record() -> dict:
    return {
        "airflow": {"dag_id": "churn_training", "run_id": "r1"},
        "model": {"name": "churn", "version": "2", "fingerprint": "sha256:" + "f" * 64},
        "run": {"run_id": "abc", "run_name": "train.search.candidate.0", "experiment_id": "1"},
        "data": {"uri": "file:///a/training_set.parquet", "digest": "sha256:" + "d" * 64},
    }


def test_each_box_says_what_the_stage_produced_and_links_its_task() -> None:
    rollout = Rollout(
        "churn_training",
        "r1",
        "deploy",
        "2",
        "deployed",
        "2026-12-03T07:38",
        "1",
        None,
        None,
        None,
        None,
        None,
    )
    nodes = {n.kind: n for n in lineage_nodes(_record(), _results(), [rollout], "http://mlflow")}
    assert nodes["data"].detail == "churn/features"
    assert nodes["validation"].detail == "passed, 3500 rows"
    assert nodes["features"].detail == "customer_features"
    assert nodes["training_set"].detail == "2800 rows" and "sha256:d" in nodes["training_set"].tooltip
    assert nodes["deployment"].detail == "deployed v2" and "2026-12-03T07:38" in nodes["deployment"].tooltip
    assert nodes["features"].href == "/dags/churn_training/runs/r1/tasks/materialize"
    assert nodes["run"].href == "http://mlflow/#/experiments/1/runs/abc"


def test_a_long_line_is_cut_with_an_ellipsis_and_kept_whole_in_the_tooltip() -> None:
    from airflow_mlpipe.ui.loop import ModelLoop

    long_name = "customer_features_with_a_very_long_name"
    results = _results()
    results[1]["value"]["feature_views"][0]["feature_view"] = long_name
    nodes = lineage_nodes(_record(), results, [], None)
    loop = ModelLoop("churn", [], [], [], [], [], {}, nodes, None, [])
    svg = lineage_graph(loop)
    assert f">{long_name[:21]}…</text>" in svg and f"<title>{long_name}</title>" in svg
