"""Deployment benchmarks (each against a baseline measured in the same run).

1. The generated service (schema validation from the signature, identity in every answer) vs a
   hand-written minimal BentoML service for the same model: p50/p99 latency and time per request
   under concurrent load (target <= 1.1x).
2. Failed requests while the stable endpoint switches versions under continuous load (target 0 of
   >= 1,000).
3. Batch scoring of 1,000,000 rows in chunks vs reading everything and calling ``model.predict``
   directly (target <= 1.2x).
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._util import Result

BASELINE_SERVICE = """
import os
import bentoml
import pandas as pd


@bentoml.service(name="baseline")
class Baseline:
    def __init__(self):
        self.model = bentoml.sklearn.load_model(os.environ["BASELINE_MODEL_TAG"])

    @bentoml.api
    def predict(self, rows: list[dict]) -> dict:
        return {"predictions": self.model.predict(pd.DataFrame(rows)).tolist()}
"""


def _serve(
    args: list[str], port: int, cwd: str, env: dict[str, str], log: Path | None = None
) -> subprocess.Popen:
    """``bentoml serve`` on ``port`` once ready; its output goes to ``log`` (default: discarded)."""
    from airflow_mlpipe.deploy.targets.local import http_ok

    out = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", *args, "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not http_ok(f"http://127.0.0.1:{port}/readyz", 1.0):
        if proc.poll() is not None:
            raise RuntimeError(f"bentoml serve {args} exited")
        time.sleep(0.25)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    from airflow_mlpipe.deploy.targets.local import _descendants

    for pid in [proc.pid, *_descendants(proc.pid)]:
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def _latencies(port: int, body: bytes, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        out.append(time.perf_counter() - t0)
    conn.close()
    return out


def _throughput(port: int, body: bytes, seconds: float, threads: int = 4) -> float:
    count = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def work() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < stop:
            conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
            conn.getresponse().read()
            with lock:
                count[0] += 1
        conn.close()

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return count[0] / seconds


def _register(hook: Any, name: str, C: float, estimator: Any = None, **log_options: Any) -> str:
    """Register a classifier of the breast-cancer data (``LogisticRegression(C=C)`` unless
    ``estimator`` is given)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    from tests.fixtures.deployment import register_model

    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    X, y = frame.drop(columns="target"), frame["target"]
    if estimator is None:
        estimator = LogisticRegression(C=C, max_iter=3000)
    return register_model(hook, name, estimator, X, y, task_type="classification", **log_options)


def bench_home(kind: str) -> Path:
    """A scratch artifact root and BentoML home for one benchmark run, set in the environment."""
    work = Path(tempfile.mkdtemp(prefix=f"mlpipe-bench-{kind}-"))
    os.environ["MLPIPE_ARTIFACT_ROOT"] = f"file://{work}/artifacts"
    os.environ["BENTOML_HOME"] = str(work / "bentoml")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    return work


def run(quick: bool) -> list[Result]:
    work = bench_home("deploy")
    import pandas as pd

    from airflow_mlpipe.config.deploy import CanaryConfig
    from airflow_mlpipe.core.registry import load_model, resolve_model
    from airflow_mlpipe.core.storage import resolve
    from airflow_mlpipe.deploy.batch import score_dataset
    from airflow_mlpipe.deploy.bento import build_bento, use_bentoml_home
    from airflow_mlpipe.deploy.rollout import deploy
    from airflow_mlpipe.deploy.targets.local import LocalTarget, free_port
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from mlpipe_dev.loadgen import LoadLoop

    use_bentoml_home(work / "bentoml")
    hook = MlflowHook()
    v1, v2 = _register(hook, "bench_bc", 0.5), _register(hook, "bench_bc", 2.0)
    with hook.activate():
        m1 = resolve_model(hook.get_client(), "bench_bc", version=v1)
        model = load_model(m1)
    built = build_bento(hook, m1)
    from sklearn.datasets import load_breast_cancer

    X = load_breast_cancer(as_frame=True).frame.drop(columns="target")
    X.columns = [c.replace(" ", "_") for c in X.columns]
    body = json.dumps({"rows": X.head(1).to_dict(orient="records")}).encode()
    results: list[Result] = []

    # 1. generated vs hand-written service
    (work / "baseline").mkdir()
    (work / "baseline" / "baseline_service.py").write_text(BASELINE_SERVICE)
    env = dict(os.environ, BASELINE_MODEL_TAG=built.model_tag)
    pg, pb = free_port(), free_port()
    gen = _serve([built.tag], pg, str(work), env)
    base = _serve(["baseline_service:Baseline"], pb, str(work / "baseline"), env)
    try:
        n = 300 if quick else 2000
        _latencies(pg, body, 50), _latencies(pb, body, 50)  # warm-up
        lg, lb = [], []
        for _ in range(5):  # interleave to share the machine's noise
            lg += _latencies(pg, body, n // 5)
            lb += _latencies(pb, body, n // 5)
        q = lambda xs, p: statistics.quantiles(xs, n=100)[p - 1] * 1000  # noqa: E731
        results.append(Result("service p50 latency (1 row)", q(lb, 50), q(lg, 50), "ms", 1.1))
        results.append(Result("service p99 latency (1 row)", q(lb, 99), q(lg, 99), "ms", 1.1))
        secs = 5.0 if quick else 15.0
        tb, tg = _throughput(pb, body, secs), _throughput(pg, body, secs)
        results.append(
            Result(
                "service time per request, 4 clients",
                1000 / tb,
                1000 / tg,
                "ms",
                1.1,
                note=f"throughput {tg:.0f} req/s generated vs {tb:.0f} req/s hand-written",
            )
        )
    finally:
        _stop(gen)
        _stop(base)

    # 2. switch under continuous load
    target = LocalTarget(work / "deploy", name="bench")
    try:
        deploy(target, hook, m1, smoke=None, canary=CanaryConfig(enabled=False), log=lambda _: None)
        with hook.activate():
            m2 = resolve_model(hook.get_client(), "bench_bc", version=v2)
        with LoadLoop(target.endpoint, X.head(1).to_dict(orient="records"), concurrency=3) as load:
            while load.stats.total < 300:
                time.sleep(0.1)
            deploy(target, hook, m2, smoke=None, canary=CanaryConfig(enabled=False), log=lambda _: None)
            while load.stats.total < 1000:
                time.sleep(0.1)
        s = load.stats
        results.append(
            Result(
                "failed requests during a version switch",
                float(s.total),
                float(s.failed),
                "req",
                0.0,
                note=f"{s.failed} failed of {s.total}; versions served {dict(s.versions)}",
            )
        )
    finally:
        target.shutdown()

    # 3. batch scoring vs direct predict
    rows = 200_000 if quick else 1_000_000
    big = pd.concat([X] * (rows // len(X) + 1), ignore_index=True).head(rows)
    src = work / "big.parquet"
    big.to_parquet(src, index=False, row_group_size=100_000)

    def direct() -> None:
        df = pd.read_parquet(src)
        pd.DataFrame({"prediction": model.predict(df)}).to_parquet(work / "direct.parquet", index=False)

    def chunked() -> None:
        score_dataset(
            model,
            input_uri=str(src),
            features=list(X.columns),
            output_path=resolve(str(work / "chunked.parquet")),
            model_name="bench_bc",
            model_version=v1,
        )

    from bench._util import timeit

    tb_, ts_ = timeit(direct, 3), timeit(chunked, 3)
    results.append(Result(f"batch scoring {rows:,} rows (chunked vs direct)", tb_, ts_, "s", 1.2))
    return results
