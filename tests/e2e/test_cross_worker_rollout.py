"""Two rollouts of one deployment on two Celery workers that share no state on disk.

Worker A and worker B each consume a queue of their own and have their own working directory,
``HOME``, BentoML store and artifact root. The deployment's state lives in the SQL state store
(``state_conn_id``, a PostgreSQL table). Rollout 1 (pinned to A's queue) serves v1; rollout 2
(pinned to B's queue) must find v1 in the store, move the traffic to v2 under live client requests
and stop v1: the v1 backend is gone, v2 answers, no client request failed.

Parametrized over targets: ``local`` (both workers on this host; its HAProxy pid file and socket
are the one thing its workers must share, ``state_dir``) and ``docker`` (containers on the engine;
nothing shared but the engine and the database), which needs a Docker engine.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_mlpipe.core.timing import scaled
from tests.fixtures.deployment import register_model
from tests.fixtures.services import fresh_database

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

MODEL = f"xw_iris_{uuid.uuid4().hex[:6]}"  # containers on the shared engine are named after it
MLFLOW_CONN, STATE_CONN = "xw_mlflow", "xw_state"
QUEUES = {"a": "xw_a", "b": "xw_b"}
# Latency is not under test here (a loaded machine slows a freshly started backend): the canary
# judges errors and liveness only.
CANARY = {"share": 0.3, "window_seconds": 6, "min_requests": 3, "max_p95_ratio": 20, "p95_slack_ms": 5000}
CLIENTS, CLIENT_INTERVAL = 2, 0.1

_DAGS = """
import pendulum
from airflow.sdk import DAG

from airflow_mlpipe.operators.bentoml import BentoDeployOperator

