"""Task start-up: the whole loop (``make demo``) with the provider's preloading executor against
Airflow's own LocalExecutor, in the same run.

Both runs are the demo's loop on the embedded Airflow (train → gate → deploy → drift → retraining →
canary rollout). Figures: the loop's wall time, the mean task run time (Airflow's ``duration``:
process start, imports and work), and the seconds from the drifted batch landing to the retraining
run starting. Each run takes 5–15 minutes on 2 cores, so it runs on request:
``python -m bench startup``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._util import Result


def _loop(workdir: Path, *, preload: bool) -> dict[str, Any]:
    from mlpipe_dev.demo.runner import Demo, DemoConfig

    started = time.perf_counter()
    result = Demo(DemoConfig(workdir=workdir, preload=preload, log=lambda _: None)).run()
    if [r["state"] for r in result.runs] != ["success"] * 3:
        raise RuntimeError(f"the loop did not finish green: {result.runs}")
    durations = [s for run in result.runs for s in run["task_seconds"].values()]
    return {
        "wall": time.perf_counter() - started,
        "task_mean": statistics.fmean(durations),
        "tasks": len(durations),
        "reaction": result.reaction["retraining started"],
        "per_task": {f"{r['dag_id']}.{t}": s for r in result.runs for t, s in r["task_seconds"].items()},
    }


def run(quick: bool) -> list[Result]:
    scratch = Path(tempfile.mkdtemp(prefix="mlpipe-bench-startup-"))
    load = [os.getloadavg()[0]]
    airflow = _loop(scratch / "airflow", preload=False)
    load.append(os.getloadavg()[0])
    preloading = _loop(scratch / "preload", preload=True)
    load.append(os.getloadavg()[0])
    (Path(__file__).parent / "results").mkdir(exist_ok=True)
    rows = sorted(set(airflow["per_task"]) | set(preloading["per_task"]))
    table = ["| task | Airflow's LocalExecutor | preloading executor |", "|---|---|---|"]
    table += [
        f"| {t} | {airflow['per_task'].get(t, float('nan')):.1f} s | {preloading['per_task'].get(t, float('nan')):.1f} s |"
        for t in rows
    ]
    (Path(__file__).parent / "results" / "startup.md").write_text("\n".join(table) + "\n")
    note = f"load average at start / between / end: {' / '.join(f'{x:.1f}' for x in load)}"
    return [
        Result(
            "make demo loop wall time (preloading / Airflow's)",
            airflow["wall"],
            preloading["wall"],
            target=240.0 / airflow["wall"],
            note=f"goal: the loop in at most 4 minutes with the preloading executor; {note}",
        ),
        Result(
            "mean task run time (preloading / Airflow's)",
            airflow["task_mean"],
            preloading["task_mean"],
            note=f"{airflow['tasks']} and {preloading['tasks']} task runs; per task in bench/results/startup.md",
        ),
        Result(
            "drifted batch landed -> retraining run started",
            airflow["reaction"],
            preloading["reaction"],
            target=10.0 / max(airflow["reaction"], 1e-9),
            note="goal: at most 10 s with the preloading executor",
        ),
    ]
