"""Stream fixtures: bentos of the iris versions, unique stream keys on the shared Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class StreamBento:
    tag: str
    model_name: str
    version: str


@pytest.fixture(scope="session")
def stream_bentos(iris_registered: Any) -> list[StreamBento]:
    """Bentos of iris versions 1 and 2 (the ones ``bentoml serve`` would serve)."""
    from airflow_mlpipe.core.registry import resolve_model
    from airflow_mlpipe.deploy.bento import build_bento, use_bentoml_home
    from airflow_mlpipe.hooks.mlflow import MlflowHook

    use_bentoml_home(None)
    hook = MlflowHook()
    out = []
    for version in iris_registered.versions[:2]:
        with hook.activate():
            model = resolve_model(hook.get_client(), iris_registered.name, version=version)
        out.append(StreamBento(build_bento(hook, model).tag, model.name, model.version))
    return out


@pytest.fixture
def stream_config(redis_url: str) -> Iterator[Any]:
    """A :class:`StreamConfig` with keys unique to the test; every key under its prefix is deleted after."""
    import redis

    from airflow_mlpipe.config.streaming import StreamConfig

    prefix = f"mlpipe-test-{uuid.uuid4().hex[:10]}"
    config = StreamConfig(
        redis_url=redis_url,
        input_stream=f"{prefix}.events",
        output_stream=f"{prefix}.scored",
        batch_size=50,
        block_ms=100,
        claim_idle_ms=1_000,
    )
    yield config
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


def iris_event(row: dict[str, Any], i: int) -> dict[str, str]:
    import json

    return {"event_id": f"e{i}", "data": json.dumps(row)}


def malformed_event(row: dict[str, Any], i: int) -> dict[str, str]:
    """One of three kinds of bad event, by ``i``: not JSON, a missing column, a string for a number."""
    import json

    kind = (i // 100) % 3
    if kind == 0:
        return {"event_id": f"e{i}", "data": "{not json"}
    bad = dict(row)
    if kind == 1:
        bad.pop(next(iter(bad)))
    else:
        bad[next(iter(bad))] = "seven"
    return {"event_id": f"e{i}", "data": json.dumps(bad)}
