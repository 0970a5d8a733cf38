"""The demo's stream: events produced into the reference config's input stream, read back scored.

After each deployment the training DAG's ``deploy.stream`` task hands the stream over to the new
champion (``streaming:`` in ``dags/config/churn.yaml``). The demo then sends a round of events —
rows of the churn data, a few of them malformed on purpose — and waits, with a deadline, until each
has a result in the output stream or the dead-letter stream. What it reports comes from those
streams: counts, the model version recorded with each scored event, end-to-end latency.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airflow_mlpipe.config.pipeline import StreamingSection
from airflow_mlpipe.config.streaming import StreamConfig

#: the malformed events of each round: what ``data`` holds, and why the scorer refuses it
MALFORMED = ("not JSON", "a column missing", "a string for a number")


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def stream_config(section: StreamingSection, env: dict[str, str]) -> StreamConfig:
    """The stream as the tasks see it: templates rendered with the tasks' environment ``env``."""
    from airflow_mlpipe.factories.render import render_now

    with _environment(env):
        values = {k: render_now(v) if isinstance(v, str) else v for k, v in section.stream.items()}
    return StreamConfig.from_mapping(values, "streaming.stream")


def _malformed(row: dict[str, Any], kind: str) -> str:
    if kind == "not JSON":
        return "{not json"
    bad = dict(row)
    if kind == "a column missing":
        bad.pop(next(iter(bad)))
    else:
        bad[next(k for k, v in bad.items() if isinstance(v, (int, float)))] = "seven"
    return json.dumps(bad)


def produce_and_wait(
    config: StreamConfig, rows: list[dict[str, Any]], tag: str, timeout: float, poll: float = 0.1
) -> dict[str, Any]:
    """Send one event per row (the last ``len(MALFORMED)`` malformed) as ``<tag>-<i>``; wait until
    every one has a result or a dead letter; return what the streams say about them.

    :raises RuntimeError: not every event has a result within ``timeout`` seconds.
    """
    import redis

    client = redis.Redis.from_url(config.redis_url, decode_responses=True)
    bad = {len(rows) - 1 - i: kind for i, kind in enumerate(MALFORMED)}
    # Where the results of this round start: results of earlier rounds are not counted.
    out, dead_stream = config.output_stream, str(config.dead_letter_stream)
    after = {s: _last_id(client, s) for s in (out, dead_stream)}
    pipe = client.pipeline(transaction=False)
    for i, row in enumerate(rows):
        data = _malformed(row, bad[i]) if i in bad else json.dumps(row)
        pipe.xadd(config.input_stream, {"event_id": f"{tag}-{i}", "data": data})
    pipe.execute()
    started = time.monotonic()
    deadline = started + timeout
    while True:
        done = sum(_count_after(client, s, a) for s, a in after.items())
        if done >= len(rows):
            break
        if time.monotonic() > deadline:
            groups = client.xinfo_groups(config.input_stream)
            raise RuntimeError(
                f"stream {config.input_stream}: {done} of {len(rows)} events have a result after "
                f"{timeout:.0f} s (consumer groups: {groups}); scorer logs under the artifact "
                f"root's streams/{config.input_stream}/scorers/"
            )
        time.sleep(poll)
    waited = time.monotonic() - started
    scored = _entries_after(client, out, after[out])
    dead = _entries_after(client, dead_stream, after[dead_stream])
    ids = [e["event_id"] for e in scored]
    latencies = [float(e["scored_at"]) * 1000 - float(e["input_position"].split("-")[0]) for e in scored]
    return {
        "tag": tag,
        "sent": len(rows),
        "malformed_sent": len(bad),
        "scored": len(scored),
        "dead_lettered": len(dead),
        "unique_scored": len(set(ids)),
        "scored_ids": sorted(ids),
        "dead_ids": sorted(e["event_id"] for e in dead),
        "expected_dead_ids": sorted(f"{tag}-{i}" for i in bad),
        "dead_reasons": sorted({e["error"].split(":")[0] for e in dead}),
        "versions": dict(Counter(e["model_version"] for e in scored)),
        "p50_latency_ms": round(statistics.median(latencies), 1) if latencies else None,
        "seconds": round(waited, 2),
    }


def _last_id(client: Any, stream: str) -> str:
    last = client.xrevrange(stream, count=1)
    return str(last[0][0]) if last else "0-0"


def _count_after(client: Any, stream: str, after: str) -> int:
    if not client.exists(stream):
        return 0
    return len(client.xrange(stream, min=f"({after}", max="+"))


def _entries_after(client: Any, stream: str, after: str) -> list[dict[str, str]]:
    return [fields for _, fields in client.xrange(stream, min=f"({after}", max="+")]


def stop_scorers(artifacts: Path, config: StreamConfig | None) -> None:
    """Stop the scorer processes the deploy tasks started (their state is under the artifact root)."""
    from airflow_mlpipe.streaming.rollout import StreamDeployment

    if config is None:
        return
    for state in sorted((artifacts / "streams").glob("*/state.json")):
        with contextlib.suppress(Exception):
            StreamDeployment(state.parent, config).shutdown()
