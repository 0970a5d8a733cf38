from __future__ import annotations

import pytest

from airflow_mlpipe.hooks.mlflow import MlflowHook

pytestmark = pytest.mark.integration


def test_embedded_default_uses_sqlite_under_artifact_root(test_home):
    hook = MlflowHook("does_not_exist")
    assert hook.tracking_uri.startswith("sqlite:///")
    assert str(test_home / "artifacts") in hook.tracking_uri
    ok, msg = hook.test_connection()
    assert ok, msg
    exp_id = hook.get_or_create_experiment("hook-embedded")
    assert hook.get_or_create_experiment("hook-embedded") == exp_id


def test_http_server_connection(mlflow_conn, mlflow_server):
    hook = MlflowHook(mlflow_conn)
    assert hook.tracking_uri == mlflow_server
    ok, msg = hook.test_connection()
    assert ok, msg
    client = hook.get_client()
    exp_id = hook.get_or_create_experiment("hook-http")
    run = client.create_run(exp_id)
    client.log_metric(run.info.run_id, "m", 1.5)
    assert client.get_run(run.info.run_id).data.metrics["m"] == 1.5


def test_unreachable_server_reports_failure(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DOWN", '{"conn_type": "mlpipe_mlflow", "host": "http://127.0.0.1:9"}'
    )
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    ok, msg = MlflowHook("mlflow_down").test_connection()
    assert not ok
    assert "not reachable" in msg
