"""The whole loop (``make demo``) on an idle machine and with CPU-bound competitors.

Runs the demo's loop twice on the embedded Airflow: once as the machine is, then while
``MLPIPE_BENCH_HOGS`` (default 2) processes spin on the cores. Both must finish green; the ratio is
loaded ÷ idle wall time. Each run takes 6–20 minutes on 2 cores, so this benchmark is not part of the
default ``python -m bench`` set in CI; run it as ``python -m bench demo``.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from bench._util import Result


def _spin(stop_at: float) -> None:
    while time.monotonic() < stop_at:  # bounded: ends by itself even if the parent dies
        pass


def _loop(workdir: Path) -> float:
    from mlpipe_dev.demo.runner import Demo, DemoConfig

    started = time.perf_counter()
    result = Demo(DemoConfig(workdir=workdir)).run()
    if [r["state"] for r in result.runs] != ["success"] * 3:
        raise RuntimeError(f"the loop did not finish green: {result.runs}")
    return time.perf_counter() - started


def run(quick: bool) -> list[Result]:
    hogs = int(os.environ.get("MLPIPE_BENCH_HOGS", "2"))
    scratch = Path(tempfile.mkdtemp(prefix="mlpipe-bench-demo-"))
    load_before = os.getloadavg()[0]
    idle = _loop(scratch / "idle")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_spin, args=(time.monotonic() + 3 * 3600,), daemon=True) for _ in range(hogs)]
    for p in procs:
        p.start()
    try:
        loaded = _loop(scratch / "loaded")
        load_during = os.getloadavg()[0]
    finally:
        for p in procs:
            p.terminate()
            p.join(10)
    return [
        Result(
            f"make demo loop, {hogs} CPU-bound competitors ÷ idle",
            baseline=idle,
            subject=loaded,
            note=f"load average before {load_before:.1f}, at the end of the loaded run {load_during:.1f}",
        )
    ]
