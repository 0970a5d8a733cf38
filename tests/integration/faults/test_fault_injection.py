"""Fault injection on one real stack: Airflow's scheduler and triggerer, ``mlflow server`` over HTTP,
``bentoml serve`` behind HAProxy (``tests/fixtures/fault_stack.py``), driven through the smallest
DAG runs of each stage of the loop.

In file order, each test states its precondition:

1. the MLflow server stops while a training task runs: the task's bounded retries carry it over the
   outage and the run succeeds once the server is back; its candidate is released (first deployment);
2. the deploy task of the next release is killed (``SIGKILL``) during the traffic switch; Airflow
   retries it and the deployment converges: one backend serves, no backend process or port is left
   over, the proxy config and counters name only that backend, and ``champion`` names what it serves;
3. the serving backend is killed under live client traffic: the health check restarts it; the
   clients' failed requests stay within the failure budget;
4. the scheduler and the triggerer restart while a scoring run waits (deferred) for its batch: the
   run completes;
5. afterwards nothing is lost or duplicated: asset events, DAG runs, model versions and prediction
   files are counted in the Airflow REST API, the MLflow registry and the file system.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.core.timing import scaled
from tests.fixtures.fault_stack import (
    CONN_ID,
    DAG_IDS,
    MODEL,
    FaultStack,
    conn_uri,
    deployment_processes,
    iter_prediction_files,
    proxy_servers,
    stop_leftovers,
    write_dags,
)
from tests.fixtures.release import aliases_now, assert_registry_names_what_serves
from tests.fixtures.syslog import SyslogReceiver

pytestmark = [pytest.mark.integration, pytest.mark.faults]

# Paced clients: at most CLIENTS / CLIENT_INTERVAL requests per second reach the endpoint.
CLIENTS, CLIENT_INTERVAL = 2, 0.1
# The health check must bring a killed backend back within this outage (base seconds, scaled by
# load): a task start, a ``bentoml serve`` start and the proxy's next check. The clients' failure
# budget is what they can send in that time.
OUTAGE_BUDGET_S = 45.0


def _wait(predicate: Any, what: str, timeout: float = 180, poll: float = 0.2) -> Any:
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def _ti(api: Any, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    return next(t for t in api.task_instances(dag_id, run_id) if t["task_id"] == task_id)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, iris_frame) -> Iterator[FaultStack]:
    from airflow_mlpipe.deploy.targets.local import LocalTarget
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from mlpipe_dev.local.mlflow_server import LocalMlflowServer
    from mlpipe_dev.local.stack import LocalAirflow

    root = tmp_path_factory.mktemp("faults")
    proxy_log = SyslogReceiver()
    data = root / "data"
    data.mkdir()
    iris_frame.to_parquet(data / "train.parquet", index=False)
    iris_frame.sample(frac=1.0, random_state=3).to_parquet(data / "holdout.parquet", index=False)
    batch = iris_frame.drop(columns="target").sample(n=40, random_state=4).reset_index(drop=True)
    batch.insert(0, "row_id", range(len(batch)))
    paths = {
        "killed": str(root / "deploy-killed.json"),
        "state_dir": str(root / "deployment"),
        "bentoml_home": os.environ["BENTOML_HOME"],
        "training_set": str(data / "train.parquet"),
        "holdout": str(data / "holdout.parquet"),
        "landing": str(root / "landing"),
        "access_log": proxy_log.address,
    }
    write_dags(root / "dags", **paths)
    (root / "landing").mkdir()
    saved = os.environ.get(f"AIRFLOW_CONN_{CONN_ID.upper()}")
    with LocalMlflowServer(root / "mlflow") as server:
        conn = conn_uri(server.url)
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = conn  # for the hook in this process
        env = {"MLPIPE_ARTIFACT_ROOT": f"file://{root}/artifacts", f"AIRFLOW_CONN_{CONN_ID.upper()}": conn}
        target = LocalTarget(paths["state_dir"], name=MODEL, bentoml_home=paths["bentoml_home"])
        af = LocalAirflow(home=root / "airflow", dags_folder=root / "dags", parallelism=2, env=env)
        try:
            with af:
                af.api.wait_dags(DAG_IDS)
                yield FaultStack(
                    airflow=af,
                    mlflow=server,
                    target=target,
                    hook=MlflowHook(CONN_ID),
                    root=root,
                    killed=root / "deploy-killed.json",
                    landing=root / "landing",
                    rows=iris_frame.drop(columns="target").head(4).to_dict(orient="records"),
                    batch=batch,
                    proxy_log=proxy_log,
                )
        finally:
            proxy_log.close()
            target.shutdown()
            stop_leftovers(target.dir)
            if saved is None:
                os.environ.pop(f"AIRFLOW_CONN_{CONN_ID.upper()}", None)
            else:
                os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = saved


def _aliases(stack: FaultStack) -> dict[str, str | None]:
    return aliases_now(stack.site)


def assert_converged(stack: FaultStack, champion: str) -> None:
    """One backend serves ``champion``; the OS, the proxy and the registry all agree."""
    assert_registry_names_what_serves(stack.site, champion)  # state, proxy counters, answers, alias
    stable = stack.target.load_state().stable
    procs = deployment_processes(stack.target.dir)
    assert procs.backend_ports == {stable.port}, procs  # no orphaned backend or port
    assert len(procs.backends) == 1, procs  # no orphaned process of a former backend
    assert len(procs.proxies) == 1, procs  # the old proxy processes drained and exited
    assert proxy_servers(stack.target.dir) == [stable.server]
    assert stack.target.traffic()[stable.server]["status"].startswith("UP")


def _train(stack: FaultStack) -> str:
    return stack.api.trigger("fl_train")


def _deploy_run(stack: FaultStack, known: set[str]) -> str:
    return stack.api.wait_new_run("fl_deploy", known, timeout=scaled(300))


def test_training_survives_an_mlflow_outage_and_its_candidate_is_released(stack, record_property):
    api = stack.api
    run_id = _train(stack)
    _wait(
        lambda: _ti(api, "fl_train", run_id, "train")["state"] in ("queued", "running"),
        "the training task to start",
    )
    stack.mlflow.stop()  # before the task reaches MLflow (its imports alone take seconds)
    stopped = time.monotonic()
    log = _wait(
        lambda: "Retrying" in (text := stack.task_log("fl_train", run_id, "train")) and text,
        "the training task to retry against the stopped MLflow server",
        poll=0.5,
    )
    assert "Connection refused" in log or "NewConnectionError" in log, log[-3000:]
    stack.mlflow.start()
    outage = time.monotonic() - stopped
    assert api.wait_run("fl_train", run_id, timeout=scaled(300), poll=1) == "success"
    train = _ti(api, "fl_train", run_id, "train")
    assert train["try_number"] == 1, train  # the hook's bounded retries carried it over the outage
    log = stack.task_log("fl_train", run_id, "train")
    assert "unreachable after" not in log
    retries = log.count("Retrying (Retry(")
    assert 1 <= retries, log[-3000:]
    record_property("mlflow_outage", json.dumps({"outage_s": round(outage, 1), "retries_logged": retries}))
    version = str(api.xcom("fl_train", run_id, "train")["version"])

    deploy_run = _deploy_run(stack, set())
    assert api.wait_run("fl_deploy", deploy_run, timeout=scaled(400), poll=1) == "success"
    assert _aliases(stack) == {"champion": version, "previous": None, "candidate": None}
    assert_converged(stack, version)


def test_deploy_killed_during_the_traffic_switch_converges_when_airflow_retries_it(stack):
    from mlpipe_dev.loadgen import LoadLoop

    api = stack.api
    v1 = _aliases(stack)[cv.ALIAS_CHAMPION]
    assert v1 is not None and not stack.killed.exists()
    known = {r["dag_run_id"] for r in api.runs("fl_deploy")}
    with LoadLoop(
        stack.target.endpoint,
        stack.rows,
        concurrency=CLIENTS,
        interval=CLIENT_INTERVAL,
        max_seconds=scaled(900),
    ) as load:
        run_id = _train(stack)
        assert api.wait_run("fl_train", run_id, timeout=scaled(300), poll=1) == "success"
        v2 = str(api.xcom("fl_train", run_id, "train")["version"])
        deploy_run = _deploy_run(stack, known)
        state = api.wait_run("fl_deploy", deploy_run, timeout=scaled(600), poll=1)
    killed = json.loads(stack.killed.read_text())
    assert killed["backend"]["model_version"] == v2  # killed right after switching to v2
    deploy = _ti(api, "fl_deploy", deploy_run, "deploy")
    assert state == "success" and deploy["try_number"] == 2, deploy
    out = api.xcom("fl_deploy", deploy_run, "deploy")
    assert (out["champion_version"], out["registry_previous_version"]) == (v2, v1)
    assert _aliases(stack) == {"champion": v2, "previous": v1, "candidate": None}
    tags = dict(stack.hook.get_client().get_model_version(MODEL, v2).tags)
    assert tags[cv.TAG_ROLLOUT_STATUS] == cv.RolloutStatus.SERVING
    # The backend the killed try had switched to is gone (the retry started its own).
    assert stack.target.load_state().stable.pid != killed["backend"]["pid"]
    assert_converged(stack, v2)
    assert load.stats.failed == 0, f"{load.stats.summary()}\nproxy log:\n{stack.proxy_log.report()}"


def test_backend_killed_under_live_traffic_is_restarted_by_the_health_check(stack, record_property):
    from mlpipe_dev.loadgen import LoadLoop
    from tests.fixtures.release import kill_tree

    champion = _aliases(stack)[cv.ALIAS_CHAMPION]
    assert champion is not None
    stable = stack.target.load_state().stable
    budget = math.ceil(CLIENTS / CLIENT_INTERVAL * scaled(OUTAGE_BUDGET_S))
    with LoadLoop(stack.target.endpoint, stack.rows, concurrency=CLIENTS, interval=CLIENT_INTERVAL) as before:
        _wait(lambda: before.stats.total >= 10, "client traffic")
    assert before.stats.failed == 0, before.stats.summary()
    with LoadLoop(stack.target.endpoint, stack.rows, concurrency=CLIENTS, interval=CLIENT_INTERVAL) as during:
        _wait(lambda: during.stats.total >= 10, "client traffic")
        kill_tree(stable.pid)
        killed_at = time.monotonic()
        _wait(lambda: during.stats.failed > 0, "clients to notice the dead backend", timeout=30)
        run_id = stack.api.trigger("fl_health")  # the alert starts the health check
        assert stack.api.wait_run("fl_health", run_id, timeout=scaled(300), poll=0.5) == "success"
        recovery = time.monotonic() - killed_at
    report = stack.api.xcom("fl_health", run_id, "health")
    assert report["restarted"] == ["stable"], report
    failed = during.stats.failed
    figures = {
        "failed": failed,
        "sent": during.stats.total,
        "budget": budget,
        "recovery_s": round(recovery, 1),
    }
    record_property("backend_kill", json.dumps(figures))
    print("backend kill:", figures)
    assert 1 <= failed <= budget, (figures, during.stats.summary())
    with LoadLoop(
        stack.target.endpoint, stack.rows, concurrency=CLIENTS, interval=CLIENT_INTERVAL, max_requests=20
    ) as after:
        after.wait()
    assert after.stats.failed == 0 and after.stats.total == 20, after.stats.summary()
    restarted = stack.target.load_state().stable
    assert restarted.port == stable.port and restarted.pid != stable.pid
    assert_converged(stack, champion)


def test_scheduler_and_triggerer_restart_while_a_run_waits(stack):
    api = stack.api
    run_id = api.trigger("fl_score")
    _wait(lambda: _ti(api, "fl_score", run_id, "wait")["state"] == "deferred", "the sensor to defer")
    stack.airflow.restart("scheduler")
    stack.airflow.restart("triggerer")
    _wait(
        lambda: api.get("/monitor/health")["scheduler"]["status"] == "healthy",
        "the restarted scheduler",
        poll=1,
    )
    stack.airflow.check_alive()
    stack.batch.to_parquet(stack.landing / "batch-0.parquet", index=False)
    assert api.wait_run("fl_score", run_id, timeout=scaled(300), poll=1) == "success"
    out = api.xcom("fl_score", run_id, "score")
    assert out["row_count"] == len(stack.batch) and out["version"] == _aliases(stack)[cv.ALIAS_CHAMPION]


def test_nothing_was_lost_or_duplicated(stack):
    import pyarrow.parquet as pq

    api = stack.api
    events = api.get("/assets/events?limit=100")["asset_events"]
    by_source: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_source.setdefault(f"{event['source_dag_id']}:{event['uri']}", []).append(event)
    counts = {key: len(v) for key, v in by_source.items()}
    assert counts == {
        "fl_train:mlpipe://faults/candidate": 2,
        "fl_deploy:mlpipe://faults/serving": 2,  # the killed try emitted none, its retry one
        "fl_score:mlpipe://faults/predictions": 1,
    }, counts
    deploy_runs = api.runs("fl_deploy")
    assert len(deploy_runs) == 2 and {r["state"] for r in deploy_runs} == {"success"}, deploy_runs
    candidate_runs = {e["source_run_id"] for e in by_source["fl_train:mlpipe://faults/candidate"]}
    assert len(candidate_runs) == 2  # one event per training run

    versions = sorted(
        int(v.version) for v in stack.hook.get_client().search_model_versions(f"name = '{MODEL}'")
    )
    assert versions == [1, 2], versions  # one version per training run: no retry registered twice
    served = [e["extra"].get("version") for e in by_source["fl_deploy:mlpipe://faults/serving"]]
    assert sorted(served) == ["1", "2"], served

    files = list(iter_prediction_files(stack.root / "artifacts"))
    assert len(files) == 1, files
    table = pq.read_table(files[0])
    assert sorted(table.column("row_id").to_pylist()) == list(range(len(stack.batch)))
    assert set(table.column("model_version").to_pylist()) == {_aliases(stack)[cv.ALIAS_CHAMPION]}
