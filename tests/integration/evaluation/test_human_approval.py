"""Human approval between gate and promotion, answered through the API server's HITL endpoint."""

from __future__ import annotations

import threading
import time

import pendulum
import pytest

from airflow_mlpipe.core.conventions import TAG_BLESSED
from airflow_mlpipe.operators.approval import add_human_approval
from airflow_mlpipe.operators.evaluation import EvaluationGateOperator, PromoteModelOperator

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


def _respond(dag_id: str, done: threading.Event, seen: dict, errors: list) -> None:
    """Wait for the approval task to park, then answer "Approve" through the real REST endpoint."""
    from airflow.api_fastapi.app import create_app
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from fastapi.testclient import TestClient

    try:
        client = TestClient(create_app(apps="core"))  # built while the gate runs
        deadline = time.monotonic() + 240
        run_id = None
        while run_id is None and time.monotonic() < deadline and not done.is_set():
            with create_session() as session:
                ti = (
                    session.query(TaskInstance)
                    .filter_by(dag_id=dag_id, task_id="approve_promotion")
                    .one_or_none()
                )
                if ti is not None and str(ti.state) == "awaiting_input":
                    run_id = ti.run_id
            time.sleep(0.3)
        assert run_id, "the approval task never parked in awaiting_input"
        url = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve_promotion/-1/hitlDetails"
        detail = client.get(url)
        assert detail.status_code == 200, detail.text
        seen["body"] = detail.json()["body"]
        answer = client.patch(url, json={"chosen_options": ["Approve"]})
        assert answer.status_code == 200, answer.text
        seen["response"] = answer.json()
    except BaseException as exc:
        errors.append(exc)
        # unblock dag.test(), which waits for an answer forever
        from airflow.utils.state import TaskInstanceState

        with create_session() as session:
            for ti in session.query(TaskInstance).filter_by(dag_id=dag_id, task_id="approve_promotion"):
                ti.state = TaskInstanceState.FAILED


def test_approval_through_the_hitl_api_promotes(run_dag, mlflow_conn, mlflow_server, registered, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "test-secret-for-hitl")
    reg = registered("binary")
    dag, _ = _approval_dag("eval_hitl_api", reg, mlflow_conn)
    done, seen, errors = threading.Event(), {}, []
    responder = threading.Thread(target=_respond, args=(dag.dag_id, done, seen, errors), daemon=True)
    responder.start()
    try:
        res = run_dag(dag)
    finally:
        done.set()
        responder.join(timeout=30)
    assert not errors, errors
    assert res.task_states == {"gate": "success", "approve_promotion": "success", "promote": "success"}
    assert seen["response"]["chosen_options"] == ["Approve"]
    body = seen["body"]
    assert f"{reg.name} v{reg.versions['strong']}" in body and "threshold.roc_auc" in body
    assert "evaluation" in body and "Report: " in body
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    assert client.get_model_version(reg.name, reg.versions["strong"]).tags[TAG_BLESSED] == "true"
    assert client.get_model_version_by_alias(reg.name, "champion").version == reg.versions["strong"]
