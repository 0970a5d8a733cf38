"""The scorer and the Redis Streams transport in this process, against the real Redis and a real bento."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.integration.streaming.conftest import iris_event, malformed_event

pytestmark = [pytest.mark.integration, pytest.mark.streaming]


@pytest.fixture(scope="module")
def bento_model(stream_bentos: Any) -> Any:
    from airflow_mlpipe._serving.stream import BentoStreamModel, load_bento_service

    module, service = load_bento_service(stream_bentos[0].tag)
    return BentoStreamModel(module, service)


def _scorer(config: Any, model: Any, name: str = "v1", consumer: str = "c1") -> Any:
    from airflow_mlpipe.streaming.redis_streams import RedisStreamTransport
    from airflow_mlpipe.streaming.scorer import StreamScorer

    transport = RedisStreamTransport(config)
    scorer = StreamScorer(transport, model, config=config, name=name, consumer=consumer)
    transport.ensure_group(scorer.group, "0")
    return scorer


def _entries(client: Any, stream: str) -> list[dict[str, str]]:
    return [fields for _, fields in client.xrange(stream)]


def test_each_bento_loads_its_own_service(stream_bentos, iris_registered):
    """Every bento's service module has one name (``mlpipe_service``) and reads its configuration
    when imported: each load must import the bento's own copy, whatever was imported (or built, which
    imports the service too) before in this process. Once, the first bento imported answered every
    later load, so a scorer after another model's tests dead-lettered every event (wrong schema)."""
    import os
    import sys

    from airflow_mlpipe._serving.stream import load_bento_service

    before = (os.environ.get("MLPIPE_SERVICE_CONFIG"), "mlpipe_service" in sys.modules, list(sys.path))
    loaded = [load_bento_service(stream_bentos[i].tag) for i in (1, 0, 1)]
    assert [service.identity["model_version"] for _, service in loaded] == [
        iris_registered.versions[1],
        iris_registered.versions[0],
        iris_registered.versions[1],
    ]
    assert [module._CONFIG["bento_tag"] for module, _ in loaded] == [stream_bentos[i].tag for i in (1, 0, 1)]
    # Nothing of a load stays behind for the next one: environment, module cache, import path.
    assert (
        os.environ.get("MLPIPE_SERVICE_CONFIG"),
        "mlpipe_service" in sys.modules,
        list(sys.path),
    ) == before


def test_scores_valid_events_and_dead_letters_malformed(stream_config, bento_model, iris_registered):
    scorer = _scorer(stream_config, bento_model)
    client = scorer.transport.client
    rows = iris_registered.X.to_dict(orient="records")
    for i, row in enumerate(rows):
        client.xadd(
            stream_config.input_stream, malformed_event(row, i) if i % 50 == 7 else iris_event(row, i)
        )
    bad = {f"e{i}" for i in range(len(rows)) if i % 50 == 7}
    while scorer.step().read:
        pass

    scored = _entries(client, stream_config.output_stream)
    dead = _entries(client, stream_config.dead_letter_stream)
    assert {d["event_id"] for d in dead} == bad
    assert all(d["status"] == "malformed" and json.loads(d["problems"]) for d in dead)
    assert any("not valid JSON" in d["error"] for d in dead)
    assert any("lacks column" in d["error"] for d in dead)
    assert len(scored) == len(rows) - len(bad)
    # Same answers as the model itself, with the probability of the predicted class (multiclass: no
    # positive class) and its version; the version's identity is kept once beside the output.
    model = bento_model.service.model
    by_id = {s["event_id"]: s for s in scored}
    valid = [i for i in range(len(rows)) if f"e{i}" not in bad]
    frame = iris_registered.X.iloc[valid]
    expected, proba = model.predict(frame), model.predict_proba(frame)
    for n, i in enumerate(valid):
        out = by_id[f"e{i}"]
        assert json.loads(out["prediction"]) == expected[n]
        assert json.loads(out["probability"]) == pytest.approx(proba[n].max())
        assert "score" not in out
        assert out["model_version"] == iris_registered.versions[0] and out["input_position"]
    identity = scorer.transport.models()[iris_registered.versions[0]]
    assert identity == bento_model.identity and identity["fingerprint"]
    state = scorer.transport.group_state(scorer.group)
    assert state["pending"] == 0 and state["lag"] == 0


