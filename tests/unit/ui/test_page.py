"""The Models page rendering: what a user reads, from a loop record built by hand."""

from __future__ import annotations

import re

from airflow_mlpipe.ui.lineage import LineageNode
from airflow_mlpipe.ui.loop import Approval, Batch, ModelLoop, Rollout, Version, split_results
from airflow_mlpipe.ui.page import render_index, render_model


def _loop(**overrides: object) -> ModelLoop:
    versions = [
        Version(
            "2",
            ["champion"],
            None,
            True,
            [
                {
                    "name": "threshold.roc_auc",
                    "observed": 0.8123,
                    "op": ">=",
                    "threshold": 0.65,
                    "passed": True,
                }
            ],
            "r2",
            "http://mlflow/#/r2",
            "/mlpipe/reports/t/run2/gate/evaluation_report.html",
            {"dag_id": "churn_training", "run_id": "run2"},
        ),
        Version("1", ["previous"], None, True, [], "r1", None, None),
    ]
    rollouts = [
        Rollout(
            "churn_training", "run1", "deploy", "1", "deployed", "t1", None, None, None, None, None, None
        ),
        Rollout(
            "churn_training",
            "run2",
            "deploy",
            "2",
            "deployed",
            "t2",
            "1",
            {"passed": True},
            {"passed": True, "share": 0.25, "reasons": []},
            None,
            None,
            None,
            approver="ann (Approve)",
        ),
    ]
    batches = [
        Batch(
            "churn_monitoring",
            "m1",
            "2024-01-01T00:00:00",
            0.1,
            0.3,
            False,
            0.8,
            "roc_auc",
            "/mlpipe/reports/a.html",
            [],
        ),
        Batch(
            "churn_monitoring",
            "m2",
            "2024-01-02T00:00:00",
            0.6,
            0.3,
            True,
            None,
            None,
            "/mlpipe/reports/b.html",
            ["data_drift"],
        ),
    ]
    base = dict(
        name="churn",
        versions=versions,
        rollouts=rollouts,
        batches=batches,
        retrainings=[
            {
                "dag_id": "churn_training",
                "run_id": "run2",
                "run_type": "asset_triggered",
                "at": "2024-01-03T00:00:00",
            }
        ],
        approvals=[
            Approval("churn_release", "a1", "approve", -1, "Release <b>?", ["Approve", "Reject"], None, None)
        ],
        lineage={},
        lineage_nodes=[
            LineageNode("run", "MLflow run", "r2", "http://mlflow/#/r2"),
            LineageNode("version", "Model version", "churn v2", None),
        ],
        mlflow_url="http://mlflow",
        dag_ids=["churn_training", "churn_monitoring", "churn_release"],
    )
    base.update(overrides)
    return ModelLoop(**base)  # type: ignore[arg-type]


def test_versions_aliases_verdicts_and_criteria_numbers() -> None:
    html = render_model(_loop(), api="/api/v2", can_answer=set(), rollback_dag=None, can_rollback=False)
    row = re.search(r'<tr data-version="2">.*?</tr>', html).group(0)  # type: ignore[union-attr]
    assert 'class="alias champion"' in row and "blessed" in row
    assert "0.8123" in row and "0.65" in row and "threshold.roc_auc" in row
    assert 'href="/mlpipe/reports/t/run2/gate/evaluation_report.html"' in row
    assert 'href="/mlpipe/audit/churn/2"' in row  # every version links its audit
    assert "<b id='champion'>v2</b>" in html
    assert "ann (Approve)" in html and "share=0.25" in html


def test_drift_chart_links_every_batch_report_and_marks_the_retraining() -> None:
    html = render_model(_loop(), api="/api/v2", can_answer=set(), rollback_dag=None, can_rollback=False)
    chart = html[
        html.index('<svg id="drift-chart"') : html.index("</svg>", html.index('<svg id="drift-chart"'))
    ]
    assert chart.count('class="batch"') == 2
    assert 'href="/mlpipe/reports/b.html"' in chart
    assert chart.count('class="retraining"') == 1
    assert "/dags/churn_training/runs/run2" in chart


