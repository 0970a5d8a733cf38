"""The release transaction on real ``bentoml serve`` backends behind a real HAProxy.

The registry must always name what serves: after a passed release, after each failure (smoke test,
canary, watch window) and after a rollback, ``champion`` is checked against the registry *and* the
version the proxy answers with. Faults are real: a bento whose model answers differently, a backend
process killed while it serves a share of (or all) live traffic, a release process killed mid-canary.
The tests run in file order on one deployment; each states its precondition.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.core.timing import scaled
from tests.fixtures.release import (
    Site,
    aliases_now,
    assert_registry_names_what_serves,
    kill_when,
    release_version,
    unexplained_failures,
    version_tags,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site(test_home, iris_frame) -> Iterator[Site]:
    """Three blessed versions of an iris model; v1 released (first deployment: nothing to compare)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB

    from airflow_mlpipe.deploy.bento import use_bentoml_home
    from airflow_mlpipe.deploy.targets.local import LocalTarget
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from tests.fixtures.deployment import register_model

    hook = MlflowHook()
    name = f"release_{uuid.uuid4().hex[:6]}"
    X, y = iris_frame.drop(columns="target"), iris_frame["target"]
    estimators = [
        LogisticRegression(C=0.05, max_iter=500),
        LogisticRegression(C=5.0, max_iter=500),
        GaussianNB(),
    ]
    versions = [register_model(hook, name, e, X, y, task_type="classification") for e in estimators]
    for v in versions:
        hook.get_client().set_model_version_tag(name, v, cv.TAG_BLESSED, "true")
    holdout = test_home / "deploy-data" / f"{name}_holdout.parquet"
    holdout.parent.mkdir(parents=True, exist_ok=True)
    iris_frame.sample(frac=1.0, random_state=1).to_parquet(holdout, index=False)
    target = LocalTarget(test_home / "deployments" / name, name=name, bentoml_home=use_bentoml_home(None))
    s = Site(name, versions, str(holdout), X.head(4).to_dict(orient="records"), target, hook)
    try:
        first = release_version(s, versions[0])
        assert first["champion_version"] == versions[0] and "watch" not in first
        yield s
    finally:
        target.shutdown()


def test_candidate_becomes_champion_only_after_canary_and_watch(site):
    from mlpipe_dev.loadgen import LoadLoop

    v1, v2 = site.versions[:2]
    assert aliases_now(site)["champion"] == v1
    seen: list[dict[str, Any]] = []

    def champion_while_canary() -> None:  # the registry during the canary: still v1
        deadline = time.monotonic() + scaled(300)
        while time.monotonic() < deadline and not seen:
            if site.target.load_state().canary is not None:
                seen.append(aliases_now(site))
            time.sleep(0.05)

    spy = threading.Thread(target=champion_while_canary, daemon=True)
    spy.start()
    with LoadLoop(site.target.endpoint, site.rows, concurrency=2) as load:
        out = release_version(site, v2)
    spy.join(5)
    assert seen and seen[0]["champion"] == v1 and seen[0]["candidate"] == v2
    assert out["canary"]["passed"] and out["watch"]["passed"]
    assert out["watch"]["serving"]["requests"] >= 1
    assert (out["champion_version"], out["registry_previous_version"]) == (v2, v1)
    assert aliases_now(site) == {"champion": v2, "previous": v1, "candidate": None}
    assert version_tags(site, v2)[cv.TAG_ROLLOUT_STATUS] == cv.RolloutStatus.SERVING
    assert load.stats.failed == 0, load.stats.summary()
    assert_registry_names_what_serves(site, v2)
    previous = site.target.load_state().previous
    assert previous.model_version == v1 and not site.target.health(previous).alive  # retired after the watch


def test_failed_smoke_test_leaves_the_registry_as_before(site):
    import bentoml
    import joblib
    from sklearn.dummy import DummyClassifier

    from airflow_mlpipe.core.registry import resolve_model
    from airflow_mlpipe.deploy.bento import build_bento
    from airflow_mlpipe.deploy.checks import SmokeTestFailed

    v2, v3 = site.versions[1:]
    before = aliases_now(site)
    assert before["champion"] == v2
    with site.hook.activate():
        model = resolve_model(site.hook.get_client(), site.name, version=v3)
    built = build_bento(site.hook, model)
    model_file = os.path.join(bentoml.models.get(built.model_tag).path, "saved_model.pkl")
    original = open(model_file, "rb").read()
    try:  # fault: the bento answers differently from the registry version
        joblib.dump(
            DummyClassifier(strategy="constant", constant=1).fit([[0.0] * 4] * 3, [1] * 3), model_file
        )
        with pytest.raises(SmokeTestFailed, match="differ from model.predict") as err:
            release_version(site, v3)
    finally:
        with open(model_file, "wb") as fh:
            fh.write(original)
    assert err.value.summary["status"] == "rejected" and err.value.summary["check"] == "smoke"
    assert aliases_now(site) == {**before, "candidate": None}
    tags = version_tags(site, v3)
    assert tags[cv.TAG_ROLLOUT_STATUS] == "rejected" and tags[cv.TAG_ROLLOUT_CHECK] == "smoke"
    assert "differ from model.predict" in tags[cv.TAG_ROLLOUT_REASON]
    assert json.loads(tags[cv.TAG_ROLLOUT_FIGURES])["mismatches"] > 0
    assert_registry_names_what_serves(site, v2)


