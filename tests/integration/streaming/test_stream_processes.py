"""Stream scorers as separate processes on the real Redis: a SIGKILL mid-batch, a restart that claims
the pending events, and a hand-over to a new model version through a canary, while events flow."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from typing import Any

import pytest

from tests.fixtures.services import wait_until as _wait
from tests.integration.streaming.conftest import iris_event, malformed_event

pytestmark = [pytest.mark.integration, pytest.mark.streaming]

TOTAL = 10_000


def _owner(routes: list[dict[str, Any]], position: str, key: str) -> str:
    from airflow_mlpipe.streaming.redis_streams import position_key
    from airflow_mlpipe.streaming.transport import bucket

    epoch = [e for e in routes if position_key(position) > position_key(e["after"])][-1]
    b = bucket(key)
    (name,) = [n for n, (lo, hi) in epoch["owners"].items() if lo <= b < hi]
    return str(name)


def test_every_event_scored_once_through_kill_restart_and_version_switch(
    stream_config, stream_bentos, iris_registered, tmp_path
):
    from airflow_mlpipe.config.deploy import CanaryConfig
    from airflow_mlpipe.streaming.rollout import Scorer, StreamDeployment, deploy_stream, scorer_name

    v1, v2 = stream_bentos
    deployment = StreamDeployment(tmp_path / "stream", stream_config, ready_timeout=240)
    client = deployment.transport.client
    rows = iris_registered.X.to_dict(orient="records")
    malformed = {f"e{i}" for i in range(TOTAL) if i % 100 == 42}
    killed, restarted, canary_started = threading.Event(), threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def produce() -> None:
        try:
            for start in range(0, TOTAL, 50):
                # Events flow until the first scorer was killed mid-batch (which needs events to
                # read), then the rest waits for its replacement.
                if start >= 3_000 and killed.is_set() and not restarted.is_set():
                    restarted.wait(300)
                if start == 6_000:
                    _wait("the canary", lambda: deployment.load_state().get("canary"), 300)
                    canary_started.set()
                pipe = client.pipeline(transaction=False)
                for i in range(start, start + 50):
                    row = rows[i % len(rows)]
                    fields = malformed_event(row, i) if f"e{i}" in malformed else iris_event(row, i)
                    pipe.xadd(stream_config.input_stream, fields)
                pipe.execute()
                time.sleep(0.05)  # pacing (~1,000 events/s), not synchronisation
        except BaseException as exc:  # surfaced by the main thread
            failed.append(exc)

    def done() -> int:
        return int(client.xlen(stream_config.output_stream) + client.xlen(stream_config.dead_letter_stream))

    first = deploy_stream(
        deployment,
        v1.tag,
        model_name=v1.model_name,
        model_version=v1.version,
        canary=CanaryConfig(enabled=False),
    )
    assert first["status"] == "deployed"
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        # Kill the first scorer while it holds a batch it has read and not committed.
        stable = Scorer.from_dict(deployment.load_state()["stable"])
        assert stable is not None
        group = stream_config.group(stable.name)
        _wait("1,000 results", lambda: done() >= 1_000)

        def frozen_mid_batch() -> bool:
            # Freeze the scorer; kill it once it holds a read, uncommitted batch. A scorer frozen
            # inside its blocking read is still handed the next events by Redis, so this is seen
            # within a few of the producer's batches; if not, let it go on and try again.
            os.kill(stable.pid, signal.SIGSTOP)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                if client.xpending(stream_config.input_stream, group)["pending"] > 0:
                    os.kill(stable.pid, signal.SIGKILL)
                    killed.set()
                    return True
                time.sleep(0.02)
            os.kill(stable.pid, signal.SIGCONT)
            return False

        _wait("a batch in flight", frozen_mid_batch, timeout=120)
        _wait("the kill", lambda: deployment.stop(stable) or not deployment.alive(stable), 30)
        in_flight = [
            p["message_id"] for p in client.xpending_range(stream_config.input_stream, group, "-", "+", 1000)
        ]
        assert in_flight, "the scorer was killed with no batch in flight"

        # Its replacement (another consumer of the group) claims the events the dead one held.
        replacement = deployment.start(
            v1.tag, model_name=v1.model_name, model_version=v1.version, consumer="c2"
        )
        state = deployment.load_state()
        state["stable"] = dataclasses.asdict(replacement)
        deployment.save_state(state)
        restarted.set()

        # Version 2 takes over through a canary on 30 % of the event keys.
        canary = CanaryConfig(share=0.3, window_seconds=4, min_requests=20, max_p95_ratio=4, p95_slack_ms=500)
        switch = deploy_stream(
            deployment,
            v2.tag,
            model_name=v2.model_name,
            model_version=v2.version,
            canary=canary,
            drain_timeout=240,
        )
        assert canary_started.is_set()
        assert switch["status"] == "deployed" and switch["canary"]["passed"], switch
        producer.join(300)
        assert not failed, failed
        _wait("every result", lambda: done() >= TOTAL, timeout=300)
    finally:
        killed.set()
        restarted.set()
        deployment.shutdown()

    scored = [f for _, f in client.xrange(stream_config.output_stream)]
    dead = [f for _, f in client.xrange(stream_config.dead_letter_stream)]
    ids = [s["event_id"] for s in scored]
    assert len(ids) == len(set(ids)), "an event was scored twice"
    assert set(ids) == {f"e{i}" for i in range(TOTAL)} - malformed
    assert {d["event_id"] for d in dead} == malformed and len(dead) == len(malformed)
    assert all(d["error"] and json.loads(d["problems"]) for d in dead)
    # The events the killed consumer held were scored (or dead-lettered) exactly once.
    results = {r["input_position"]: r for r in scored + dead}
    assert all(p in results for p in in_flight)
    # Versions per event: each event carries the version of the scorer that owned it.
    routes = deployment.transport.routes()
    assert len(routes) == 3  # v1 alone, canary split, v2 alone
    versions = {scorer_name(v1.tag): v1.version, scorer_name(v2.tag): v2.version}
    for r in scored:
        owner = _owner(routes, r["input_position"], r["event_id"])
        assert r["scorer"] == owner and r["model_version"] == versions[owner]
    counts = {v: sum(r["model_version"] == v for r in scored) for v in versions.values()}
    assert all(n > 500 for n in counts.values()), counts
    assert {
        r["scorer"]
        for r in scored
        if _owner(routes[:2], r["input_position"], r["event_id"]) == scorer_name(v2.tag)
    }
    final = deployment.transport.group_state(stream_config.group(scorer_name(v2.tag)))
    assert final["pending"] == 0 and final["lag"] == 0
    assert deployment.transport.group_state(group)["consumers"] == 0  # the old group was removed
