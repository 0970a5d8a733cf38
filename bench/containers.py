"""The container target (``kind: docker``) against the local target, in the same run.

1. Failed requests while the container target's stable endpoint switches versions under continuous
   load (target 0 of >= 1,000): backends are containers, the proxy an HAProxy container reloaded
   by its master process.
2. p50 latency of one-row predictions through the stable endpoint: container target / local target
   (target <= 1.2x; both use host networking, so the difference is the containers' own overhead).

Needs a Docker Engine (started here when none answers) and the stand-in images
(``mlpipe_dev.containers.standin``). The first image build of a requirements set installs them from
the package index (minutes); later runs reuse the engine's layer cache.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import time
from typing import Any

from bench._util import Result
from bench.deployment import _register, bench_home


def _p50_ms(target: Any, body: bytes, n: int) -> tuple[float, int]:
    """Median latency (ms) of ``n`` sequential requests through the endpoint, and how many did not
    answer 200 (left out of the median; a loaded machine can make the proxy's health checks time out)."""
    port = int(target.endpoint.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times, failed = [], 0
    for i in range(n + 20):  # the first 20 warm connections and first-request paths up
        t0 = time.perf_counter()
        conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        if i >= 20:
            if resp.status == 200:
                times.append(time.perf_counter() - t0)
            else:
                failed += 1
    conn.close()
    return statistics.median(times) * 1000, failed


def run(quick: bool) -> list[Result]:
    work = bench_home("containers")
    from sklearn.datasets import load_breast_cancer

    from airflow_mlpipe.config.deploy import CanaryConfig
    from airflow_mlpipe.core.registry import resolve_model
    from airflow_mlpipe.deploy.bento import use_bentoml_home
    from airflow_mlpipe.deploy.rollout import deploy
    from airflow_mlpipe.deploy.targets import resolve_target
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from mlpipe_dev.loadgen import LoadLoop
    from tests.fixtures.deployment import docker_spec

    home = use_bentoml_home(work / "bentoml")
    hook = MlflowHook()
    v1, v2 = _register(hook, "bench_ct", 0.5), _register(hook, "bench_ct", 2.0)
    with hook.activate():
        m1 = resolve_model(hook.get_client(), "bench_ct", version=v1)
        m2 = resolve_model(hook.get_client(), "bench_ct", version=v2)
    X = load_breast_cancer(as_frame=True).frame.drop(columns="target")
    X.columns = [c.replace(" ", "_") for c in X.columns]
    rows = X.head(1).to_dict(orient="records")
    body = json.dumps({"rows": rows}).encode()
    n = 200 if quick else 1000
    quiet = CanaryConfig(enabled=False)
    local = resolve_target(
        {"kind": "local", "state_dir": str(work / "local"), "bentoml_home": home},
        deployment_name="bench-local",
    )
    name = f"bench-{os.getpid()}"
    docker = resolve_target(docker_spec(state_dir=work / "docker", ready_timeout=300.0), deployment_name=name)
    results: list[Result] = []
    try:
        deploy(local, hook, m1, smoke=None, canary=quiet, log=lambda _: None)
        started = time.perf_counter()
        deploy(docker, hook, m1, smoke=None, canary=quiet, log=lambda _: None)
        first = time.perf_counter() - started
        (p50_local, bad_local), (p50_docker, bad_docker) = _p50_ms(local, body, n), _p50_ms(docker, body, n)
        local.shutdown()
        with LoadLoop(docker.endpoint, rows, concurrency=3) as load:
            while load.stats.total < 300:
                time.sleep(0.1)
            started = time.perf_counter()
            deploy(docker, hook, m2, smoke=None, canary=quiet, log=lambda _: None)
            switch = time.perf_counter() - started
            while load.stats.total < 1000 + 300:
                time.sleep(0.1)
        s = load.stats
        results.append(
            Result(
                "failed requests during a container switch",
                float(s.total),
                float(s.failed),
                "req",
                0.0,
                note=f"{s.failed} failed of {s.total}; versions served {dict(s.versions)}; "
                f"switch {switch:.1f} s (image build + container start + reload); "
                f"first deploy {first:.1f} s",
            )
        )
        results.append(
            Result(
                "p50 latency via the endpoint (docker / local)",
                p50_local,
                p50_docker,
                "ms",
                1.2,
                note=f"{n} sequential one-row requests per target; not 200: local {bad_local}, docker {bad_docker}",
            )
        )
    finally:
        local.shutdown()
        docker.shutdown()
    return results
