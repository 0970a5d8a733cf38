"""A Docker Engine to talk to: the one ``DOCKER_HOST`` (or the default socket) names when it answers,
else a ``dockerd`` started here in the background (Debian's ``docker.io``, installed by
``make system-deps``). The engine is a system daemon, like PostgreSQL: it is left running."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from airflow_mlpipe.core.timing import scaled

#: where the engine started here keeps its log
LOG_DIR = Path(os.environ.get("MLPIPE_DOCKERD_DIR", "/var/tmp/mlpipe-dockerd"))


class EngineUnavailable(RuntimeError):
    """No Docker Engine answers and none could be started here."""


def _client(timeout: float = 10.0) -> Any:
    import docker

    # mypy resolves `docker` to the repository's docker/ folder (a namespace package); Python does not
    return docker.from_env(timeout=int(max(timeout, 5)))  # type: ignore[attr-defined]


def _answers() -> bool:
    try:
        return bool(_client().ping())
    except Exception:
        return False


def ensure_engine(timeout: float = 60.0) -> Any:
    """A client of a Docker Engine that answers; ``dockerd`` is started when none does.

    :param timeout: seconds (scaled by load) the started engine may take to answer.
    :raises EngineUnavailable: no ``dockerd`` binary, or it did not answer in time (log tail).
    """
    if _answers():
        return _client(timeout=120)
    binary = shutil.which("dockerd") or ("/usr/sbin/dockerd" if os.path.exists("/usr/sbin/dockerd") else None)
    if binary is None:
        raise EngineUnavailable(
            "No Docker Engine answers and dockerd is not installed: run `make system-deps` "
            "(Debian package docker.io) or point DOCKER_HOST at an engine."
        )
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / "dockerd.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [binary],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if _answers():
            return _client(timeout=120)
        if proc.poll() is not None and not _answers():
            break
        time.sleep(0.25)
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
    raise EngineUnavailable(f"dockerd did not answer within {scaled(timeout):.0f} s. Log {log_path}:\n{tail}")
