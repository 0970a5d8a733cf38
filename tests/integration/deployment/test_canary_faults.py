"""Canary decisions on real servers: fault-injecting model services behind the real HAProxy.

Each faulty version (``tests/fixtures/faulty_models.py``) passes the smoke test and misbehaves
only under live traffic — 5xx answers for half of its requests, one extra second per request, or a
worker that crashes after a few requests. Each must be rejected by the canary for its own reason,
while clients see no failed request (the proxy retries a canary failure on stable) and the registry
keeps naming the stable version, which the proxy serves alone afterwards.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest

from airflow_mlpipe.core import conventions as cv
from tests.fixtures.release import Site, aliases_now, assert_registry_names_what_serves, release_version

pytestmark = [pytest.mark.integration, pytest.mark.faults]

FAULTS = {
    "errors": ({"fault": "errors", "share": 0.5}, ("error rate",)),
    "crash": ({"fault": "crash", "after": 2}, ("error rate", "went down")),
    # Each backend keeps its own latency histogram (its own BentoML home): with a shared one, both
    # reported the same mixed numbers and a version adding 1 s per request passed its canary.
    "latency": ({"fault": "latency", "latency_s": 1.0}, ("p95",)),
}


def _cases():
    yield from FAULTS.items()


@pytest.fixture(scope="module")
def fault_site(test_home, iris_frame) -> Iterator[tuple[Site, dict[str, str]]]:
    """A stable iris version serving, and one registered version per fault."""
    from sklearn.linear_model import LogisticRegression

    from airflow_mlpipe.deploy.bento import use_bentoml_home
    from airflow_mlpipe.deploy.targets.local import LocalTarget
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from tests.fixtures.deployment import register_model
    from tests.fixtures.faulty_models import FAULTS_ENV, FaultyClassifier

    hook = MlflowHook()
    name = f"faults_{uuid.uuid4().hex[:6]}"
    X, y = iris_frame.drop(columns="target"), iris_frame["target"]
    stable = register_model(hook, name, LogisticRegression(max_iter=500), X, y, task_type="classification")
    faulty = {
        kind: register_model(
            hook,
            name,
            FaultyClassifier(LogisticRegression(max_iter=500), **params),
            X,
            y,
            task_type="classification",
            skops_trusted_types=[f"{FaultyClassifier.__module__}.{FaultyClassifier.__qualname__}"],
        )
        for kind, (params, _) in _cases()
    }
    for version in [stable, *faulty.values()]:
        hook.get_client().set_model_version_tag(name, version, cv.TAG_BLESSED, "true")
    holdout = test_home / "deploy-data" / f"{name}_holdout.parquet"
    holdout.parent.mkdir(parents=True, exist_ok=True)
    iris_frame.to_parquet(holdout, index=False)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    target = LocalTarget(
        test_home / "deployments" / name,
        name=name,
        bentoml_home=use_bentoml_home(None),
        # the backends import the faulty model class from the test tree and switch its faults on
        env={FAULTS_ENV: "1", "PYTHONPATH": root},
    )
    site = Site(
        name, [stable, *faulty.values()], str(holdout), X.head(4).to_dict(orient="records"), target, hook
    )
    try:
        release_version(site, stable)
        yield site, faulty
    finally:
        target.shutdown()


@pytest.mark.parametrize("kind", list(FAULTS))
def test_faulty_canary_is_rejected_for_its_reason(fault_site, kind, record_property):
    from airflow_mlpipe.deploy.checks import CanaryFailed
    from mlpipe_dev.loadgen import LoadLoop

    site, faulty = fault_site
    stable = site.versions[0]
    version = faulty[kind]
    before = aliases_now(site)
    assert before["champion"] == stable
    with LoadLoop(site.target.endpoint, site.rows, concurrency=2) as load:
        with pytest.raises(CanaryFailed) as err:
            release_version(site, version, canary={"share": 0.3, "window_seconds": 8, "min_requests": 3})
    decision = err.value.summary["canary"]
    record_property("canary", json.dumps({"fault": kind, **decision, "clients": load.stats.summary()}))
    print(kind, json.dumps(decision), load.stats.summary())
    expected = dict(_cases())[kind][1]
    assert any(word in r for r in decision["reasons"] for word in expected), decision["reasons"]
    if kind == "errors":
        # the proxy's per-server counters count the 5xx answers it retried on stable
        assert decision["canary"]["errors"] >= 1 and decision["canary"]["error_rate"] > 0.1, decision
    if kind == "latency":
        assert decision["canary"]["p95_ms"] > 500, decision
    if kind == "crash":
        # requests in flight on the canary when it died may fail; none beyond what it was sent
        assert load.stats.failed <= decision["canary"]["requests"], (load.stats.summary(), decision)
    else:
        assert load.stats.failed == 0, load.stats.summary()
    tags = dict(site.hook.get_client().get_model_version(site.name, version).tags)
    assert (tags[cv.TAG_ROLLOUT_STATUS], tags[cv.TAG_ROLLOUT_CHECK]) == ("rejected", "canary")
    assert aliases_now(site) == {**before, "candidate": None}
    assert_registry_names_what_serves(site, stable)
