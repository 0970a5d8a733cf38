"""docker-compose.yaml and the Dockerfile, run for real: the reference loop on the stack users get.

The stand-in images are built (mlpipe_dev/containers/standin.py), the project image is built from
the repository's Dockerfile, and the stack starts with the test override docker/compose.test.yaml
(stand-in images, host networking on free ports, two Celery worker containers deploying with the
container target). The loop is driven through the api-server's REST API, as any client would:
train → gate (approved through the API) → deploy → a drifted batch lands → the monitoring DAG
detects the drift → retraining → the new version serves on the same endpoint, each version in a
container of its own behind an HAProxy container, with the deployment's state in the stack's
PostgreSQL. Every container, network and volume is removed afterwards (the deployment's
containers and bento images too), also when the test fails.
"""

from __future__ import annotations

import json
import secrets
import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_mlpipe.core.timing import scaled
from airflow_mlpipe.deploy.targets.docker import BENTO_LABEL, DEPLOYMENT_LABEL, ROLE_LABEL
from mlpipe_dev import churn_data as churn
from mlpipe_dev.containers.compose import ComposeProject, override_env
from mlpipe_dev.containers.engine import ensure_engine
from mlpipe_dev.containers.standin import build_standins
from mlpipe_dev.demo import approval
from mlpipe_dev.demo.progress import RunProgress, wait_for_new_run
from mlpipe_dev.demo.quality import predict
from mlpipe_dev.demo.runner import MONITORING_DAG, TRAINING_DAG, _find, _task_results
from mlpipe_dev.loadgen import LoadLoop
from mlpipe_dev.local.stack import AirflowApi

pytestmark = [pytest.mark.compose, pytest.mark.integration, pytest.mark.timeout(3600)]

DATA_DIR = "/opt/mlpipe-data/incoming"  # MLPIPE_DATA_DIR of docker-compose.yaml
DEPLOYMENT = "churn"  # the reference config's model, deployed under its name
HISTORY_DAYS = 7
SPEC = churn.ChurnSpec(days=HISTORY_DAYS + 1, drift_day=HISTORY_DAYS)


@dataclass
class Stack:
    project: ComposeProject
    api: AirflowApi
    client: Any  # the Docker Engine's client
    timings: dict[str, float] = field(default_factory=dict)

    def port(self, variable: str) -> int:
        return int(self.project.env[variable])

    def in_worker(self, code: str) -> None:
        """Run Python in a worker container, as its user, on the shared data volume."""
        self.project.run("exec", "-T", "airflow-worker", "python", "-c", code, timeout=300)

    def scheduler_log(self) -> str:
        return self.project.logs("airflow-scheduler")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    client = ensure_engine()
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    build_standins(client)
    timings["stand-in images"] = time.monotonic() - t0

    secrets_dir = tmp_path_factory.mktemp("compose-secrets")
    password = secrets.token_urlsafe(16)
    (secrets_dir / "passwords.json").write_text(json.dumps({"admin": password}))
    # The api-server (uid 50000 in the image) opens the file for update.
    secrets_dir.chmod(0o777)
    (secrets_dir / "passwords.json").chmod(0o666)
    project = ComposeProject(f"mlpipe-compose-{secrets.token_hex(4)}", env=override_env(secrets_dir))

    t0 = time.monotonic()
    project.run("build", "airflow-init", timeout=3000)
    timings["project image"] = time.monotonic() - t0
    api = AirflowApi(f"http://127.0.0.1:{project.env['MLPIPE_TEST_API_PORT']}", "admin", password)
    images_before = {image.id for image in client.images.list()}
    # A cancelled job (SIGTERM) must still tear the project down: make it an interrupt.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    _remove_deployment(client, images_before)  # a leftover of an interrupted earlier run
    try:
        t0 = time.monotonic()
        project.run("up", "--detach", "--no-build", timeout=900)
        _wait_healthy(api, project)
        timings["stack up"] = time.monotonic() - t0
        yield Stack(project, api, client, timings)
    except BaseException:
        print(project.logs(tail=80))
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        project.down()
        left = project.leftovers(client) + _remove_deployment(client, images_before)
        assert not left, f"compose down left {left}"


