"""The rollout against real ``bentoml serve`` backends behind a real HAProxy, on each target kind:
local processes, and containers on a Docker Engine (``containers`` marker).

One deployment per target kind lives for the whole module (starting a backend takes seconds); the tests run in
file order and each states the precondition it relies on.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from typing import Any

import pendulum
import pytest

from airflow_mlpipe.core import conventions as cv
from tests.fixtures.deployment import kill_backend, proxy_trouble
from tests.fixtures.release import kill_when, unexplained_failures

pytestmark = pytest.mark.integration


def _post(url: str, body: Any, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/predict", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def _dag(dag_id: str, op: Any) -> Any:
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False) as dag:
        dag.add_task(op)
    return dag


def test_service_schema_and_errors(live_deployment, iris_registered):
    from airflow_mlpipe.core.registry import load_model, resolve_model
    from airflow_mlpipe.hooks.mlflow import MlflowHook

    url = live_deployment.endpoint
    hook = MlflowHook()
    with hook.activate():
        model = resolve_model(hook.get_client(), iris_registered.name, version=iris_registered.versions[0])
        expected = load_model(model).predict(iris_registered.X.head(4)).tolist()
    status, body = _post(url, {"rows": iris_registered.rows})
    assert status == 200
    assert body["predictions"] == expected
    assert body["model_version"] == iris_registered.versions[0]
    assert body["fingerprint"] == model.fingerprint

    good = dict(iris_registered.rows[0])
    missing = {k: v for k, v in good.items() if k != "petal_width"}
    cases = {
        "missing": ({"rows": [missing]}, "petal_width"),
        "wrong type": ({"rows": [{**good, "sepal_length": "abc"}]}, "sepal_length expects double"),
        "extra column": ({"rows": [{**good, "junk": 1}]}, "unknown column(s) ['junk']"),
        "extra key": ({"rows": [good], "junk": 1}, "junk"),
        "empty rows": ({"rows": []}, "empty"),
        "no rows": ({}, "rows"),
        "row not object": ({"rows": [3]}, "must be an object"),
        "null value": ({"rows": [{**good, "petal_length": None}]}, "petal_length is null"),
        "rows not list": ({"rows": "x"}, "array"),
    }
    for case, (payload, needle) in cases.items():
        status, body = _post(url, payload)
        assert 400 <= status < 500, (case, status, body)
        assert needle in json.dumps(body), (case, body)
    status, body = _post(url, None, raw=b"{not json")
    assert status == 400 and "json" in json.dumps(body).lower()

    status, info = _get(f"{url}/info")
    info = json.loads(info)
    assert status == 200
    assert info["model_name"] == iris_registered.name and info["model_version"] == iris_registered.versions[0]
    assert [c["name"] for c in info["inputs"]] == list(iris_registered.X.columns)
    assert _get(f"{url}/readyz")[0] == 200 and _get(f"{url}/livez")[0] == 200
    assert b"bentoml_service_request_duration_seconds" in _get(f"{url}/metrics")[1]


def test_canary_promotes_with_zero_failed_requests(run_dag, live_deployment, iris_registered):
    from airflow.sdk import Asset

    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from airflow_mlpipe.operators.bentoml import BentoDeployOperator
    from mlpipe_dev.loadgen import LoadLoop

    v2 = iris_registered.versions[1]
    assert live_deployment.load_state().stable.model_version == iris_registered.versions[0]
    asset = Asset(name="iris-serving", uri="mlpipe://deployment/iris")

    def op(task_id: str) -> BentoDeployOperator:
        return BentoDeployOperator(
            task_id=task_id,
            model_name=iris_registered.name,
            version=v2,
            deployment_name=live_deployment.name,
            target=live_deployment.spec,
            holdout_uri=iris_registered.holdout_uri,
            canary={"share": 0.2, "window_seconds": 4, "min_requests": 5},
            outlets=[asset],
        )

    with LoadLoop(live_deployment.endpoint, iris_registered.rows, concurrency=2) as load:
        res = run_dag(_dag("deploy_canary", op("deploy")))
        time.sleep(0.5)  # traffic after the switch
    stats = load.stats
    assert res.state == "success", res.task_states
    out = res.xcom("deploy")
    assert out["status"] == "deployed" and out["version"] == v2
    assert out["canary"]["passed"] is True and out["canary"]["canary"]["requests"] >= 5
    assert out["endpoint"] == live_deployment.endpoint
    assert stats.failed == 0, f"{stats.summary()}\nproxy log:\n{proxy_trouble(live_deployment)}"
    assert stats.total >= 100 and set(stats.versions) == {iris_registered.versions[0], v2}
    assert res.xcom("deploy", key="mlpipe_serving_endpoint") == f"{live_deployment.endpoint}/info"
    events = dict(res.asset_events())
    assert events["mlpipe://deployment/iris"]["version"] == v2
    tags = MlflowHook().get_client().get_model_version(iris_registered.name, v2).tags
    assert tags[cv.TAG_DEPLOY_BENTO] == out["bento_tag"]
    assert tags[cv.TAG_DEPLOY_ENDPOINT] == live_deployment.endpoint
    assert tags[cv.TAG_DEPLOYED_AT] == out["deployed_at"]
    assert _post(live_deployment.endpoint, {"rows": iris_registered.rows})[1]["model_version"] == v2

    # the same version again: nothing restarts, nothing changes
    serving = live_deployment.load_state().stable
    again = run_dag(_dag("deploy_again", op("deploy")))
    assert again.state == "success"
    assert again.xcom("deploy")["status"] == "noop"
    assert live_deployment.load_state().stable == serving


def test_bad_bentos_never_get_traffic(live_deployment, iris_registered):
    """A bento that cannot load, and one that answers wrongly, fail before any traffic."""
    import bentoml
    import joblib
    from sklearn.dummy import DummyClassifier

    from airflow_mlpipe.config.deploy import CanaryConfig, SmokeTestConfig
    from airflow_mlpipe.core.registry import resolve_model
    from airflow_mlpipe.deploy.bento import build_bento
    from airflow_mlpipe.deploy.checks import SmokeTestFailed
    from airflow_mlpipe.deploy.rollout import deploy
    from airflow_mlpipe.deploy.targets.local import BackendStartError
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from mlpipe_dev.loadgen import LoadLoop

    stable = live_deployment.load_state().stable
    hook = MlflowHook()
    with hook.activate():
        model = resolve_model(hook.get_client(), iris_registered.name, version=iris_registered.versions[2])
    built = build_bento(hook, model)
    model_file = os.path.join(bentoml.models.get(built.model_tag).path, "saved_model.pkl")
    original = open(model_file, "rb").read()
    smoke = SmokeTestConfig(iris_registered.holdout_uri)
    try:
        with LoadLoop(live_deployment.endpoint, iris_registered.rows, concurrency=2) as load:
            with open(model_file, "wb") as fh:  # fault: a truncated model file
                fh.write(original[:100])
            with pytest.raises(BackendStartError, match="exited|not ready"):
                deploy(live_deployment, hook, model, smoke=smoke, canary=CanaryConfig())
            # fault: a model that loads but answers differently from the registry version
            joblib.dump(
                DummyClassifier(strategy="constant", constant=1).fit(iris_registered.X, [1] * 150), model_file
            )
            with pytest.raises(SmokeTestFailed, match="differ from model.predict"):
                deploy(live_deployment, hook, model, smoke=smoke, canary=CanaryConfig())
    finally:
        with open(model_file, "wb") as fh:
            fh.write(original)
    assert load.stats.failed == 0, f"{load.stats.summary()}\nproxy log:\n{proxy_trouble(live_deployment)}"
    assert set(load.stats.versions) == {stable.model_version}
    state = live_deployment.load_state()
    assert state.stable.bento_tag == stable.bento_tag and state.canary is None
    assert [p for p in live_deployment.traffic()] == [stable.server]


def test_killed_backend_is_detected_and_restarted(run_dag, live_deployment, iris_registered):
    from airflow_mlpipe.deploy.rollout import check
    from airflow_mlpipe.operators.bentoml import BentoHealthCheckOperator

    stable = live_deployment.load_state().stable
    kill_backend(stable)
    deadline = time.monotonic() + 10
    while live_deployment.health(stable).ok and time.monotonic() < deadline:
        time.sleep(0.1)
    report = check(live_deployment)
    assert report["healthy"] is False
    assert report["backends"]["stable"]["alive"] is False

    def op(task_id: str, restart: bool) -> BentoHealthCheckOperator:
        return BentoHealthCheckOperator(
            task_id=task_id,
            deployment_name=live_deployment.name,
            target=live_deployment.spec,
            restart=restart,
        )

    failed = run_dag(_dag("health_strict", op("health", restart=False)))
    assert failed.task_states["health"] == "failed"
    assert failed.xcom("health")["healthy"] is False
    fixed = run_dag(_dag("health_restart", op("health", restart=True)))
    assert fixed.state == "success"
    assert fixed.xcom("health")["restarted"] == ["stable"]
    assert check(live_deployment)["healthy"] is True
    status, body = _post(live_deployment.endpoint, {"rows": iris_registered.rows})
    assert status == 200 and body["model_version"] == stable.model_version


def test_failing_canary_is_rolled_back(live_deployment, iris_registered):
    from airflow_mlpipe.config.deploy import CanaryConfig
    from airflow_mlpipe.core.registry import resolve_model
    from airflow_mlpipe.deploy.checks import CanaryFailed
    from airflow_mlpipe.deploy.rollout import deploy
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from mlpipe_dev.loadgen import LoadLoop

    hook = MlflowHook()
    stable = live_deployment.load_state().stable
    with hook.activate():
        model = resolve_model(hook.get_client(), iris_registered.name, version=iris_registered.versions[2])
    killer, killed = kill_when(lambda: live_deployment.load_state().canary)
    with LoadLoop(live_deployment.endpoint, iris_registered.rows, concurrency=2) as load:
        with pytest.raises(CanaryFailed, match="went down") as err:
            deploy(live_deployment, hook, model, smoke=None, canary=CanaryConfig(share=0.3, window_seconds=5))
    killer.join(5)
    assert killed, "the canary never went live"
    assert err.value.summary["status"] == "rolled_back"
    # HAProxy retried the canary's failures on stable; only an answer the canary had begun when it
    # was killed can be lost.
    unexplained = unexplained_failures(load.stats, killed[0], clients=2)
    assert not unexplained, (
        f"{unexplained}\n{load.stats.summary()}\nproxy log:\n{proxy_trouble(live_deployment)}"
    )
    state = live_deployment.load_state()
    assert state.stable.bento_tag == stable.bento_tag and state.canary is None
    assert (
        _post(live_deployment.endpoint, {"rows": iris_registered.rows})[1]["model_version"]
        == stable.model_version
    )


def test_rollback_to_previous_in_one_step(run_dag, live_deployment, iris_registered):
    from airflow.sdk import Asset

    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from airflow_mlpipe.operators.bentoml import BentoRollbackOperator

    v1, v2 = iris_registered.versions[:2]
    client = MlflowHook().get_client()
    client.set_registered_model_alias(iris_registered.name, cv.ALIAS_CHAMPION, v2)
    client.set_registered_model_alias(iris_registered.name, cv.ALIAS_PREVIOUS, v1)
    assert live_deployment.load_state().stable.model_version == v2
    asset = Asset(name="iris-serving", uri="mlpipe://deployment/iris")
    op = BentoRollbackOperator(
        task_id="rollback",
        model_name=iris_registered.name,
        deployment_name=live_deployment.name,
        target=live_deployment.spec,
        outlets=[asset],
    )
    res = run_dag(_dag("rollback", op))
    assert res.state == "success", res.task_states
    out = res.xcom("rollback")
    assert out["status"] == "rolled_back" and out["version"] == v1 and out["rolled_back_from"] == v2
    assert _post(live_deployment.endpoint, {"rows": iris_registered.rows})[1]["model_version"] == v1
    assert str(client.get_model_version_by_alias(iris_registered.name, cv.ALIAS_CHAMPION).version) == v1
    assert dict(res.asset_events())["mlpipe://deployment/iris"]["status"] == "rolled_back"