def _wait_idle(client: Any, config: Any, group: str, count: int) -> None:
    """Until ``count`` pending events of ``group`` have been idle for ``claim_idle_ms``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pending = client.xpending_range(config.input_stream, group, "-", "+", count)
        if len(pending) == count and min(p["time_since_delivered"] for p in pending) >= config.claim_idle_ms:
            return
        time.sleep(0.05)
    raise AssertionError("pending events did not become idle")


@pytest.mark.parametrize("guard", [True, False], ids=["with-done-hash", "without-done-hash"])
def test_claimed_events_have_one_result_each(stream_config, bento_model, iris_registered, guard):
    """A slow consumer's batch is claimed by another; both commit it. The done hash keeps one result
    per event id; without it (the guard removed) the output holds duplicates."""
    slow = _scorer(stream_config, bento_model, consumer="slow")
    fast = _scorer(stream_config, bento_model, consumer="fast")
    client = slow.transport.client
    rows = iris_registered.X.head(20).to_dict(orient="records")
    for i, row in enumerate(rows):
        client.xadd(stream_config.input_stream, iris_event(row, i))
    held = slow.transport.read(slow.group, "slow", 100, 100)  # read, then stalls before committing
    assert len(held) == 20
    _wait_idle(client, stream_config, slow.group, 20)
    claimed = fast.transport.claim_stale(fast.group, "fast", stream_config.claim_idle_ms, 100)
    assert [e.position for e in claimed] == [e.position for e in held]
    first = fast.process(claimed)
    if not guard:
        client.delete(fast.transport.done_key)
    second = slow.process(held)

    ids = [s["event_id"] for s in _entries(client, stream_config.output_stream)]
    assert first.scored == 20
    if guard:
        assert second.duplicates == 20 and second.scored == 0
        assert sorted(ids) == sorted(f"e{i}" for i in range(20))
    else:
        assert len(ids) == 40 and len(set(ids)) == 20


def test_routing_epochs_give_each_event_one_owner(stream_config, bento_model, iris_registered):
    """A canary epoch splits event keys by hash; a later epoch applies only to later events."""
    from airflow_mlpipe.streaming.transport import BUCKETS, bucket

    a = _scorer(stream_config, bento_model, name="a")
    b = _scorer(stream_config, bento_model, name="b")
    client = a.transport.client
    rows = iris_registered.X.to_dict(orient="records")
    a.transport.set_route({"a": (0, BUCKETS)})
    for i in range(40):
        client.xadd(stream_config.input_stream, iris_event(rows[i % len(rows)], i))
    switch = a.transport.set_route({"b": (0, 3000), "a": (3000, BUCKETS)})
    for i in range(40, 150):
        client.xadd(stream_config.input_stream, iris_event(rows[i % len(rows)], i))
    # b runs ahead of a, and a promotion epoch arrives before a has read anything after the split.
    while b.step().read:
        pass
    a.transport.set_route({"b": (0, BUCKETS)})
    for i in range(150, 160):
        client.xadd(stream_config.input_stream, iris_event(rows[i % len(rows)], i))
    while a.step().read or b.step().read:
        pass

    scored = _entries(client, stream_config.output_stream)
    owner = {s["event_id"]: s["scorer"] for s in scored}
    assert sorted(owner) == sorted(f"e{i}" for i in range(160))
    for i in range(160):
        if i < 40:
            want = "a"
        elif i < 150:
            want = "b" if bucket(f"e{i}") < 3000 else "a"
        else:
            want = "b"
        assert owner[f"e{i}"] == want, (i, switch)
    assert {"a", "b"} == {owner[f"e{i}"] for i in range(40, 150)}


def test_metrics_read_by_the_serving_health_check(stream_config, bento_model, iris_registered):
    from airflow_mlpipe.config.monitoring import ServingHealthConfig
    from airflow_mlpipe.core.prometheus import parse
    from airflow_mlpipe.monitoring.serving import aggregate, evaluate

    scorer = _scorer(stream_config, bento_model)
    client = scorer.transport.client
    rows = iris_registered.X.head(30).to_dict(orient="records")
    for i, row in enumerate(rows):
        client.xadd(stream_config.input_stream, malformed_event(row, i) if i == 3 else iris_event(row, i))
    scorer.step()
    client.xadd(stream_config.input_stream, iris_event(rows[0], 999))  # left unread: lag 1
    scorer.update_gauges()
    samples = parse(scorer.metrics.render())
    cfg = ServingHealthConfig(metric_prefix="mlpipe_stream_", max_latency_seconds=5.0, max_error_rate=0.0)
    health = evaluate(aggregate(samples, cfg), cfg)
    assert health["requests"] == 30 and health["errors"] == 0 and health["healthy"]
    values = {(n, lbl.get("outcome")): v for n, lbl, v in samples}
    assert values[("mlpipe_stream_events_total", "scored")] == 29
    assert values[("mlpipe_stream_events_total", "dead_letter")] == 1
    assert values[("mlpipe_stream_consumer_lag", None)] == 1
    assert values[("mlpipe_stream_event_latency_seconds_count", None)] == 30


def test_scored_events_become_a_monitored_batch(stream_config, bento_model, iris_registered, tmp_path):
    import pandas as pd

    from airflow_mlpipe.streaming.batches import export_scored_batch

    scorer = _scorer(stream_config, bento_model)
    client = scorer.transport.client
    rows = iris_registered.X.head(40).to_dict(orient="records")
    for i, row in enumerate(rows):
        client.xadd(stream_config.input_stream, iris_event(row, i))
    while scorer.step().read:
        pass
    first = export_scored_batch(stream_config, tmp_path / "batches", max_events=30)
    second = export_scored_batch(stream_config, tmp_path / "batches", max_events=30)
    assert export_scored_batch(stream_config, tmp_path / "batches") is None  # nothing new

    assert first is not None and second is not None
    assert (first["rows"], second["rows"]) == (30, 10)
    frame = pd.concat([pd.read_parquet(first["path"]), pd.read_parquet(second["path"])])
    assert list(frame.columns[:4]) == list(iris_registered.X.columns)
    assert frame[list(iris_registered.X.columns)].to_dict(orient="records") == rows
    expected = bento_model.service.model.predict(iris_registered.X.head(40))
    assert frame["prediction"].tolist() == expected.tolist()
    assert frame["probability"].notna().all() and frame["score"].isna().all()  # multiclass
    assert first["model_versions"] == [iris_registered.versions[0]]


def _binary_model() -> tuple[Any, Any, list[dict[str, float]]]:
    """A binary classifier served as a bento's service is (same ``BentoStreamModel``), in process."""
    from types import SimpleNamespace

    import pandas as pd
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    from airflow_mlpipe._serving.stream import BentoStreamModel

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X.columns = [c.replace(" ", "_") for c in X.columns]
    estimator = LogisticRegression(max_iter=5000).fit(X, y)
    inputs = [{"name": c, "type": "double"} for c in X.columns]
    module = SimpleNamespace(
        to_frame=lambda rows, cols: pd.DataFrame(rows, columns=[c["name"] for c in cols])
    )
    service = SimpleNamespace(
        model=estimator,
        identity={"model_name": "cancer", "model_version": "7", "fingerprint": "sha256:x"},
        reader=None,
        inputs=inputs,
        config={"framework": "sklearn"},
    )
    return BentoStreamModel(module, service), estimator, X.to_dict(orient="records")


