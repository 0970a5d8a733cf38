"""What every local server of the embedded stack shares: a root directory, a loopback port, one
child process, and stopping it when the ``with`` block ends."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from mlpipe_dev.local.processes import terminate
from mlpipe_dev.local.stack import free_port


@dataclass
class LocalServer:
    """Base of the local servers: ``start()`` spawns ``_proc`` and waits until it answers.

    :param root: directory of the server's files and log.
    :param port: loopback port; a free one when 0.
    """

    root: Path
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.port = self.port or free_port()

    def start(self, timeout: float = 60) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        if self._proc is not None:
            terminate(self._proc)
            self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
