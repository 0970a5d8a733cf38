"""The gate and promotion operators in real DAG runs (Airflow metadata DB, mlflow server)."""

from __future__ import annotations

import json

import pendulum
import pytest

from airflow_mlpipe.core.conventions import TAG_BLESSED, TAG_CRITERION_PREFIX, TAG_GATE_METRIC_PREFIX
from airflow_mlpipe.operators.evaluation import (
    EvaluationGateOperator,
    EvaluationReportLink,
    PromoteModelOperator,
)

pytestmark = pytest.mark.integration

GATE_KEYS = {
    "blessed",
    "model_name",
    "challenger_version",
    "champion_version",
    "task_type",
    "metrics",
    "criteria",
    "report_uri",
}


def _dag(dag_id, reg, mlflow_conn, config, gate_asset, promote_asset):
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        gate = EvaluationGateOperator(
            task_id="gate",
            model_name=reg.name,
            holdout_uri="{{ params.holdout }}",
            config=config,
            mlflow_conn_id=mlflow_conn,
            outlets=[gate_asset],
            params={"holdout": reg.zoo.holdout_uri},
        )
        promote = PromoteModelOperator(
            task_id="promote",
            model_name=reg.name,
            gate_task_id="gate",
            mlflow_conn_id=mlflow_conn,
            outlets=[promote_asset],
        )
        gate >> promote
    return dag


def test_blessed_challenger_is_recorded_and_promoted(run_dag, mlflow_conn, mlflow_server, registered):
    from airflow.sdk import Asset
    from mlflow import MlflowClient

    reg = registered("binary")
    gate_asset = Asset(name="blessed", uri="mlpipe://evaluation/blessed-test")
    promote_asset = Asset(name="champion", uri="mlpipe://evaluation/champion-test")
    config = {
        "criteria": ["roc_auc >= 0.9", {"kind": "change", "metric": "accuracy", "max_regression": 0.01}]
    }
    res = run_dag(_dag("eval_bless", reg, mlflow_conn, config, gate_asset, promote_asset))
    assert res.task_states == {"gate": "success", "promote": "success"}

    summary = res.xcom("gate")
    assert GATE_KEYS <= set(summary)
    assert summary["blessed"] is True
    assert summary["challenger_version"] == reg.versions["strong"]
    assert summary["champion_version"] == reg.versions["weak"]
    assert summary["metrics"]["champion"]["accuracy"] < summary["metrics"]["challenger"]["accuracy"]
    for c in summary["criteria"]:
        assert {"name", "kind", "metric", "observed", "threshold", "passed", "reason"} <= set(c)
    json.dumps(summary)  # XCom stays plain JSON

    # the report: under the artifact root, HTML with embedded PNG plots, linked from the task
    report = summary["report_uri"]
    assert report.startswith("file://") and "/eval_bless/" in report
    html = open(report.removeprefix("file://"), encoding="utf-8").read()
    assert html.count("data:image/png;base64,") >= 3  # ROC, PR, confusion matrices
    assert "BLESSED" in html and "threshold.roc_auc" in html
    link = res.xcom("gate", key=EvaluationReportLink.key)
    # same-origin: the UI plugin serves the rendered report itself (no file:// the UI would drop)
    assert link == "/mlpipe/reports/" + report.split("/artifacts/", 1)[1]

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    artifacts = [a.path for a in client.list_artifacts(summary["evaluation_run_id"], "evaluation")]
    assert "evaluation/evaluation_report.html" in artifacts
    run = client.get_run(summary["evaluation_run_id"])
    assert run.data.metrics["challenger.accuracy"] == pytest.approx(
        summary["metrics"]["challenger"]["accuracy"]
    )

    tags = client.get_model_version(reg.name, reg.versions["strong"]).tags
    assert tags[TAG_BLESSED] == "true"
    auc = json.loads(tags[TAG_CRITERION_PREFIX + "threshold.roc_auc"])
    assert auc["passed"] is True and auc["threshold"] == 0.9
    assert auc["observed"] == pytest.approx(summary["metrics"]["challenger"]["roc_auc"])
    judged = summary["metrics"]["challenger"]
    assert float(tags[TAG_GATE_METRIC_PREFIX + "roc_auc"]) == pytest.approx(judged["roc_auc"])

    # monitoring's quality baseline reads back exactly the metrics the gate judged the champion on
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from airflow_mlpipe.monitoring.baseline import registry_baseline

    baseline = registry_baseline(MlflowHook(mlflow_conn), reg.name)
    assert baseline["version"] == reg.versions["strong"]
    assert "champion_version" not in baseline["metrics"]  # a gate record, not a metric
    assert {k: baseline["metrics"][k] for k in judged} == pytest.approx(judged)

    events = dict(res.asset_events())
    assert events["mlpipe://evaluation/blessed-test"]["version"] == reg.versions["strong"]
    assert events["mlpipe://evaluation/champion-test"]["previous_version"] == reg.versions["weak"]
    assert client.get_model_version_by_alias(reg.name, "champion").version == reg.versions["strong"]
    assert client.get_model_version_by_alias(reg.name, "previous").version == reg.versions["weak"]
    assert res.xcom("promote")["status"] == "promoted"