def _deployment_containers(client: Any, role: str | None = None) -> list[Any]:
    label = [f"{DEPLOYMENT_LABEL}={DEPLOYMENT}"] + ([f"{ROLE_LABEL}={role}"] if role else [])
    return list(client.containers.list(all=True, filters={"label": label}))


def _remove_deployment(client: Any, keep_images: set[str]) -> list[str]:
    """Remove the container target's containers of the deployment and the bento images built since
    ``keep_images`` (their layers stay: the build cache); return what could not be removed."""
    for container in _deployment_containers(client):
        container.remove(force=True)
    for image in client.images.list(filters={"label": BENTO_LABEL}):
        if image.id not in keep_images:
            client.images.remove(image.id, force=True, noprune=True)
    return [f"container {c.name}" for c in _deployment_containers(client)]


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _wait_healthy(api: AirflowApi, project: ComposeProject) -> None:
    deadline = time.monotonic() + scaled(300)
    health: Any = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api.base_url}/api/v2/monitor/health", timeout=5) as resp:
                health = json.loads(resp.read())
            if all(health.get(c, {}).get("status") == "healthy" for c in ("metadatabase", "scheduler")):
                return
        except (OSError, ValueError):
            pass
        time.sleep(2)
    raise AssertionError(f"the stack's Airflow is not healthy: {health}\n{project.logs(tail=40)}")


def _run(stack: Stack, dag_id: str, run_id: str, approvals: list[dict[str, Any]]) -> dict[str, Any]:
    progress = RunProgress(
        stack.api,
        stall_timeout=scaled(900),
        on_awaiting_input=lambda d, r, ti: approvals.append(
            approval.answer(stack.api, d, r, ti, scheduler_log=stack.scheduler_log)
        ),
    )
    state, instances = progress.wait(dag_id, run_id)
    failed = [t for t in instances if t["state"] == "failed"]
    if state != "success":
        logs = "\n".join(
            f"--- {t['task_id']} (try {t.get('try_number')}):\n{stack.api.task_log(dag_id, run_id, t)[-8000:]}"
            for t in failed
        )
        raise AssertionError(
            f"{dag_id} {run_id}: {state}, failed {[t['task_id'] for t in failed]}\n"
            f"{stack.project.logs(tail=60)}\n{logs}"
        )
    return {"run_id": run_id, "instances": instances, "results": _task_results(stack.api, dag_id, run_id)}


def _rows(index: int, n: int) -> list[dict[str, Any]]:
    features, _ = churn.generate_day(SPEC, index)
    return list(
        json.loads(features.drop(columns=[churn.ENTITY, churn.TIMESTAMP]).head(n).to_json(orient="records"))
    )


