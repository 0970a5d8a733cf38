"""Adaptive batching of the served bento: concurrent one-row requests share model calls, and each
client still gets the answer for its own row.

Runs against the session's real ``bentoml serve`` behind HAProxy (``live_deployment``, batching on
by default). Batching is observed in BentoML's ``bentoml_service_adaptive_batch_size`` histogram of
the batcher service, which the endpoint's ``/metrics`` exposes: a batch of more than one request
raises its sum faster than its count.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from typing import Any

import pytest

from airflow_mlpipe.deploy.checks import post_json
from tests.fixtures.deployment import load_factor

pytestmark = pytest.mark.integration

CLIENTS = 24
_SERIES = re.compile(
    r'^bentoml_service_adaptive_batch_size_(sum|count)\{[^}]*method_name="score"[^}]*\} (\S+)$'
)


def _batches(endpoint: str) -> tuple[float, float]:
    """(requests, batches) the batcher has scored so far."""
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    seen = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        match = _SERIES.match(line)
        if match:
            seen[match.group(1)] += float(match.group(2))
    return seen["sum"], seen["count"]


def _round(endpoint: str, bodies: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    """Send every body at once (one thread each, released together); the answers in order."""
    answers: list[tuple[int, Any]] = [(0, None)] * len(bodies)
    gate = threading.Barrier(len(bodies))

    def send(i: int) -> None:
        gate.wait()
        answers[i] = post_json(f"{endpoint}/predict", bodies[i], timeout=60 * load_factor())

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_concurrent_one_row_requests_are_batched_and_each_gets_its_own_answer(
    live_deployment, iris_registered
):
    from airflow_mlpipe.core.registry import load_model, resolve_model
    from airflow_mlpipe.hooks.mlflow import MlflowHook

    hook = MlflowHook()
    with hook.activate():
        version = resolve_model(hook.get_client(), iris_registered.name, version=iris_registered.versions[0])
        model = load_model(version)
    X = iris_registered.X
    # Distinct rows from all three classes, so a mixed-up answer shows as a wrong label.
    rows = X.iloc[list(range(0, 150, 150 // CLIENTS))[:CLIENTS]]
    expected = model.predict(rows).tolist()
    proba = model.predict_proba(rows).tolist()
    assert len(set(expected)) == 3
    bodies = [{"rows": [row]} for row in rows.to_dict(orient="records")]
    bad = {"rows": [{**bodies[0]["rows"][0], "sepal_length": "long"}]}

    endpoint = live_deployment.endpoint
    requests0, batches0 = _batches(endpoint)
    deadline = time.monotonic() + 120 * load_factor()
    rounds = 0
    while True:
        rounds += 1
        answers = _round(endpoint, [*bodies, bad])
        *good, refused = answers
        assert refused[0] == 400, refused  # the bad request alone is refused …
        assert "sepal_length" in " ".join(refused[1]["problems"])
        for i, (status, answer) in enumerate(good):  # … and every other client gets its own row's answer
            assert status == 200, answer
            assert answer["predictions"] == [expected[i]], (i, answer)
            assert answer["probabilities"][0] == pytest.approx(proba[i], abs=1e-9)
            assert answer["model_version"] == str(iris_registered.versions[0])
        requests, batches = _batches(endpoint)
        if requests - requests0 > batches - batches0:  # some model call served several requests
            break
        assert time.monotonic() < deadline, f"no batch of more than one request in {rounds} rounds"
    assert requests - requests0 >= CLIENTS * rounds


def test_a_multi_row_request_gets_its_rows_in_order(live_deployment, iris_registered):
    from airflow_mlpipe.core.registry import load_model, resolve_model
    from airflow_mlpipe.hooks.mlflow import MlflowHook

    hook = MlflowHook()
    with hook.activate():
        model = load_model(
            resolve_model(hook.get_client(), iris_registered.name, version=iris_registered.versions[0])
        )
    rows = iris_registered.X.iloc[[0, 75, 149, 50, 100]]
    status, answer = post_json(
        f"{live_deployment.endpoint}/predict", {"rows": rows.to_dict(orient="records")}
    )
    assert status == 200, answer
    assert answer["predictions"] == model.predict(rows).tolist()
    assert answer["classes"] == model.classes_.tolist()
