"""A private ``redis-server`` on loopback: the demo's streams live in it and go away with it.

Nothing is persisted (``--save ""``, no AOF); the server listens on 127.0.0.1 at a free port only, so
it shares no keys with any other Redis on the machine (the test suite's on 6379, another demo's).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from mlpipe_dev.local.processes import ProcessError, spawn
from mlpipe_dev.local.server import LocalServer

#: Debian's package ``redis-server`` (``make system-deps`` installs it)
REDIS_SERVER = "redis-server"


@dataclass
class LocalRedisServer(LocalServer):
    """``redis-server`` with its log (and nothing else) under ``root``."""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30) -> LocalRedisServer:
        binary = shutil.which(REDIS_SERVER, path=f"{os.environ.get('PATH', '')}:/usr/bin")
        if binary is None:
            raise ProcessError(
                "redis-server is needed for the streaming part of the demo: `make system-deps` "
                "installs it (Debian package redis-server)."
            )
        self.root.mkdir(parents=True, exist_ok=True)
        log = self.root / "redis.log"
        args = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.root), "--protected-mode", "yes"]
        self._proc = spawn(args, log_path=log)
        self._wait_ready(timeout, log)
        return self

    def _wait_ready(self, timeout: float, log: Path) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise ProcessError(f"redis-server exited with {self._proc.returncode}:\n{tail}")
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise ProcessError(f"redis-server on port {self.port} not ready after {timeout:.0f}s")
