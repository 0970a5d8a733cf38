"""Human approval between gate and promotion, answered through the API server's HITL endpoint."""

from __future__ import annotations

import pendulum
import pytest

from airflow_mlpipe.core.conventions import TAG_BLESSED
from airflow_mlpipe.operators.approval import add_human_approval
from airflow_mlpipe.operators.evaluation import EvaluationGateOperator, PromoteModelOperator
from tests.fixtures.hitl import answering

pytestmark = pytest.mark.integration


def _approval_dag(dag_id, reg, mlflow_conn):
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        gate = EvaluationGateOperator(
            task_id="gate",
            model_name=reg.name,
            holdout_uri=reg.zoo.holdout_uri,
            config=["roc_auc >= 0.9"],
            mlflow_conn_id=mlflow_conn,
        )
        promote = PromoteModelOperator(
            task_id="promote", model_name=reg.name, gate_task_id="gate", mlflow_conn_id=mlflow_conn
        )
        gate >> promote
        approval = add_human_approval(gate, promote)
    return dag, approval


def test_wiring_replaces_the_direct_edge_and_serializes(mlflow_conn, registered):
    from airflow.serialization.serialized_objects import DagSerialization

    reg = registered("binary")
    dag, approval = _approval_dag("eval_hitl_wiring", reg, "x")
    assert dag.task_dict["gate"].downstream_task_ids == {approval.task_id}
    assert dag.task_dict["promote"].upstream_task_ids == {approval.task_id}
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert restored.task_dict["approve_promotion"].downstream_task_ids == {"promote"}
    assert "xcom_pull(task_ids='gate')" in dag.task_dict["approve_promotion"].body


def test_approval_through_the_hitl_api_promotes(run_dag, mlflow_conn, mlflow_server, registered):
    from mlflow import MlflowClient

    reg = registered("binary")
    dag, _ = _approval_dag("eval_hitl_api", reg, mlflow_conn)
    with answering(dag.dag_id, "approve_promotion", "Approve") as answer:
        res = run_dag(dag)
    assert not answer.errors, answer.errors
    assert res.task_states == {"gate": "success", "approve_promotion": "success", "promote": "success"}
    assert answer.response and answer.response["chosen_options"] == ["Approve"]
    body = answer.body or ""
    assert f"{reg.name} v{reg.versions['strong']}" in body and "threshold.roc_auc" in body
    assert "evaluation" in body and "Report: " in body
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    assert client.get_model_version(reg.name, reg.versions["strong"]).tags[TAG_BLESSED] == "true"
    assert client.get_model_version_by_alias(reg.name, "champion").version == reg.versions["strong"]


def test_rejection_through_the_hitl_api_skips_promotion_and_keeps_the_champion(
    run_dag, mlflow_conn, mlflow_server, registered
):
    from mlflow import MlflowClient

    reg = registered("binary")
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    aliases_before = dict(client.get_registered_model(reg.name).aliases)
    dag, _ = _approval_dag("eval_hitl_reject", reg, mlflow_conn)
    with answering(dag.dag_id, "approve_promotion", "Reject") as answer:
        res = run_dag(dag)
    assert not answer.errors, answer.errors
    assert answer.response and answer.response["chosen_options"] == ["Reject"]
    # a rejection is an answer, not a failure: the approval succeeds and the promotion is skipped
    assert res.task_states == {"gate": "success", "approve_promotion": "success", "promote": "skipped"}
    assert dict(client.get_registered_model(reg.name).aliases) == aliases_before
    assert client.get_model_version_by_alias(reg.name, "champion").version == reg.versions["weak"]
