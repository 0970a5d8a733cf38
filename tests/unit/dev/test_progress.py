"""The demo's live progress: every task start and end is shown, a stuck run fails with what is pending."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from mlpipe_dev.demo.progress import RunProgress, RunStalled, task_log_file

pytestmark = pytest.mark.unit


class ScriptedRun:
    """Replays task-instance snapshots of a run, one per poll (a fault injector for stuck runs)."""

    def __init__(self, snapshots: list[tuple[str, list[dict[str, Any]]]]) -> None:
        self.snapshots = snapshots
        self.polls = 0

    def _current(self) -> tuple[str, list[dict[str, Any]]]:
        return self.snapshots[min(self.polls, len(self.snapshots) - 1)]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self._current()[1]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        state = self._current()[0]
        self.polls += 1
        return {"state": state}


class FakeClock:
    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _ti(task_id: str, state: str, map_index: int = -1, try_number: int = 1) -> dict[str, Any]:
    return {"task_id": task_id, "state": state, "map_index": map_index, "try_number": try_number}


def test_each_task_start_and_end_is_a_line_and_a_failure_names_its_log(tmp_path: Path) -> None:
    log = tmp_path / "dag_id=d" / "run_id=r" / "task_id=train" / "map_index=1" / "attempt=2.log"
    log.parent.mkdir(parents=True)
    log.write_text("Traceback …")
    api = ScriptedRun(
        [
            ("running", [_ti("validate", "running"), _ti("train", None, 1)]),  # type: ignore[arg-type]
            ("running", [_ti("validate", "success"), _ti("train", "running", 1)]),
            ("failed", [_ti("validate", "success"), _ti("train", "failed", 1, try_number=2)]),
        ]
    )
    out = io.StringIO()
    progress = RunProgress(api, logs_dir=tmp_path, out=out, poll=0, clock=FakeClock(5.0))
    state, _ = progress.wait("d", "r")
    text = out.getvalue()
    assert state == "failed"
    assert "validate" in text and "running" in text
    assert "validate                           success in 5 s" in text
    assert "train[1]" in text and "failed" in text
    assert f"train[1] failed — log: {log}" in text


def test_a_run_that_stops_moving_fails_with_what_is_pending() -> None:
    api = ScriptedRun([("running", [_ti("validate", "success"), _ti("train", "queued")])])
    out = io.StringIO()
    progress = RunProgress(api, out=out, poll=0, stall_timeout=60, heartbeat=20, clock=FakeClock(7.0))
    with pytest.raises(
        RunStalled, match=r"no task changed state for 60 s; not finished: \{'train': 'queued'\}"
    ):
        progress.wait("d", "r")
    assert "still running" in out.getvalue()


def test_a_slow_run_that_keeps_moving_is_not_cut_off() -> None:
    # Each task takes longer than the stall deadline in total, but something changes in between.
    snapshots = []
    for i in range(6):
        done = [_ti(f"t{j}", "success") for j in range(i)]
        snapshots.append(("running", [*done, _ti(f"t{i}", "running")]))
    snapshots.append(("success", [_ti(f"t{j}", "success") for j in range(6)]))
    api = ScriptedRun(snapshots)
    progress = RunProgress(api, out=io.StringIO(), poll=0, stall_timeout=30, clock=FakeClock(20.0))
    state, _ = progress.wait("d", "r")
    assert state == "success"


def test_log_file_path_follows_airflows_default_template(tmp_path: Path) -> None:
    path = task_log_file(tmp_path, "d", "r", _ti("features.apply", "failed", try_number=3))
    assert path == tmp_path / "dag_id=d" / "run_id=r" / "task_id=features.apply" / "attempt=3.log"


def test_a_task_waiting_for_a_person_is_handed_to_the_answerer_once() -> None:
    api = ScriptedRun(
        [
            ("running", [_ti("gate", "success"), _ti("approve", "awaiting_input")]),
            ("running", [_ti("gate", "success"), _ti("approve", "awaiting_input")]),
            ("success", [_ti("gate", "success"), _ti("approve", "success")]),
        ]
    )
    asked: list[tuple[str, str, str]] = []
    progress = RunProgress(
        api,
        out=io.StringIO(),
        poll=0,
        clock=FakeClock(1.0),
        on_awaiting_input=lambda d, r, ti: asked.append((d, r, ti["task_id"])),
    )
    assert progress.wait("d", "r")[0] == "success"
    assert asked == [("d", "r", "approve")]