for worker, queue in {queues!r}.items():
    with DAG(f"xw_deploy_{{worker}}", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
        BentoDeployOperator(
            task_id="deploy", queue=queue, model_name={model!r}, version="{{{{ dag_run.conf['version'] }}}}",
            deployment_name={model!r}, target={target!r}, canary={canary!r}, mlflow_conn_id={mlflow_conn!r},
        )
"""


@dataclass
class Kind:
    """What differs between targets: their spec, and how the test sees that a backend is gone."""

    spec: Callable[[Path, int], dict[str, Any]]
    gone: Callable[[Any], bool]


def _local_spec(root: Path, port: int) -> dict[str, Any]:
    return {
        "kind": "local",
        "state_dir": str(root / "local-target"),
        "port": port,
        "ready_timeout": scaled(180),
    }


def _local_gone(backend: Any) -> bool:
    from airflow_mlpipe.deploy.targets.local import _is_backend_process

    return not _is_backend_process(backend)


def _docker_spec(root: Path, port: int) -> dict[str, Any]:
    from tests.fixtures.deployment import docker_spec

    return {**docker_spec(ready_timeout=scaled(240), state_conn_id=STATE_CONN), "port": port}


def _docker_gone(backend: Any) -> bool:
    import docker.errors

    from mlpipe_dev.containers.engine import ensure_engine

    try:
        ensure_engine().containers.get(backend.extra["container_id"])
    except docker.errors.NotFound:
        return True
    return False


KINDS = {"local": Kind(_local_spec, _local_gone), "docker": Kind(_docker_spec, _docker_gone)}


@pytest.fixture
def databases(postgres_dsn: str) -> Iterator[tuple[str, str]]:
    """Metadata database and deployment-state database: two fresh ones on the local PostgreSQL."""
    with (
        fresh_database(postgres_dsn, "mlpipe_xw_meta") as meta,
        fresh_database(postgres_dsn, "mlpipe_xw_state") as st,
    ):
        yield (
            f"postgresql+psycopg2://postgres@127.0.0.1:5432/{meta}",
            f"postgresql://postgres@127.0.0.1:5432/{st}",
        )


def _worker(root: Path, name: str) -> Any:
    from mlpipe_dev.local.stack import CeleryWorker

    own = root / f"worker-{name}"
    env = {
        "HOME": str(own / "home"),
        "BENTOML_HOME": str(own / "bentoml"),
        "MLPIPE_ARTIFACT_ROOT": f"file://{own}/artifacts",
    }
    (own / "home").mkdir(parents=True)
    return CeleryWorker(name, queue=QUEUES[name], cwd=own, env=env)


def _deploy(af: Any, worker: str, version: str) -> dict[str, Any]:
    dag_id = f"xw_deploy_{worker}"
    run_id = af.api.trigger(dag_id, {"version": version})
    state = af.api.wait_run(dag_id, run_id, timeout=scaled(900), poll=1)
    ti = next(t for t in af.api.task_instances(dag_id, run_id) if t["task_id"] == "deploy")
    log = af.home / "logs" / f"celery-worker-{worker}.log"
    assert state == "success", (ti, log.read_text(errors="replace")[-4000:])
    assert ti["queue"] == QUEUES[worker], ti
    return dict(af.api.xcom(dag_id, run_id, "deploy"))


@pytest.mark.parametrize("kind", ["local", pytest.param("docker", marks=pytest.mark.containers)])
def test_second_rollout_on_another_worker_stops_the_first_ones_backend(
    kind: str, tmp_path: Path, databases: tuple[str, str], redis_url: str, iris_frame: Any, monkeypatch
) -> None:
    from sklearn.linear_model import LogisticRegression

    from airflow_mlpipe.deploy.checks import post_json
    from airflow_mlpipe.deploy.targets import resolve_target
    from airflow_mlpipe.deploy.targets.state import SqlStateStore
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from mlpipe_dev.loadgen import LoadLoop
    from mlpipe_dev.local.mlflow_server import LocalMlflowServer
    from mlpipe_dev.local.stack import LocalAirflow, free_port

    meta_db, state_db = databases
    broker = redis_url.rsplit("/", 1)[0] + f"/{random.SystemRandom().randint(8, 15)}"
    spec = {**KINDS[kind].spec(tmp_path, free_port()), "state_conn_id": STATE_CONN}
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "xw_dags.py").write_text(
        _DAGS.format(queues=QUEUES, model=MODEL, target=spec, canary=CANARY, mlflow_conn=MLFLOW_CONN)
    )
    rows = iris_frame.drop(columns="target").head(4).to_dict(orient="records")
    with LocalMlflowServer(tmp_path / "mlflow") as server:
        conns = {
            f"AIRFLOW_CONN_{MLFLOW_CONN.upper()}": json.dumps(
                {"conn_type": "mlpipe_mlflow", "host": server.url}
            ),
            f"AIRFLOW_CONN_{STATE_CONN.upper()}": state_db,
        }
        for key, value in conns.items():
            monkeypatch.setenv(key, value)
        hook = MlflowHook(MLFLOW_CONN)
        X, y = iris_frame.drop(columns="target"), iris_frame["target"]
        v1, v2 = (
            register_model(
                hook, MODEL, LogisticRegression(C=c, max_iter=500), X, y, task_type="classification"
            )
            for c in (0.05, 5.0)
        )
        # The test process sees the deployment as any worker does: through the SQL store. Its
        # BentoML store is the session's (BentoML keeps the first home a process uses), which
        # neither worker uses.
        target = resolve_target(spec, deployment_name=MODEL)
        assert isinstance(target.store, SqlStateStore)
        af = LocalAirflow(
            home=tmp_path / "airflow",
            dags_folder=tmp_path / "dags",
            executor="CeleryExecutor",
            sql_alchemy_conn=meta_db,
            celery_broker_url=broker,
            workers=[_worker(tmp_path, "a"), _worker(tmp_path, "b")],
            parallelism=2,
            env=conns,
        )
        try:
            with af:
                af.api.wait_dags(["xw_deploy_a", "xw_deploy_b"])
                first = _deploy(af, "a", v1)
                assert first["status"] == "deployed", first
                old = target.load_state().stable
                assert old is not None and old.model_version == v1
                assert not KINDS[kind].gone(old)
                with LoadLoop(
                    target.endpoint,
                    rows,
                    concurrency=CLIENTS,
                    interval=CLIENT_INTERVAL,
                    max_seconds=scaled(1200),
                ) as load:
                    deadline = time.monotonic() + scaled(60)
                    while load.stats.total < 10 and time.monotonic() < deadline:
                        time.sleep(0.1)
                    second = _deploy(af, "b", v2)
                assert second["status"] == "deployed" and second["previous_version"] == v1, second
                assert second["canary"] and second["canary"]["passed"], second["canary"]
                state = target.load_state()
                assert state.stable is not None and state.stable.model_version == v2
                assert state.previous is not None and state.previous.model_version == v1
                assert KINDS[kind].gone(old), f"the v1 backend still runs: {old}"
                assert not target.health(old).alive
                status, body = post_json(f"{target.endpoint}/predict", {"rows": rows})
                assert status == 200 and str(body["model_version"]) == v2, body
                assert load.stats.total >= 10 and load.stats.failed == 0, load.stats.summary()
                # each rollout ran on its own worker, and neither wrote a state file anywhere
                for name in ("a", "b"):
                    log = (af.home / "logs" / f"celery-worker-{name}.log").read_text(errors="replace")
                    other = "b" if name == "a" else "a"
                    assert f"xw_deploy_{name}" in log and f"xw_deploy_{other}" not in log, log[-3000:]
                assert not list(tmp_path.rglob("state.json"))
        finally:
            target.shutdown()
