"""Deferrable sensor through dag.test(), serving health and the webhook notifier against real HTTP
servers, and the human-review branch wiring."""

from __future__ import annotations

import http.server
import json
import threading

import pendulum
import pytest

from tests.unit.monitoring.test_logic import BENTO_METRICS

pytestmark = pytest.mark.integration


@pytest.fixture
def http_server():
    """A loopback server: GET /metrics serves BentoML-format metrics, POST records JSON bodies."""
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = BENTO_METRICS.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


def test_sensor_defers_and_returns_new_files(run_dag, tmp_path):
    """Through ``dag.test()``: nothing there yet, so the sensor defers and its trigger finds the batch.

    ``dag.test()`` runs the trigger inline and keeps the task instance *deferred* only for an
    instant, so the batch lands once the inline trigger has started (its log line, observed); the
    deferred state and the free pool slot are asserted on a real scheduler and triggerer
    (``test_event_driven_stack.py``).
    """
    import logging

    from airflow.sdk import DAG

    from airflow_mlpipe.core.timing import scaled
    from airflow_mlpipe.sensors.monitoring import NewDataSensor

    landing = tmp_path / "landing"
    landing.mkdir()
    trigger_running = threading.Event()

    class TriggerStarted(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "running trigger in line" in record.getMessage():
                trigger_running.set()

    def land_once_the_trigger_runs():
        if trigger_running.wait(scaled(120)):
            (landing / "batch.parquet").write_bytes(b"x")

    handler, dag_log = TriggerStarted(), logging.getLogger("airflow.sdk.definitions.dag")
    dag_log.addHandler(handler)
    level = dag_log.level
    dag_log.setLevel(logging.INFO)
    with DAG("mon_sensor", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        NewDataSensor(
            task_id="wait",
            uri=str(landing),
            pattern="*.parquet",
            min_age_seconds=0,
            poke_interval=0.5,
            timeout=scaled(120),
        )
    lander = threading.Thread(target=land_once_the_trigger_runs, daemon=True)
    lander.start()
    try:
        res = run_dag(dag)
    finally:
        dag_log.removeHandler(handler)
        dag_log.setLevel(level)
        trigger_running.set()
        lander.join(scaled(10))
    assert res.state == "success"
    out = res.xcom("wait")
    assert [f["path"].rsplit("/", 1)[-1] for f in out["files"]] == ["batch.parquet"]

    with DAG("mon_sensor_timeout", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        NewDataSensor(task_id="wait", uri=str(tmp_path / "empty"), poke_interval=0.2, timeout=1)
    res = run_dag(dag)
    assert res.task_states["wait"] == "failed"  # a timeout never passes as success


def test_serving_health_and_webhook_alert(run_dag, http_server):
    from airflow.sdk import DAG

    from airflow_mlpipe.notifications.webhook import WebhookNotifier
    from airflow_mlpipe.operators.monitoring import ServingHealthOperator

    url, received = http_server
    notifier = WebhookNotifier(url=f"{url}/hook", title="serving health", summary_task_id="health")
    with DAG("mon_health", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        ServingHealthOperator(
            task_id="health",
            metrics_url=url,
            health={"max_latency_seconds": 0.8, "max_error_rate": 0.1},
            on_success_callback=notifier,
        )
    res = run_dag(dag)
    summary = res.xcom("health")
    assert summary["healthy"] is False and summary["breaches"] == ["error_rate"]
    assert summary["requests"] == 12 and summary["metrics_url"] == f"{url}/metrics"
    assert len(received) == 1
    assert received[0]["title"] == "serving health" and received[0]["summary"]["breaches"] == ["error_rate"]

    with DAG("mon_health_fail", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        ServingHealthOperator(
            task_id="health", metrics_url=url, health={"max_error_rate": 0.1}, fail_on_breach=True
        )
    res = run_dag(dag)
    assert res.task_states["health"] == "failed"
    assert res.xcom("health")["breaches"]  # summary pushed before failing


def test_notifier_only_if_and_unreachable(http_server):
    from airflow_mlpipe.exceptions import MlpipeError
    from airflow_mlpipe.notifications.webhook import WebhookNotifier

    url, received = http_server
    quiet = WebhookNotifier(url=url, summary={"retrain_recommended": False}, only_if="retrain_recommended")
    quiet.notify({})
    assert received == []
    WebhookNotifier(url=url, summary={"retrain_recommended": True}, only_if="retrain_recommended").notify({})
    assert received[0]["summary"] == {"retrain_recommended": True}
    with pytest.raises(MlpipeError, match="did not accept"):
        WebhookNotifier(url="http://127.0.0.1:9/none", timeout=2).notify({})


def test_drift_review_branch_serializes():
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    from airflow_mlpipe.exceptions import ConfigError
    from airflow_mlpipe.operators.approval import drift_review
    from airflow_mlpipe.operators.evidently import EvidentlyDriftOperator

    with DAG("mon_review", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        drift = EvidentlyDriftOperator(task_id="drift", reference_uri="r.parquet", current_uri="c.parquet")
        review = drift_review(branches={"Retrain": "retrain", "Ignore": "ignore", "Roll back": "rollback"})
        from airflow.providers.standard.operators.empty import EmptyOperator

        drift >> review >> [EmptyOperator(task_id=t) for t in ("retrain", "ignore", "rollback")]
    data = DagSerialization.to_dict(dag)
    restored = DagSerialization.from_dict(data)
    task = restored.get_task("review_drift")
    assert set(task.downstream_task_ids) == {"retrain", "ignore", "rollback"}
    assert "mlpipe_drift_report" in review.body and review.defaults == ["Ignore"]
    with pytest.raises(ConfigError, match="default"):
        drift_review(branches={"Retrain": "retrain"})


@pytest.mark.parametrize(
    ("choice", "follows", "skipped"), [("Retrain", "retrain", "dismiss"), ("Ignore", "dismiss", "retrain")]
)
def test_drift_review_follows_the_answer(run_dag, tmp_path, breast_cancer_frame, choice, follows, skipped):
    """A real drift finding parks for review; the answer given through the HITL API picks the branch,
    and only a "Retrain" answer emits the retraining asset event."""
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, Asset

    from airflow_mlpipe.operators.approval import drift_review
    from airflow_mlpipe.operators.evidently import EvidentlyDriftOperator
    from tests.fixtures.hitl import answering
    from tests.fixtures.monitoring import reference_and_drifted

    reference, _, drifted = reference_and_drifted(breast_cancer_frame, tmp_path)
    current = tmp_path / "current.parquet"
    drifted.to_parquet(current)
    retrain = Asset(name=f"review-{choice}", uri=f"mlpipe://training/review-{choice.lower()}")
    dag_id = f"mon_review_{choice.lower()}"
    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        drift = EvidentlyDriftOperator(
            task_id="drift",
            reference_uri=str(reference),
            current_uri=str(current),
            drift={"exclude_columns": ["target"], "method": "ks", "drift_share": 0.5},
        )
        review = drift_review(branches={"Retrain": "retrain", "Ignore": "dismiss"})
        (
            drift
            >> review
            >> [
                PythonOperator(task_id="retrain", python_callable=lambda: None, outlets=[retrain]),
                PythonOperator(task_id="dismiss", python_callable=lambda: None),
            ]
        )
    with answering(dag_id, "review_drift", choice) as answer:
        res = run_dag(dag)
    assert not answer.errors, answer.errors
    assert res.task_states == {
        "drift": "success",
        "review_drift": "success",
        follows: "success",
        skipped: "skipped",
    }
    assert answer.body and "drift share:" in answer.body and "/mlpipe/reports/" in answer.body
    emitted = [uri for uri, _ in res.asset_events()]
    assert (retrain.uri in emitted) is (choice == "Retrain"), emitted