def test_canary_that_crashes_is_rejected_with_its_figures(site):
    from airflow_mlpipe.deploy.checks import CanaryFailed
    from mlpipe_dev.loadgen import LoadLoop

    v2, v3 = site.versions[1:]
    before = aliases_now(site)
    killer, killed = kill_when(lambda: site.target.load_state().canary)
    with LoadLoop(site.target.endpoint, site.rows, concurrency=2) as load:
        with pytest.raises(CanaryFailed, match="went down"):
            release_version(site, v3)
    killer.join(5)
    assert killed, "the canary never went live"
    # The proxy retried the canary's failures on stable; only an answer the canary had begun when
    # it was killed can be lost.
    assert not unexplained_failures(load.stats, killed[0], clients=2), load.stats.summary()
    assert aliases_now(site) == {**before, "candidate": None}
    tags = version_tags(site, v3)
    assert (tags[cv.TAG_ROLLOUT_STATUS], tags[cv.TAG_ROLLOUT_CHECK]) == ("rejected", "canary")
    figures = json.loads(tags[cv.TAG_ROLLOUT_FIGURES])
    assert figures["passed"] is False and "stable" in figures and "canary" in figures
    assert_registry_names_what_serves(site, v2)


def test_failed_watch_window_rolls_back_traffic_and_leaves_the_registry(site):
    from airflow_mlpipe.deploy.release import WatchWindowFailed
    from mlpipe_dev.loadgen import LoadLoop

    v2, v3 = site.versions[1:]
    before = aliases_now(site)
    kept_pid = site.target.load_state().stable.pid

    def watched_new_stable() -> Any:
        state = site.target.load_state()
        if state.stable is not None and state.stable.model_version == v3 and state.canary is None:
            return state.stable
        return None

    killer, killed = kill_when(watched_new_stable)
    with LoadLoop(site.target.endpoint, site.rows, concurrency=2) as load:
        with pytest.raises(WatchWindowFailed, match="went down") as err:
            release_version(site, v3, watch={"window_seconds": 30})
    killer.join(5)
    assert killed
    summary = err.value.summary
    assert summary["status"] == "rolled_back" and summary["rollback"]["version"] == v2
    assert aliases_now(site) == {**before, "candidate": None}
    tags = version_tags(site, v3)
    assert (tags[cv.TAG_ROLLOUT_STATUS], tags[cv.TAG_ROLLOUT_CHECK]) == ("rolled_back", "watch")
    assert_registry_names_what_serves(site, v2)
    assert site.target.load_state().stable.pid == kept_pid  # one switch back to the kept backend
    # Clients only failed while the killed version held all traffic; it never got it back.
    assert load.stats.versions[v3] >= 1 and load.stats.statuses[200] > load.stats.failed, load.stats.summary()


def test_release_killed_mid_canary_converges_when_retried(site, test_home):
    """A release process killed with SIGKILL during the canary leaves a canary backend running;
    the retried release stops it, and ends with one stable backend and a consistent registry."""
    from airflow_mlpipe.deploy.targets.local.proxy import pid_alive
    from airflow_mlpipe.evaluation.promotion import lock_name
    from mlpipe_dev.loadgen import LoadLoop

    v3 = site.versions[2]
    serving = site.target.load_state().stable.model_version  # v2 after the tests above
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {root!r})
        from tests.fixtures import release as t
        from airflow_mlpipe.hooks.mlflow import MlflowHook
        from airflow_mlpipe.deploy.targets.local import LocalTarget
        from airflow_mlpipe.deploy.bento import use_bentoml_home
        target = LocalTarget({str(site.target.dir)!r}, name={site.name!r}, bentoml_home=use_bentoml_home(None))
        site = t.Site({site.name!r}, {site.versions!r}, {site.holdout_uri!r}, [], target, MlflowHook())
        t.release_version(site, {v3!r}, canary={{**t.CANARY, "window_seconds": 600}})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=os.getcwd(), env=dict(os.environ))
    try:
        deadline = time.monotonic() + scaled(300)
        while site.target.load_state().canary is None:
            assert proc.poll() is None, "the release process ended before its canary went live"
            assert time.monotonic() < deadline, "the canary never went live"
            time.sleep(0.1)
        orphan = site.target.load_state().canary
    finally:
        proc.kill()
        proc.wait()
    assert pid_alive(orphan.pid)  # the killed run left its canary behind, and the lock it held
    assert site.hook.get_client().get_registered_model(lock_name(site.name))
    with LoadLoop(site.target.endpoint, site.rows, concurrency=2) as load:
        out = release_version(site, v3)
    assert out["champion_version"] == v3
    assert load.stats.failed == 0, load.stats.summary()
    deadline = time.monotonic() + scaled(30)
    while pid_alive(orphan.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(orphan.pid)
    assert aliases_now(site) == {"champion": v3, "previous": serving, "candidate": None}
    assert_registry_names_what_serves(site, v3)


def test_manual_rollback_uses_the_same_path(run_dag, site):
    import pendulum
    from airflow.sdk import DAG

    from airflow_mlpipe.operators.bentoml import BentoRollbackOperator

    v3 = site.versions[2]
    v2 = aliases_now(site)["previous"]  # the version before v3 (v2 after the tests above)
    assert aliases_now(site)["champion"] == v3 and v2 is not None
    with DAG("manual_rollback", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        BentoRollbackOperator(
            task_id="rollback",
            model_name=site.name,
            deployment_name=site.name,
            state_dir=str(site.target.dir),
        )
    res = run_dag(dag)
    assert res.state == "success", res.task_states
    out = res.xcom("rollback")
    assert (out["status"], out["version"], out["rolled_back_from"], out["check"]) == (
        "rolled_back",
        v2,
        v3,
        "manual",
    )
    assert aliases_now(site) == {"champion": v2, "previous": None, "candidate": None}
    assert (version_tags(site, v3)[cv.TAG_ROLLOUT_STATUS], version_tags(site, v3)[cv.TAG_ROLLOUT_CHECK]) == (
        "rolled_back",
        "manual",
    )
    assert_registry_names_what_serves(site, v2)
