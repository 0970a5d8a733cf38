"""Live progress of DAG runs for a person watching a terminal (the demo, long benchmarks).

Every task of the run is shown as it starts and ends, with its elapsed time: as a live table when
the output is a terminal (``rich``), as one line per change otherwise (CI logs, pipes), plus a
heartbeat line naming what is still running so a slow run never looks like a hung one. A failed task
is named with the path of its log file.

Waiting is on observable state only: the run's task states, read through Airflow's REST API. The
deadline is a *stall* deadline — it restarts whenever any task changes state — so a busy machine
that makes every task slower does not fail a run that is still moving.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
_DONE_TASK_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
_MARK = {
    "success": "✓",
    "failed": "✗",
    "upstream_failed": "✗",
    "skipped": "–",
    "running": "▶",
    "deferred": "…",
    "up_for_retry": "↻",
}


class RunApi(Protocol):
    """The part of the Airflow REST client the progress view reads."""

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]: ...

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]: ...


class RunStalled(RuntimeError):
    """No task of the run changed state within the stall deadline."""


@dataclass
class _Task:
    label: str
    state: str = "none"
    started: float | None = None
    ended: float | None = None
    try_number: int = 0

    def elapsed(self, now: float) -> float:
        if self.started is None:
            return 0.0
        return (self.ended or now) - self.started


def task_label(ti: dict[str, Any]) -> str:
    index = ti.get("map_index", -1)
    return ti["task_id"] if index is None or index < 0 else f"{ti['task_id']}[{index}]"


def task_log_file(logs_dir: Path, dag_id: str, run_id: str, ti: dict[str, Any]) -> Path:
    """Where the task's log is, by Airflow's default ``log_filename_template``."""
    folder = logs_dir / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={ti['task_id']}"
    index = ti.get("map_index", -1)
    if index is not None and index >= 0:
        folder = folder / f"map_index={index}"
    attempts = sorted(folder.glob("attempt=*.log"), key=lambda p: p.stat().st_mtime)
    return attempts[-1] if attempts else folder / f"attempt={max(int(ti.get('try_number') or 1), 1)}.log"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:2d}:{secs:02d}"


@dataclass
class RunProgress:
    """Follow one DAG run until it ends, showing its tasks as they start and end.

    :param api: the REST client (``AirflowApi``).
    :param logs_dir: ``$AIRFLOW_HOME/logs``, to name a failed task's log file.
    :param stall_timeout: fail when no task changes state for this long (seconds).
    :param heartbeat: seconds between "still running" lines when nothing changes (plain output).
    :param on_awaiting_input: answers a task that waits for a person (the demo approves as its user).
    :param out: where to write (default stdout); a terminal gets a live table.
    """

    api: RunApi
    logs_dir: Path | None = None
    stall_timeout: float = 900.0
    heartbeat: float = 30.0
    poll: float = 1.0
    out: TextIO = field(default_factory=lambda: sys.stdout)
    clock: Callable[[], float] = time.monotonic
    #: called once for each task that parks in ``awaiting_input`` (a human-in-the-loop request)
    on_awaiting_input: Callable[[str, str, dict[str, Any]], None] | None = None

    def wait(self, dag_id: str, run_id: str) -> tuple[str, list[dict[str, Any]]]:
        """Block until the run ends; return its state and its task instances."""
        if self._is_terminal():
            return self._wait_live(dag_id, run_id)
        return self._wait_plain(dag_id, run_id)

    # -- shared --------------------------------------------------------------------------------
    def _is_terminal(self) -> bool:
        isatty = getattr(self.out, "isatty", None)
        return bool(isatty and isatty())

    def _poll(
        self, dag_id: str, run_id: str, tasks: dict[str, _Task], now: float
    ) -> tuple[str, list[dict[str, Any]], list[str]]:
        """Read the run and its tasks; update ``tasks``; return the run state, the TIs, the changes."""
        instances = self.api.task_instances(dag_id, run_id)
        changes: list[str] = []
        for ti in instances:
            label = task_label(ti)
            state = str(ti.get("state") or "none")
            task = tasks.setdefault(label, _Task(label))
            if state == task.state and int(ti.get("try_number") or 0) == task.try_number:
                continue
            if state in ("running", "deferred", "up_for_retry") and task.started is None:
                task.started = now
            if state in _DONE_TASK_STATES:
                task.ended = now
                if task.started is None:
                    task.started = now
            elif task.ended is not None:  # retried
                task.ended = None
            task.state, task.try_number = state, int(ti.get("try_number") or 0)
            changes.append(label)
            if state == "awaiting_input" and self.on_awaiting_input is not None:
                self.on_awaiting_input(dag_id, run_id, ti)
        state = str(self.api.run(dag_id, run_id).get("state"))
        return state, instances, changes

    def _failure_lines(self, dag_id: str, run_id: str, instances: list[dict[str, Any]]) -> list[str]:
        lines = []
        for ti in instances:
            if ti.get("state") != "failed":
                continue
            where = (
                task_log_file(self.logs_dir, dag_id, run_id, ti)
                if self.logs_dir is not None
                else "(the task's log in the Airflow UI)"
            )
            lines.append(f"  ✗ {task_label(ti)} failed — log: {where}")
        return lines

    # -- plain lines (CI logs, pipes) ------------------------------------------------------------
    def _wait_plain(self, dag_id: str, run_id: str) -> tuple[str, list[dict[str, Any]]]:
        tasks: dict[str, _Task] = {}
        start = self.clock()
        last_change = last_line = start
        self._write(f"  {dag_id} {run_id}: started")
        while True:
            now = self.clock()
            state, instances, changes = self._poll(dag_id, run_id, tasks, now)
            for label in changes:
                task = tasks[label]
                took = f" in {task.elapsed(now):.0f} s" if task.state in _DONE_TASK_STATES else ""
                mark = _MARK.get(task.state, "·")
                self._write(f"  [{_clock(now - start)}] {mark} {label:<34} {task.state}{took}")
            if changes:
                last_change = last_line = now
            if state in TERMINAL_RUN_STATES:
                for line in self._failure_lines(dag_id, run_id, instances):
                    self._write(line)
                return state, instances
            if now - last_change > self.stall_timeout:
                raise RunStalled(self._stalled(dag_id, run_id, tasks, now))
            if now - last_line >= self.heartbeat:
                running = [t.label for t in tasks.values() if t.state in ("running", "deferred", "queued")]
                self._write(
                    f"  [{_clock(now - start)}] … still running: {', '.join(running) or 'scheduling'}"
                )
                last_line = now
            time.sleep(self.poll)

    def _stalled(self, dag_id: str, run_id: str, tasks: dict[str, _Task], now: float) -> str:
        pending = {t.label: t.state for t in tasks.values() if t.state not in _DONE_TASK_STATES}
        return (
            f"{dag_id} run {run_id}: no task changed state for {self.stall_timeout:.0f} s; "
            f"not finished: {pending or 'no task instances yet'}"
        )

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    # -- live table (terminals) ------------------------------------------------------------------
    def _wait_live(self, dag_id: str, run_id: str) -> tuple[str, list[dict[str, Any]]]:
        from rich.console import Console
        from rich.live import Live
        from rich.table import Table

        console = Console(file=self.out)
        tasks: dict[str, _Task] = {}
        start = self.clock()
        last_change = start

        def render(now: float) -> Table:
            table = Table(title=f"{dag_id} · {run_id} · {_clock(now - start)}", title_justify="left")
            table.add_column("task")
            table.add_column("state")
            table.add_column("time", justify="right")
            for task in tasks.values():
                mark = _MARK.get(task.state, "·")
                table.add_row(task.label, f"{mark} {task.state}", f"{task.elapsed(now):.0f} s")
            return table

        with Live(render(start), console=console, refresh_per_second=2, transient=False) as live:
            while True:
                now = self.clock()
                state, instances, changes = self._poll(dag_id, run_id, tasks, now)
                if changes:
                    last_change = now
                live.update(render(now))
                if state in TERMINAL_RUN_STATES:
                    break
                if now - last_change > self.stall_timeout:
                    raise RunStalled(self._stalled(dag_id, run_id, tasks, now))
                time.sleep(self.poll)
        for line in self._failure_lines(dag_id, run_id, instances):
            console.print(line, markup=False)
        return state, instances


def wait_for_new_run(
    list_runs: Callable[[], list[str]],
    known: set[str],
    *,
    what: str,
    timeout: float,
    out: TextIO | None = None,
    heartbeat: float = 30.0,
    poll: float = 1.0,
) -> str:
    """Wait until a run id not in ``known`` appears (an asset-triggered run), saying what it waits for."""
    out = out or sys.stdout
    start = time.monotonic()
    last = start
    out.write(f"  waiting for {what} …\n")
    out.flush()
    while True:
        fresh = [r for r in list_runs() if r not in known]
        if fresh:
            return fresh[0]
        now = time.monotonic()
        if now - start > timeout:
            raise RunStalled(f"no new run appeared for {what} within {timeout:.0f} s")
        if now - last >= heartbeat:
            out.write(f"  [{_clock(now - start)}] … still waiting for {what}\n")
            out.flush()
            last = now
        time.sleep(poll)
