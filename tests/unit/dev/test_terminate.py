"""Stopping a managed process ends its whole process group, also after the process itself was
killed from outside (its forked children would otherwise outlive the stack)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from airflow_mlpipe.core.timing import scaled
from mlpipe_dev.local.processes import group_alive, spawn, terminate
from tests.fixtures.services import wait_until

# a parent that forks a child and waits; the child ignores nothing and sleeps until signalled
_PARENT = """
import os, sys, time
pid = os.fork()
if pid == 0:
    while True:
        time.sleep(60)
open(sys.argv[1] + ".tmp", "w").write(str(pid))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
os.waitpid(pid, 0)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_children_of_a_killed_process_are_ended_with_its_group(tmp_path):
    pid_file = tmp_path / "child.pid"
    proc = spawn([sys.executable, "-c", _PARENT, str(pid_file)], log_path=tmp_path / "log")
    wait_until("the child's pid is written", pid_file.exists, timeout=scaled(30))
    child = int(pid_file.read_text())
    os.kill(proc.pid, signal.SIGKILL)  # the parent dies; the child is adopted and keeps running
    proc.wait(timeout=30)
    assert _alive(child) and group_alive(proc.pid)
    terminate(proc, timeout=10)
    assert not _alive(child)
    assert not group_alive(proc.pid)


def test_a_stopped_group_is_left_alone(tmp_path):
    proc = spawn([sys.executable, "-c", "pass"], log_path=tmp_path / "log")
    proc.wait(timeout=30)
    terminate(proc)  # nothing left to signal: no error
    assert proc.returncode == 0 and not group_alive(proc.pid)
