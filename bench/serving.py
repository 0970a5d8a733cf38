"""Serving under concurrency: the generated service (adaptive batching on, its default) against a
hand-written minimal BentoML service of the same model (one ``@bentoml.api`` predict, no batching),
both served by ``bentoml serve`` on loopback ports.

Clients send one-row requests over kept-alive connections from 1, 8 and 32 threads for a fixed time
per level; each level runs against both services back to back. Reported per level: throughput
(req/s) and p50/p99 latency, as ratios generated ÷ hand-written. Goals: throughput at 32 clients
>= 3x, p99 at one client no worse (<= 1.0x).

Then the generated service with a prediction log (every row logged, with a key sent beside the
features) against the same service without one, at 1 and 32 clients: what logging costs a request.

The model is a ``RandomForestClassifier`` (100 trees), the provider's default estimator: its
per-call cost is what batching spreads over the requests of a batch.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import threading
import time

from bench._util import Result
from bench.deployment import BASELINE_SERVICE, _register, _serve, _stop, bench_home

LEVELS = (1, 8, 32)


def _load(port: int, bodies: list[bytes], clients: int, seconds: float) -> tuple[float, list[float]]:
    """Throughput (req/s) and latencies (s) of ``clients`` threads sending ``bodies`` in turn."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []
    start = threading.Barrier(clients + 1)
    stop = [0.0]

    def work(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = latencies[index]
        start.wait()
        i = index
        while time.perf_counter() < stop[0]:
            t0 = time.perf_counter()
            conn.request(
                "POST", "/predict", body=bodies[i % len(bodies)], headers={"Content-Type": "application/json"}
            )
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                failures.append(f"HTTP {resp.status}")
                break
            mine.append(time.perf_counter() - t0)
            i += clients
        conn.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    stop[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"{len(failures)} failed requests on port {port}, e.g. {failures[0]}")
    flat = [x for xs in latencies for x in xs]
    return len(flat) / elapsed, flat


def _pct(xs: list[float], p: int) -> float:
    return statistics.quantiles(xs, n=100)[p - 1] * 1000


def run(quick: bool) -> list[Result]:
    work = bench_home("serving")
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    from airflow_mlpipe.config.monitoring import PredictionLogWriterConfig
    from airflow_mlpipe.core.registry import resolve_model
    from airflow_mlpipe.deploy.bento import build_bento, use_bentoml_home
    from airflow_mlpipe.deploy.targets.local import free_port
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from airflow_mlpipe.monitoring.prediction_log import read_log

    use_bentoml_home(work / "bentoml")
    hook = MlflowHook()
    forest = RandomForestClassifier(n_estimators=100, random_state=0)
    version = _register(hook, "bench_serving", 1.0, forest, serialization_format="cloudpickle")
    with hook.activate():
        model = resolve_model(hook.get_client(), "bench_serving", version=version)
    built = build_bento(hook, model)

    X = load_breast_cancer(as_frame=True).frame.drop(columns="target")
    X.columns = [c.replace(" ", "_") for c in X.columns]
    bodies = [json.dumps({"rows": [row]}).encode() for row in X.head(200).to_dict(orient="records")]

    (work / "baseline").mkdir()
    (work / "baseline" / "baseline_service.py").write_text(BASELINE_SERVICE)
    env = dict(os.environ, BASELINE_MODEL_TAG=built.model_tag)
    pg, pb = free_port(), free_port()
    gen = _serve([built.tag], pg, str(work), env, log=work / "generated.log")
    base = _serve(["baseline_service:Baseline"], pb, str(work / "baseline"), env, log=work / "baseline.log")
    results: list[Result] = []
    logged = None
    try:
        seconds = 4.0 if quick else 8.0
        for port in (pb, pg):  # warm-up: imports, first predictions, the dispatcher's first estimates
            _load(port, bodies, 8, 2.0)
        for clients in LEVELS:
            tb, lb = _load(pb, bodies, clients, seconds)
            tg, lg = _load(pg, bodies, clients, seconds)
            results.append(
                Result(
                    f"throughput, {clients} client(s)",
                    tb,
                    tg,
                    "/s",
                    3.0 if clients == 32 else None,
                    note=f"{tg:.0f} req/s generated vs {tb:.0f} req/s hand-written",
                    higher_is_better=True,
                )
            )
            results.append(Result(f"p50 latency, {clients} client(s)", _pct(lb, 50), _pct(lg, 50), "ms"))
            results.append(
                Result(
                    f"p99 latency, {clients} client(s)",
                    _pct(lb, 99),
                    _pct(lg, 99),
                    "ms",
                    1.0 if clients == 1 else None,
                )
            )
        # The prediction log's cost: the same model, logging every row (written off the request's path).
        _stop(base)
        log = PredictionLogWriterConfig(uri=str(work / "prediction-log"), keys=["row_id"])
        with_log = build_bento(hook, model, prediction_log=log)
        pl = free_port()
        logged = _serve([with_log.tag], pl, str(work), env, log=work / "logged.log")
        keyed = [
            json.dumps({"rows": [{**row, "row_id": i}]}).encode()
            for i, row in enumerate(X.head(200).to_dict(orient="records"))
        ]
        _load(pl, keyed, 8, 2.0)
        for clients in (1, 32):
            to, lo = _load(pg, bodies, clients, seconds)
            tl, ll = _load(pl, keyed, clients, seconds)
            note = f"{tl:.0f} req/s logging vs {to:.0f} req/s without"
            results.append(
                Result(f"prediction log: throughput, {clients} client(s)", to, tl, "/s", 0.9, note, True)
            )
            results.append(
                Result(f"prediction log: p50 latency, {clients} client(s)", _pct(lo, 50), _pct(ll, 50), "ms")
            )
    finally:
        _stop(gen)
        if logged is not None:
            _stop(logged)
        if base.poll() is None:
            _stop(base)
    rows = read_log(str(work / "prediction-log"))
    print(f"prediction log: {len(rows)} rows logged in {rows['logged_at'].nunique()} part(s)")
    return results
