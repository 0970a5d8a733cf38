"""The HTTP service logs what it scores: a real bento with a prediction log under ``bentoml serve``.

A binary classifier (so rows have scores) is served with batching on (the default); ``rows``
requests carry a customer key and an event time beside the features. The first part appears within
the flush interval while the service runs; the rows scored after it are written when the service is
stopped gracefully (SIGTERM, as a rollout retires a backend). The log is then read and joined with
labels as monitoring reads it.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_mlpipe.deploy.checks import post_json
from tests.fixtures.deployment import TARGET_KINDS, docker_spec, load_factor, register_model
from tests.fixtures.services import wait_until

pytestmark = pytest.mark.integration

_LOGGED = re.compile(r'^mlpipe_prediction_log_rows_total\{[^}]*outcome="(\w+)"[^}]*\} (\S+)$')


@pytest.fixture(scope="module", params=TARGET_KINDS)
def logged_service(request: pytest.FixtureRequest, test_home: Path, breast_cancer_frame: Any) -> Any:
    """A binary model's bento with a prediction log, served on each target kind (``bentoml serve``
    as a process, or its image as a container with the log directory mounted); stopped after."""
    from sklearn.linear_model import LogisticRegression

    from airflow_mlpipe.config.monitoring import PredictionLogWriterConfig
    from airflow_mlpipe.core.registry import resolve_model
    from airflow_mlpipe.deploy.bento import build_bento, use_bentoml_home
    from airflow_mlpipe.deploy.targets import resolve_target
    from airflow_mlpipe.hooks.mlflow import MlflowHook

    home = use_bentoml_home(None)
    hook = MlflowHook()
    name = f"cancer_{uuid.uuid4().hex[:6]}"
    X, y = breast_cancer_frame.drop(columns="target"), breast_cancer_frame["target"]
    version = register_model(hook, name, LogisticRegression(max_iter=5000), X, y, task_type="classification")
    with hook.activate():
        model = resolve_model(hook.get_client(), name, version=version)
    log_dir = test_home / "prediction-logs" / name
    log = PredictionLogWriterConfig(uri=str(log_dir), keys=["customer_id"], timestamp_column="event_ts")
    bento = build_bento(hook, model, prediction_log=log)
    assert bento.config["prediction_log"]["directory"] == str(log_dir)
    state_dir = test_home / "deployments" / f"{name}-{request.param}"
    if request.param == "docker":
        spec = docker_spec(state_dir=state_dir, ready_timeout=90 * load_factor())
    else:
        spec = {"kind": "local", "state_dir": str(state_dir), "bentoml_home": home}
        spec["ready_timeout"] = 60 * load_factor()
    target = resolve_target(spec, deployment_name=f"logged-{request.param}")
    backend = target.start(bento.tag, model_name=name, model_version=version)
    try:
        yield target, backend, log, version, X
    finally:
        target.stop(backend)


def _rows(X: Any, start: int, keys: list[Any], times: list[str | None]) -> list[dict[str, Any]]:
    rows = []
    for i, (key, when) in enumerate(zip(keys, times, strict=True)):
        row = {k: float(v) for k, v in X.iloc[start + i].items()}
        if key is not None:
            row["customer_id"] = key
        if when is not None:
            row["event_ts"] = when
        rows.append(row)
    return rows


def _logged_counts(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {m[1]: float(m[2]) for line in text.splitlines() if (m := _LOGGED.match(line))}


def test_every_scored_row_is_logged_once_with_its_key_time_prediction_score_and_version(logged_service):
    import pandas as pd

    from airflow_mlpipe.config.monitoring import PredictionLogConfig
    from airflow_mlpipe.monitoring.prediction_log import join_labels, read_log

    target, backend, log, version, X = logged_service
    url = backend.url
    hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0)
    sent = _rows(X, 0, ["c1", "c2", "c3"], [hour_ago.isoformat(), "2026-01-02T03:04:05", None])
    before = dt.datetime.now(dt.UTC)
    status, first = post_json(f"{url}/predict", {"rows": sent})
    after = dt.datetime.now(dt.UTC)
    assert status == 200, first
    # Refused requests log nothing: an unknown column (the log's fields are the only extra ones
    # allowed), a malformed event time.
    refused = _rows(X, 3, ["r1"], [None])
    refused[0]["color"] = "red"
    status, body = post_json(f"{url}/predict", {"rows": refused})
    assert status == 400 and "color" in body["error"], body
    status, body = post_json(f"{url}/predict", {"rows": _rows(X, 4, ["r2"], ["yesterday"])})
    assert status == 400 and "event_ts" in body["error"], body
    # A row without its key is scored but not logged: nothing to join a label to.
    status, body = post_json(f"{url}/predict", {"rows": _rows(X, 5, [None], [None])})
    assert status == 200 and len(body["predictions"]) == 1

    # The first part is written within the flush interval, while the service runs.
    part = wait_until("a log part", lambda: len(read_log(log.uri)) or None, 30 * load_factor())
    assert part == 3
    counts = wait_until(
        "the written rows counted", lambda: _logged_counts(url).get("written"), 15 * load_factor()
    )
    assert counts == 3 and _logged_counts(url).get("skipped") == 1

    # Rows scored after that part are written when the service stops gracefully.
    status, second = post_json(f"{url}/predict", {"rows": _rows(X, 6, [4], [None])})
    assert status == 200
    target.stop(backend)
    logged = read_log(log.uri)
    assert sorted(map(str, logged["customer_id"])) == ["4", "c1", "c2", "c3"]

    scores = [*first["scores"], *second["scores"]]
    predictions = [*first["predictions"], *second["predictions"]]
    by_key = logged.set_index(logged["customer_id"].astype(str))
    for key, prediction, score in zip(["c1", "c2", "c3", "4"], predictions, scores, strict=True):
        assert by_key.loc[key, "prediction"] == prediction
        assert by_key.loc[key, "score"] == pytest.approx(score, rel=1e-12)
    assert set(logged["model_version"]) == {str(version)}
    assert by_key.loc["c1", "event_ts"] == pd.Timestamp(hour_ago)
    assert by_key.loc["c2", "event_ts"] == pd.Timestamp("2026-01-02T03:04:05Z")  # naive: UTC
    assert pd.Timestamp(before) <= by_key.loc["c3", "event_ts"] <= pd.Timestamp(after)  # arrival

    # Monitoring's join judges each logged prediction once by its label.
    labels = pd.DataFrame(
        {
            "customer_id": ["c1", "c3", "4"],
            "label_ts": [
                hour_ago + dt.timedelta(minutes=30),
                after + dt.timedelta(minutes=1),
                after + dt.timedelta(minutes=2),
            ],
            "y": [1, 0, 1],
        }
    )
    logged["customer_id"] = logged["customer_id"].astype(str)
    cfg = PredictionLogConfig(
        uri=log.uri,
        labels_uri="unused",
        keys=["customer_id"],
        label_column="y",
        label_timestamp_column="label_ts",
        timestamp_column="event_ts",
        label_delay_seconds=7200,
    )
    joined, stats = join_labels(
        logged, labels, cfg, as_of=after + dt.timedelta(minutes=5), model_version=str(version)
    )
    assert stats["judged"] == 3 and stats["duplicate_predictions"] == 0
    assert sorted(joined["customer_id"]) == ["4", "c1", "c3"]