def test_reference_loop_on_the_compose_stack(stack: Stack) -> None:
    api, approvals = stack.api, []
    spec = f"churn.ChurnSpec(days={SPEC.days}, drift_day={SPEC.drift_day})"
    stack.in_worker(
        f"from mlpipe_dev import churn_data as churn; "
        f"churn.write_batches({DATA_DIR!r}, {spec}, days=range({HISTORY_DAYS}))"
    )
    api.wait_dags([TRAINING_DAG, MONITORING_DAG], timeout=scaled(300))
    for dag_id in (TRAINING_DAG, MONITORING_DAG):
        api.unpause(dag_id)  # new DAGs start paused in the compose stack (Airflow's default)

    t0 = time.monotonic()
    first = _run(stack, TRAINING_DAG, api.trigger(TRAINING_DAG), approvals)
    stack.timings["first training run"] = time.monotonic() - t0
    deployed = _find(first["results"], "endpoint")
    before = _find(first["results"], "fingerprint")
    assert deployed.get("status") == "deployed", first["results"]
    endpoint, rows = deployed["endpoint"], _rows(0, 3)
    assert predict(endpoint, rows)["model_version"] == str(before["version"])

    # Live traffic during the retraining's canary and switch (the canary is judged on it).
    traffic = LoadLoop(endpoint, rows[:1], concurrency=1, interval=0.1, max_seconds=scaled(1800)).start()
    try:
        known_monitoring = {r["dag_run_id"] for r in api.runs(MONITORING_DAG)}
        known_training = {r["dag_run_id"] for r in api.runs(TRAINING_DAG)}
        stack.in_worker(
            f"from mlpipe_dev import churn_data as churn; "
            f"churn.write_day({DATA_DIR!r}, {spec}, {HISTORY_DAYS})"
        )
        t0 = time.monotonic()
        drift: dict[str, Any] = {}
        runs = []
        while not drift.get("drift_detected"):
            run_id = wait_for_new_run(
                lambda: [r["dag_run_id"] for r in api.runs(MONITORING_DAG)],
                known_monitoring,
                what="a monitoring run (asset watcher)",
                timeout=scaled(600),
            )
            known_monitoring.add(run_id)
            runs.append(_run(stack, MONITORING_DAG, run_id, approvals))
            drift = _find(runs[-1]["results"], "drift_detected")
        assert set(drift["drifted_columns"]) & set(churn.DRIFTED_FEATURES), drift

        retrain_id = wait_for_new_run(
            lambda: [r["dag_run_id"] for r in api.runs(TRAINING_DAG)],
            known_training,
            what="retraining (drift asset event)",
            timeout=scaled(600),
        )
        assert retrain_id.startswith("asset_triggered__"), retrain_id
        second = _run(stack, TRAINING_DAG, retrain_id, approvals)
        stack.timings["drift to new version serving"] = time.monotonic() - t0
    finally:
        served = traffic.stop().summary()

    after = _find(second["results"], "fingerprint")
    redeployed = _find(second["results"], "endpoint")
    assert redeployed.get("status") == "deployed" and redeployed["endpoint"] == endpoint, redeployed
    assert int(after["version"]) > int(before["version"])
    assert predict(endpoint, rows)["model_version"] == str(after["version"])
    assert served["failed"] == 0 and served["total"] > 0, served
    assert set(served["versions"]) == {str(before["version"]), str(after["version"])}, served
    assert [a["chosen"] for a in approvals] == ["Approve", "Approve"], approvals

    # Serving lives in containers of the engine, not in a worker: one proxy container and one
    # backend container, serving the new version's bento (the first version's is stopped and gone).
    (proxy_container,) = _deployment_containers(stack.client, "proxy")
    backends = _deployment_containers(stack.client, "backend")
    assert proxy_container.status == "running", proxy_container.status
    assert [(b.status, b.labels[BENTO_LABEL]) for b in backends] == [("running", redeployed["bento_tag"])], [
        (b.name, b.status, b.labels) for b in backends
    ]

    # Both Celery worker containers ran tasks: each names itself after its container.
    workers = {cid[:12] for cid in stack.project.container_ids("airflow-worker")}
    assert len(workers) == 2, workers
    ran_on = {
        (ti.get("hostname") or "").rsplit("-", 1)[-1]
        for run in (first, *runs, second)
        for ti in run["instances"]
        if ti["state"] == "success"
    }
    assert ran_on == workers, (ran_on, workers)

    # The stack's own serving path: HAProxy in front of the model service, which serves the latest
    # bento the deployment stage built (it restarts until the first one exists).
    proxy = f"http://127.0.0.1:{stack.port('MLPIPE_TEST_PROXY_PORT')}"
    deadline, answer = time.monotonic() + scaled(240), None
    while answer is None and time.monotonic() < deadline:
        try:
            answer = predict(proxy, rows)
        except OSError:
            time.sleep(2)
    assert answer is not None and len(answer["predictions"]) == len(rows), answer
    print({k: round(v, 1) for k, v in stack.timings.items()})