def test_binary_scored_events_carry_the_positive_class_score(stream_config, tmp_path):
    """A binary classifier's scored event carries ``score`` = P(classes[1]) — what the HTTP
    service returns as ``scores`` — and the monitored batch has it as its ``score`` column."""
    import pandas as pd

    from airflow_mlpipe.streaming.batches import export_scored_batch

    model, estimator, rows = _binary_model()
    scorer = _scorer(stream_config, model)
    client = scorer.transport.client
    for i, row in enumerate(rows[:120]):
        client.xadd(stream_config.input_stream, iris_event(row, i))
    while scorer.step().read:
        pass
    scored = {s["event_id"]: s for s in _entries(client, stream_config.output_stream)}
    frame = pd.DataFrame(rows[:120])
    positive = estimator.predict_proba(frame)[:, 1]
    labels = estimator.predict(frame)
    assert len(scored) == 120 and 0 < labels.sum() < 120  # both classes predicted
    for i in range(120):
        out = scored[f"e{i}"]
        assert json.loads(out["prediction"]) == labels[i]
        assert json.loads(out["score"]) == pytest.approx(positive[i], rel=1e-9)
        assert "probability" not in out
    exported = export_scored_batch(stream_config, tmp_path / "batches")
    assert exported is not None
    batch = pd.read_parquet(exported["path"])
    assert batch["score"].tolist() == pytest.approx(positive.tolist(), rel=1e-9)
    assert batch["probability"].isna().all()


