from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from airflow_mlpipe.hooks.mlflow import MlflowHook, MlflowUnreachableError, redact_uri

pytestmark = pytest.mark.integration


class _FaultServer:
    """A real HTTP server on loopback that answers every request with one status, and records requests."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization", "")})
                body = json.dumps({"error_code": "X", "message": "fault"}).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fault_server(request: pytest.FixtureRequest) -> Iterator[_FaultServer]:
    srv = _FaultServer(request.param)
    yield srv
    srv.close()


def _conn(monkeypatch, conn_id: str, host: str, **extra) -> str:
    login = extra.pop("login", None)
    password = extra.pop("password", None)
    conn = {"conn_type": "mlpipe_mlflow", "host": host, "extra": {"retry_wait": 0, **extra}}
    if login:
        conn.update(login=login, password=password)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


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
    assert (
        hook.run_url(exp_id, run.info.run_id)
        == f"{mlflow_server}/#/experiments/{exp_id}/runs/{run.info.run_id}"
    )


def test_connection_refused_fails_after_bounded_attempts(monkeypatch):
    hook = MlflowHook(_conn(monkeypatch, "mlflow_down", "http://127.0.0.1:9", max_attempts=2))
    started = time.monotonic()
    ok, msg = hook.test_connection()
    assert not ok
    assert msg.startswith("MLflow tracking server at http://127.0.0.1:9 unreachable after 2 attempts")
    with pytest.raises(MlflowUnreachableError, match="unreachable after 2 attempts"):
        hook.ensure_reachable()
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("fault_server", [503, 429], indirect=True)
def test_transient_http_status_is_retried_then_reported(monkeypatch, fault_server):
    hook = MlflowHook(_conn(monkeypatch, "mlflow_flaky", fault_server.url, max_attempts=3))
    with pytest.raises(MlflowUnreachableError, match=f"at {fault_server.url} unreachable after 3 attempts"):
        hook.ensure_reachable()
    assert len(fault_server.requests) == 3


@pytest.mark.parametrize("fault_server", [404], indirect=True)
def test_non_transient_error_is_not_retried(monkeypatch, fault_server):
    hook = MlflowHook(_conn(monkeypatch, "mlflow_missing", fault_server.url, max_attempts=3))
    with pytest.raises(Exception) as info:
        hook.ensure_reachable()
    assert not isinstance(info.value, MlflowUnreachableError)
    assert len(fault_server.requests) == 1


@pytest.mark.parametrize("fault_server", [404], indirect=True)
def test_credentials_are_sent_by_activate_and_by_clients_and_never_left_behind(monkeypatch, fault_server):
    import os

    from mlflow.exceptions import MlflowException

    hook = MlflowHook(
        _conn(monkeypatch, "mlflow_auth", fault_server.url, login="alice", password="s3cr3t-pw")
    )
    client = hook.get_client()  # used outside activate(): credentials are bound to its stores
    with pytest.raises(MlflowException, match="fault"):
        client.search_experiments(max_results=1)
    expected = "Basic " + base64.b64encode(b"alice:s3cr3t-pw").decode()
    assert fault_server.requests[-1]["auth"] == expected
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
    token_hook = MlflowHook(_conn(monkeypatch, "mlflow_token", fault_server.url, token="tok-123"))
    with pytest.raises(MlflowException, match="fault"), token_hook.activate():
        token_hook.get_client().search_experiments(max_results=1)
    assert fault_server.requests[-1]["auth"] == "Bearer tok-123"
    assert "MLFLOW_TRACKING_TOKEN" not in os.environ


def test_redact_uri_hides_passwords():
    assert redact_uri("postgresql://u:pw@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_postgresql_backend_store(monkeypatch, mlflow_postgres_uri, tmp_path, training_files):
    """PostgreSQL as tracking and registry store (URI used directly), with a training run registered."""
    from airflow_mlpipe.config.training import EstimatorConfig, RegistryConfig, TrainingConfig
    from airflow_mlpipe.training.train import train_model

    conn = _conn(
        monkeypatch, "mlflow_pg", mlflow_postgres_uri, artifact_location=f"file://{tmp_path}/artifacts"
    )
    hook = MlflowHook(conn)
    ok, msg = hook.test_connection()
    assert ok, msg
    result = train_model(
        hook,
        source=str(training_files["multiclass"]),
        estimator=EstimatorConfig("sklearn.tree.DecisionTreeClassifier", {"max_depth": 3}),
        training=TrainingConfig(label="target"),
        registry=RegistryConfig("pg-model"),
        ids={"airflow.dag_id": "d", "airflow.run_id": "r", "airflow.task_id": "t"},
        code="c",
    )
    with hook.activate() as mlflow:
        assert (
            str(hook.get_client().get_model_version_by_alias("pg-model", "challenger").version)
            == result["version"]
        )
        assert mlflow.sklearn.load_model(result["model_uri"]).predict([[5.1, 3.5, 1.4, 0.2]]).shape == (1,)
    assert (tmp_path / "artifacts").is_dir()
