"""Managed child processes for the embedded stack: start, wait for HTTP readiness, stop the group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from airflow_mlpipe.exceptions import MlpipeError


class ProcessError(MlpipeError):
    """A managed process exited early or did not become ready."""


def spawn(
    args: Sequence[str], *, log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own process group, appending stdout/stderr to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            list(args), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )


def wait_http(
    url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None, log_path: Path | None = None
) -> None:
    """Poll ``url`` until it answers below HTTP 500; fail early when ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path and log_path.exists() else ""
            raise ProcessError(f"process serving {url} exited with {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise ProcessError(f"{url} not ready after {timeout:.0f}s")


def terminate(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM the process group of ``proc``, then SIGKILL what is left of it after ``timeout``
    seconds. The group is signalled even when ``proc`` itself has ended: a process killed from
    outside (a fault test's SIGKILL) leaves its children behind, such as the workers a scheduler
    forked, which would otherwise outlive the stack."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:  # nothing of the group is left
        proc.poll()
        return
    if not _group_ends(proc, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        _group_ends(proc, 10)


def _group_ends(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Reap ``proc`` and wait until nothing of its group runs; whether that happened in time."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    while group_alive(proc.pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies, which only wait to be reaped by
    whoever adopted them, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