def test_approval_buttons_only_for_users_who_may_answer_and_text_is_escaped() -> None:
    hidden = render_model(_loop(), api="/api/v2", can_answer=set(), rollback_dag=None, can_rollback=False)
    assert "you may not answer" in hidden and ">Approve</button>" not in hidden
    shown = render_model(
        _loop(), api="/api/v2", can_answer={"churn_release"}, rollback_dag=None, can_rollback=False
    )
    assert ">Approve</button>" in shown and ">Reject</button>" in shown
    assert "/api/v2/dags/churn_release/dagRuns/a1/taskInstances/approve/-1/hitlDetails" in shown
    assert "Release &lt;b&gt;?" in shown and "Release <b>?" not in shown


def test_rollback_button_needs_the_dag_the_permission_and_a_previous_version() -> None:
    kwargs = dict(api="/api/v2", can_answer=set())
    assert "No rollback DAG" in render_model(_loop(), rollback_dag=None, can_rollback=False, **kwargs)
    assert "may not trigger" in render_model(
        _loop(), rollback_dag="churn_rollback", can_rollback=False, **kwargs
    )
    html = render_model(_loop(), rollback_dag="churn_rollback", can_rollback=True, **kwargs)
    assert (
        "id='rollback'" in html
        and "Roll back to v1" in html
        and "/api/v2/dags/churn_rollback/dagRuns" in html
    )
    no_previous = _loop(versions=[Version("1", ["champion"], None, True, [], None, None, None)])
    assert "No previous version" in render_model(
        no_previous, rollback_dag="churn_rollback", can_rollback=True, **kwargs
    )


def test_index_lists_models_or_says_there_are_none() -> None:
    assert 'href="/mlpipe/models/churn"' in render_index(["churn"], "/mlpipe")
    assert "No model trained" in render_index([], "/mlpipe")


def _result(dag: str, run: str, task: str, value: dict, run_type: str = "manual") -> dict:
    return {"dag_id": dag, "run_id": run, "task_id": task, "run_type": run_type, "at": run, "value": value}


def test_stage_results_are_told_apart_by_their_documented_keys() -> None:
    results = [
        _result("t", "r1", "train.0", {"model_name": "churn", "fingerprint": "f", "cached": False}),
        _result("t", "r1", "train.1", {"model_name": "churn", "fingerprint": "g", "cached": False}),
        _result(
            "t",
            "r1",
            "deploy",
            {"model_name": "churn", "bento_tag": "b:1", "status": "deployed", "version": "1"},
        ),
        _result("t", "r1", "deploy_other", {"model_name": "other", "bento_tag": "b:2", "status": "deployed"}),
        _result(
            "m",
            "m1",
            "drift",
            {
                "drift_share": 0.5,
                "report_uri": "file:///x",
                "drift_detected": True,
                "quality": {"metrics": {"roc_auc": {"live": 0.7}}},
            },
        ),
        _result(
            "t",
            "r2",
            "train.0",
            {"model_name": "churn", "fingerprint": "h", "cached": True},
            "asset_triggered",
        ),
    ]
    rollouts, batches, trainings, dags = split_results(results, "churn", single_model=True)
    assert [r.version for r in rollouts] == ["1"]
    assert len(batches) == 1 and batches[0].quality == 0.7 and batches[0].drift_detected
    assert [(t["run_id"], t["run_type"]) for t in trainings] == [("r1", "manual"), ("r2", "asset_triggered")]
    assert dags == {"t", "m"}
    # With several models an unnamed drift summary belongs to none of them.
    assert split_results(results, "churn", single_model=False)[1] == []


def test_a_criterion_without_a_bound_shows_the_gate_reason_not_none() -> None:
    change = {"name": "change.roc_auc", "observed": 0.73, "op": ">=", "threshold": None, "passed": True}
    change["reason"] = "passes: there is no champion yet"
    loop = _loop(versions=[Version("1", ["champion"], None, True, [change], None, None, None)])
    html = render_model(loop, api="/api/v2", can_answer=set(), rollback_dag=None, can_rollback=False)
    row = re.search(r'<tr data-version="1">.*?</tr>', html).group(0)  # type: ignore[union-attr]
    assert "observed 0.73 (passes: there is no champion yet)" in row and "None" not in row
