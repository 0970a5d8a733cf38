"""Monitoring: drifted batch landing → retraining DAG run start, and worker slots used while waiting.

On a real embedded Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor):
* latency from a drifted parquet batch landing in a watched directory to the retraining DAG's run
  starting (watcher trigger with a 10 s poll → monitoring DAG claims + Evidently drift check → drift
  asset event → retraining DAG). Baselines: a run started directly through the REST API, and the
  30 s budget.
* executor slots occupied while a sensor waits for data: the deferrable ``NewDataSensor`` against
  the standard ``PythonSensor`` in poke mode (the baseline holds one slot for the whole wait).
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

from bench._util import Result


def _start_latency(api, dag_id: str, run_id: str, since: float, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.run(dag_id, run_id)
        if run.get("start_date"):
            started = dt.datetime.fromisoformat(run["start_date"].replace("Z", "+00:00")).timestamp()
            return started - since
        time.sleep(0.2)
    raise RuntimeError(f"{dag_id}/{run_id} did not start within {timeout}s")


def _slots_while_waiting(api, dag_id: str, seconds: float, waiting_state: str) -> tuple[str, float]:
    run_id = api.trigger(dag_id)
    deadline = time.monotonic() + 120
    state = ""
    while time.monotonic() < deadline:
        tis = api.task_instances(dag_id, run_id)
        state = tis[0]["state"] if tis else ""
        if state == waiting_state:  # past the first poke: now it is waiting
            break
        time.sleep(0.5)
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tis = api.task_instances(dag_id, run_id)
        samples.append(sum(1 for ti in tis if ti["state"] in ("running", "queued")))
        state = tis[0]["state"]
        time.sleep(1)
    api.patch(f"/dags/{dag_id}/dagRuns/{run_id}", {"state": "failed"})
    return state, max(samples)


def run(quick: bool) -> list[Result]:
    from sklearn.datasets import load_breast_cancer

    from mlpipe_dev.local.stack import LocalAirflow
    from tests.fixtures.monitoring import land, reference_and_drifted, wait_watcher, write_dags

    poll = 10.0
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmpdir:
        tmp = Path(tmpdir)
        reference, _, drifted = reference_and_drifted(frame, tmp)
        landing = tmp / "landing"
        dag_ids = write_dags(
            tmp / "dags",
            landing=landing,
            reference=reference,
            ledger=tmp / "ledger",
            waiting=tmp / "waiting",
            poll=poll,
            quiet=0.0,
        )
        env = {"MLPIPE_ARTIFACT_ROOT": f"file://{tmp}/artifacts"}
        with LocalAirflow(home=tmp / "home", dags_folder=tmp / "dags", parallelism=2, env=env) as af:
            af.api.wait_dags(dag_ids)
            wait_watcher(af.home)
            # Baseline: the retraining DAG started directly through the REST API (warm-up first).
            direct = []
            for _ in range(1 if quick else 3):
                t0 = time.time()
                run_id = af.api.trigger("mon_retrain")
                direct.append(_start_latency(af.api, "mon_retrain", run_id, t0))
                af.api.wait_run("mon_retrain", run_id, timeout=300)
            direct_latency = sorted(direct)[len(direct) // 2]
            # Subject: a drifted batch lands; time until the retraining run starts.
            latencies = []
            for i in range(1 if quick else 3):
                known = {r["dag_run_id"] for r in af.api.runs("mon_retrain")}
                landed = land(drifted.iloc[i * 60 : (i + 1) * 60], landing, f"drifted_{i}.parquet")
                run_id = af.api.wait_new_run("mon_retrain", known, timeout=600, poll=0.5)
                latencies.append(_start_latency(af.api, "mon_retrain", run_id, landed))
                af.api.wait_run("mon_retrain", run_id, timeout=300)
            event_latency = sorted(latencies)[len(latencies) // 2]
            wait = 15.0 if quick else 30.0
            deferred_state, deferred_slots = _slots_while_waiting(
                af.api, "mon_wait_deferred", wait, "deferred"
            )
            poke_state, poke_slots = _slots_while_waiting(af.api, "mon_wait_poke", wait, "running")
    return [
        Result(
            "drifted batch landed -> retrain run started",
            baseline=direct_latency,
            subject=event_latency,
            note=f"baseline: run started via REST API; poll {poll:.0f} s; samples {[round(x, 1) for x in latencies]}",
        ),
        Result(
            "drifted batch -> retrain start vs 30 s budget",
            baseline=30.0,
            subject=event_latency,
            target=1.0,
        ),
        Result(
            "executor slots held while waiting for data",
            baseline=float(poke_slots),
            subject=float(deferred_slots),
            unit="",
            target=0.0,
            note=f"deferrable NewDataSensor ({deferred_state}) vs PythonSensor poke mode ({poke_state}), "
            f"max over {wait:.0f} s",
        ),
    ]
