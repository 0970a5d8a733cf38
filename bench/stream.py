"""Streaming benchmarks on the local Redis (each against a baseline measured in the same run).

1. Events/s scored by one consumer (validation, micro-batched predict with probabilities, atomic
   write + XACK; the scorer's ``run`` loop) vs reading the same events from the stream and calling
   ``model.predict`` on micro-batches of the same size in a loop (target: >= 0.8x the throughput,
   i.e. time <= 1.25x). Three alternating rounds (one with ``--quick``); medians of each side.
2. End-to-end event latency (appended → scored event committed) at 1,000 events/s, p50 and p99,
   by a scorer process (reported against one micro-batch ``model.predict``; no target).
3. Lag recovery: the scorer process is frozen (SIGSTOP) for 30 s while events keep arriving at
   1,000/s; time from SIGCONT until the lag is back to 0, against the outage (no target).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import threading
import time
import uuid
from typing import Any

from bench._util import Result


def _produce(client: Any, stream: str, rows: list[dict[str, Any]], n: int, rate: float | None) -> None:
    """XADD ``n`` events, at ``rate`` per second (paced in slices of 50) or as fast as possible."""
    start = time.perf_counter()
    for first in range(0, n, 50):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(n, first + 50)):
            pipe.xadd(stream, {"event_id": f"e{i}", "data": json.dumps(rows[i % len(rows)])})
        pipe.execute()
        if rate:
            ahead = start + (first + 50) / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(quick: bool) -> list[Result]:
    from bench.deployment import _register, bench_home

    work = bench_home("stream")
    import pandas as pd
    import redis

    from airflow_mlpipe._serving.stream import BentoStreamModel, load_bento_service
    from airflow_mlpipe.config.deploy import CanaryConfig
    from airflow_mlpipe.config.streaming import StreamConfig
    from airflow_mlpipe.core.registry import resolve_model
    from airflow_mlpipe.deploy.bento import build_bento, use_bentoml_home
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from airflow_mlpipe.streaming.redis_streams import RedisStreamTransport
    from airflow_mlpipe.streaming.rollout import Scorer, StreamDeployment, deploy_stream
    from airflow_mlpipe.streaming.scorer import StreamScorer

    use_bentoml_home(work / "bentoml")
    hook = MlflowHook()
    version = _register(hook, "bench_stream", 0.5)
    with hook.activate():
        model_ref = resolve_model(hook.get_client(), "bench_stream", version=version)
    bento = build_bento(hook, model_ref)
    url = "redis://127.0.0.1:6379/0"
    client = redis.Redis.from_url(url, decode_responses=True)
    prefix = f"mlpipe-bench-{uuid.uuid4().hex[:8]}"
    module, service = load_bento_service(bento.tag)
    model = service.model
    from sklearn.datasets import load_breast_cancer

    X = load_breast_cancer(as_frame=True).frame.drop(columns="target")
    X.columns = [c.replace(" ", "_") for c in X.columns]
    rows = X.to_dict(orient="records")
    batch = 100
    results: list[Result] = []
    try:
        # 1. throughput of one consumer vs read + predict in a loop, in alternating rounds (the
        # median of each side: the machine's load moves both)
        n = 5_000 if quick else 20_000
        base_times, subject_times = [], []
        for round_ in range(1 if quick else 3):
            cfg = StreamConfig(
                url,
                f"{prefix}.tp{round_}",
                f"{prefix}.tp{round_}.out",
                batch_size=batch,
                block_ms=50,
                max_len=None,
            )
            _produce(client, cfg.input_stream, rows, n, None)
            t0 = time.perf_counter()
            last = "-"
            while True:
                entries = client.xrange(cfg.input_stream, min=last, count=batch)
                if last != "-":
                    entries = entries[1:] if entries and entries[0][0] == last else entries
                if not entries:
                    break
                last = entries[-1][0]
                model.predict(pd.DataFrame([json.loads(f["data"]) for _, f in entries]))
            base_times.append(time.perf_counter() - t0)
            scorer = StreamScorer(
                RedisStreamTransport(cfg),
                BentoStreamModel(module, service),
                config=cfg,
                name="bench",
                consumer="c1",
            )
            scorer.transport.ensure_group(scorer.group, "0")
            # The scorer's own loop, as its process runs it.
            t0 = time.perf_counter()
            scorer.run(lambda s=scorer: s.metrics.events["scored"] >= n)
            subject_times.append(time.perf_counter() - t0)
            assert client.xlen(cfg.output_stream) == n
        baseline, subject = statistics.median(base_times), statistics.median(subject_times)
        rounds = ", ".join(f"{b / s:.2f}x" for b, s in zip(base_times, subject_times, strict=True))
        results.append(Result(
            f"score {n:,} events, one consumer (batch {batch}) vs read + model.predict loop",
            baseline, subject, target=1.25,
            note=f"{n / subject:,.0f} vs {n / baseline:,.0f} events/s = {baseline / subject:.2f}x "
            f"(medians; rounds {rounds})",
        ))  # fmt: skip

        # 2./3. a scorer process at 1,000 events/s: latency, then a 30 s outage
        cfg = StreamConfig(url, f"{prefix}.live", f"{prefix}.live.out", batch_size=batch, block_ms=50)
        deployment = StreamDeployment(work / "stream", cfg)
        deploy_stream(
            deployment, bento.tag, model_name=model_ref.name, model_version=model_ref.version,
            canary=CanaryConfig(enabled=False), log=lambda _: None,
        )  # fmt: skip
        proc = Scorer.from_dict(deployment.load_state()["stable"])
        assert proc is not None
        try:
            seconds = 5 if quick else 15
            _produce(client, cfg.input_stream, rows, 1_000 * seconds, 1_000.0)
            deadline = time.monotonic() + 120
            while client.xlen(cfg.output_stream) < 1_000 * seconds and time.monotonic() < deadline:
                time.sleep(0.1)
            lat = [
                float(f["scored_at"]) - int(pos.split("-")[0]) / 1000
                for pos, f in ((f["input_position"], f) for _, f in client.xrange(cfg.output_stream))
            ]
            one = model.predict(pd.DataFrame(rows[:batch]))  # warm
            t0 = time.perf_counter()
            for _ in range(50):
                one = model.predict(pd.DataFrame(rows[:batch]))
            predict_ms = (time.perf_counter() - t0) / 50 * 1000
            del one
            for q in (0.5, 0.99):
                results.append(Result(
                    f"end-to-end event latency p{int(q * 100)} at 1,000 events/s",
                    predict_ms, _quantile(lat, q) * 1000, unit="ms",
                    note=f"{len(lat):,} events; baseline: model.predict of one micro-batch",
                ))  # fmt: skip

            outage = 10 if quick else 30
            group = cfg.group(proc.name)
            feeder = threading.Thread(
                target=_produce, args=(client, cfg.input_stream, rows, 1_000 * (outage + 10), 1_000.0)
            )
            feeder.start()
            time.sleep(2)
            os.kill(proc.pid, signal.SIGSTOP)
            time.sleep(outage)  # the outage itself
            lag_at_resume = deployment.transport.group_state(group)["lag"]
            os.kill(proc.pid, signal.SIGCONT)
            t0 = time.perf_counter()
            while True:
                state = deployment.transport.group_state(group)
                if (state["lag"] or 0) + (state["pending"] or 0) <= batch:
                    break
                time.sleep(0.05)
            recovery = time.perf_counter() - t0
            feeder.join()
            results.append(Result(
                f"lag recovery after a {outage} s consumer outage at 1,000 events/s",
                float(outage), recovery,
                note=f"lag {lag_at_resume:,} at resume; back to < one batch in {recovery:.1f} s",
            ))  # fmt: skip
        finally:
            deployment.shutdown()
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    return results