def test_blocked_challenger_skips_downstream_and_keeps_champion(
    run_dag, mlflow_conn, mlflow_server, registered
):
    from airflow.sdk import Asset
    from mlflow import MlflowClient

    reg = registered("multiclass", challenger="weak", champion="strong")
    config = {"criteria": ["accuracy >= 0.9", {"kind": "change", "metric": "f1", "max_regression": 0.0}]}
    res = run_dag(
        _dag(
            "eval_block",
            reg,
            mlflow_conn,
            config,
            Asset(name="b1", uri="mlpipe://evaluation/block-gate"),
            Asset(name="b2", uri="mlpipe://evaluation/block-promote"),
        )
    )
    assert res.task_states == {"gate": "skipped", "promote": "skipped"}
    assert res.state == "success"
    summary = res.xcom("gate")
    assert summary["blessed"] is False
    assert any(r.startswith("threshold.accuracy:") for r in summary["reasons"])
    assert any(r.startswith("change.f1:") for r in summary["reasons"])
    assert res.asset_events() == []  # a blocked model is never announced
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    assert client.get_model_version(reg.name, reg.versions["weak"]).tags[TAG_BLESSED] == "false"
    assert client.get_model_version_by_alias(reg.name, "champion").version == reg.versions["strong"]
    assert (
        open(summary["report_uri"].removeprefix("file://"), encoding="utf-8").read().count("NOT BLESSED") == 1
    )


def test_gate_evaluates_the_version_its_upstream_training_task_registered(
    run_dag, mlflow_conn, registered, training_files
):
    """No challenger_version template: the gate reads the version from the training task's XCom,
    not from the challenger alias (which here still names an older, weaker version)."""
    from airflow.sdk import DAG

    from airflow_mlpipe.operators.mlflow import MlflowTrainModelOperator

    reg = registered("binary", challenger="weak", champion=None)
    with DAG("eval_upstream", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        train = MlflowTrainModelOperator(
            task_id="train",
            training_set=str(training_files["binary"]),
            model_name=reg.name,
            estimator="sklearn.linear_model.LogisticRegression",
            estimator_params={"max_iter": 3000},
            label_column="target",
            alias="trained",  # the challenger alias stays on the weak version
            reuse_cached=False,
            mlflow_conn_id=mlflow_conn,
        )
        gate = EvaluationGateOperator(
            task_id="gate",
            model_name=reg.name,
            holdout_uri=reg.zoo.holdout_uri,
            config={"criteria": ["accuracy >= 0.5"]},
            mlflow_conn_id=mlflow_conn,
        )
        train >> gate
    res = run_dag(dag)
    assert res.task_states == {"train": "success", "gate": "success"}
    trained = res.xcom("train")["version"]
    assert trained not in reg.versions.values()
    assert res.xcom("gate")["challenger_version"] == trained
