"""Event-driven monitoring on a real scheduler + triggerer: a landed batch starts the check, drift
starts retraining; a burst makes one run; a triggerer restart loses no batch and repeats none."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from airflow_mlpipe.core.timing import scaled
from mlpipe_dev.local.stack import LocalAirflow
from tests.fixtures.monitoring import land, reference_and_drifted, wait_watcher, write_dags

pytestmark = pytest.mark.integration


def _wait_runs(api, dag_id: str, n: int, timeout: float = 150) -> list[dict]:
    deadline = time.monotonic() + timeout
    runs: list[dict] = []
    while time.monotonic() < deadline:
        runs = api.runs(dag_id)
        if len(runs) >= n and all(r["state"] in ("success", "failed") for r in runs):
            return runs
        time.sleep(1)
    raise AssertionError(f"{dag_id}: expected {n} finished runs, have {runs}")


def _wait_deferred(api, dag_id: str, run_id: str) -> dict:
    """Wait until the run's sensor is deferred; return the default pool's slots at that moment."""
    deadline = time.monotonic() + scaled(120)
    states: list[str] = []
    while time.monotonic() < deadline:
        states = [ti["state"] for ti in api.task_instances(dag_id, run_id)]
        if states == ["deferred"]:
            return dict(api.get("/pools/default_pool"))
        time.sleep(0.5)
    raise AssertionError(f"{dag_id}: the sensor never deferred (states {states})")


def test_batches_drive_monitoring_and_retraining_through_restart(tmp_path, breast_cancer_frame):
    data = tmp_path / "data"
    data.mkdir()
    reference, stable, drifted = reference_and_drifted(breast_cancer_frame, data)
    landing = tmp_path / "landing"
    dag_ids = write_dags(
        tmp_path / "dags",
        landing=landing,
        reference=reference,
        ledger=tmp_path / "ledger",
        waiting=tmp_path / "waiting",
        poll=1.0,
        quiet=2.0,
    )
    env = {"MLPIPE_ARTIFACT_ROOT": f"file://{tmp_path}/artifacts"}
    with LocalAirflow(home=tmp_path / "home", dags_folder=tmp_path / "dags", parallelism=2, env=env) as af:
        af.api.wait_dags(dag_ids)
        starts = wait_watcher(af.home)  # files landing before the watcher's first look are history
        # A burst of three drifted files within the quiet period: one monitoring run, one retrain.
        for i in range(3):
            land(drifted.iloc[i * 50 : (i + 1) * 50], landing, f"drifted_{i}.parquet")
            time.sleep(0.3)
        runs = _wait_runs(af.api, "mon_watch", 1)
        assert [r["state"] for r in runs] == ["success"]
        summary = af.api.xcom("mon_watch", runs[0]["dag_run_id"], "drift")
        assert summary["drift_detected"] is True
        claimed = af.api.xcom("mon_watch", runs[0]["dag_run_id"], "claim")
        assert len(claimed["files"]) == 3
        assert [r["state"] for r in _wait_runs(af.api, "mon_retrain", 1)] == ["success"]

        # Triggerer restart with a stable batch landing around it: processed exactly once.
        af.restart("triggerer")
        land(stable.iloc[:150], landing, "stable_0.parquet")  # lands while the watcher is down
        wait_watcher(af.home, after=starts)
        runs = _wait_runs(af.api, "mon_watch", 2, timeout=120)
        time.sleep(5)  # a duplicate announcement would show up as a further run here
        runs = af.api.runs("mon_watch")
        assert len(runs) == 2, runs
        latest = af.api.xcom("mon_watch", runs[-1]["dag_run_id"], "claim")
        assert [p.rsplit("/", 1)[-1] for p in latest["paths"]] == ["stable_0.parquet"]
        assert af.api.xcom("mon_watch", runs[-1]["dag_run_id"], "drift")["drift_detected"] is False
        assert len(af.api.runs("mon_retrain")) == 1  # no drift, no retraining

        # The deferrable sensor waits in the triggerer: the task instance is *deferred* and holds
        # no slot of the pool while nothing has landed; a landed file completes it.
        run_id = af.api.trigger("mon_wait_deferred")
        pool = _wait_deferred(af.api, "mon_wait_deferred", run_id)
        assert pool["deferred_slots"] == 1 and pool["occupied_slots"] == 0, pool
        assert pool["running_slots"] == 0 and pool["queued_slots"] == 0, pool
        land(stable.iloc[:20], tmp_path / "waiting", "arrived.parquet")
        assert af.api.wait_run("mon_wait_deferred", run_id, timeout=scaled(120), poll=0.5) == "success"
        found = af.api.xcom("mon_wait_deferred", run_id, "wait")["files"]
        assert [f["path"].rsplit("/", 1)[-1] for f in found] == ["arrived.parquet"]

        # Nobody answers a drift review: after its response timeout the scheduler applies the
        # documented default ("Ignore"), so an unattended alert never retrains by itself.
        run_id = af.api.trigger("mon_review_timeout")
        assert af.api.wait_run("mon_review_timeout", run_id, timeout=scaled(180), poll=1) == "success"
        states = {ti["task_id"]: ti["state"] for ti in af.api.task_instances("mon_review_timeout", run_id)}
        assert states == {
            "drift": "success",
            "review_drift": "success",
            "ignore": "success",
            "retrain": "skipped",
        }
        detail = af.api.get(
            f"/dags/mon_review_timeout/dagRuns/{quote(run_id, safe='')}/taskInstances/review_drift/-1/hitlDetails"
        )
        assert detail["chosen_options"] == ["Ignore"] and not detail.get("responded_by_user"), detail

        # A promotion approval has no default answer: unanswered, it fails and promotion never runs.
        run_id = af.api.trigger("mon_approval_timeout")
        assert af.api.wait_run("mon_approval_timeout", run_id, timeout=scaled(180), poll=1) == "failed"
        states = {ti["task_id"]: ti["state"] for ti in af.api.task_instances("mon_approval_timeout", run_id)}
        assert states == {"gate": "success", "approve_promotion": "failed", "promote": "upstream_failed"}