def test_a_stop_commits_the_batch_in_hand(stream_config, bento_model, iris_registered):
    """``run`` holds a scored batch until the next read (its commit then overlaps the next batch's
    scoring): stopped right after scoring one, it commits it before returning — nothing is left
    pending, every event of it has its result."""
    scorer = _scorer(stream_config, bento_model)
    client = scorer.transport.client
    for i, row in enumerate(iris_registered.X.head(120).to_dict(orient="records")):
        client.xadd(stream_config.input_stream, iris_event(row, i))
    checks = iter([False, True])
    scorer.run(lambda: next(checks))  # one batch read and scored, then the stop
    assert client.xlen(stream_config.output_stream) == stream_config.batch_size
    assert scorer.transport.group_state(scorer.group)["pending"] == 0
    # Run to the end: every event once, in input order.
    scorer.run(lambda: scorer.metrics.events["scored"] >= 120)
    ids = [s["event_id"] for s in _entries(client, stream_config.output_stream)]
    assert ids == [f"e{i}" for i in range(120)]


def test_scored_events_are_logged_for_live_quality(stream_config, tmp_path):
    """With a prediction log, each event the scorer wrote is logged once — its entity keys, its event
    time (the event's own, else when it arrived), the prediction and the positive-class score — so
    live quality joins labels to the stream's predictions as it does to batch scoring's."""
    import dataclasses

    import pandas as pd

    from airflow_mlpipe.monitoring.prediction_log import read_log

    log_uri = str(tmp_path / "log")
    config = dataclasses.replace(stream_config, prediction_log={"uri": log_uri, "keys": ["customer_id"]})
    model, estimator, rows = _binary_model()
    scorer = _scorer(config, model)
    client = scorer.transport.client
    sent = {}
    for i, row in enumerate(rows[:80]):
        # The keys and event time travel beside the model's columns (which are all ``data`` holds).
        event = {"event_id": f"e{i}", "data": json.dumps(row), "customer_id": f"c{i}"}
        if i % 2:
            event["event_timestamp"] = f"2026-11-{1 + i % 28:02d}T10:00:00+00:00"
        sent[f"c{i}"] = client.xadd(config.input_stream, event)
    # A redelivered event (same event_id) has one result, so one log row; one without its key, none.
    client.xadd(config.input_stream, {"event_id": "e3", "data": json.dumps(rows[3]), "customer_id": "c3"})
    client.xadd(config.input_stream, {"event_id": "e80", "data": json.dumps(rows[80])})
    scorer.run(lambda: scorer.metrics.events["duplicate"] + scorer.metrics.events["scored"] >= 82)
    assert scorer.prediction_log is not None and scorer.prediction_log.skipped == 1

    log = read_log(log_uri).sort_values("customer_id", key=lambda k: k.str[1:].astype(int))
    assert log["customer_id"].tolist() == [f"c{i}" for i in range(80)]
    frame = pd.DataFrame(rows[:80])
    assert log["prediction"].tolist() == estimator.predict(frame).tolist()
    assert log["score"].tolist() == pytest.approx(estimator.predict_proba(frame)[:, 1].tolist(), rel=1e-9)
    assert set(log["model_version"]) == {"7"}
    for i, when in enumerate(log["event_timestamp"]):
        if i % 2:
            assert when == pd.Timestamp(f"2026-11-{1 + i % 28:02d}T10:00:00Z")
        else:  # when it arrived: the entry id's milliseconds
            assert when == pd.Timestamp(int(sent[f"c{i}"].split("-")[0]), unit="ms", tz="UTC")
