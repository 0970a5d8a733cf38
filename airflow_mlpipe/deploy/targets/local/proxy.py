"""HAProxy in front of the served versions: config from a template, graceful reloads, live stats.

HAProxy (an OS package, see ``make system-deps``) splits traffic between the stable and the canary
backend by server weight. Every change writes a new config from ``templates/haproxy.cfg.j2``,
validates it (``haproxy -c``) and starts a new process that takes the listening socket over from
the old one (``-x <stats socket> -sf <old pid>``): no connection is refused during a reload, and the
old process finishes its in-flight requests before it exits.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_mlpipe.exceptions import ConfigError, MlpipeError

TEMPLATE = Path(__file__).with_name("templates") / "haproxy.cfg.j2"


class ProxyError(MlpipeError):
    """HAProxy is missing, rejected its config or did not start."""


@dataclass(frozen=True)
class ServerEntry:
    """One backend server of the proxy: a served bento on a loopback port."""

    name: str
    port: int
    weight: int


def haproxy_binary(explicit: str | None = None) -> str:
    found = (
        explicit
        or shutil.which("haproxy")
        or next((p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.path.exists(p)), None)
    )
    if not found:
        raise ProxyError("HAProxy is not installed; run `make system-deps` (apt-get install -y haproxy).")
    return found


def short_socket_path(state_dir: Path) -> Path:
    """Where the stats socket of the proxy for ``state_dir`` lives.

    Unix socket paths are limited to ~100 bytes (HAProxy: 97), which deep state directories exceed;
    a long path gets a socket in the temp directory, named by a digest of the state directory.
    """
    inside = Path(state_dir) / "haproxy.sock"
    if len(str(inside)) <= 90:
        return inside
    digest = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mlpipe-haproxy-{digest}.sock"


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists, owned by someone else
        return True
    try:  # a zombie child of this process counts as dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def render_config(
    servers: list[ServerEntry],
    *,
    name: str,
    port: int,
    bind_host: str,
    pid_file: str,
    stats_socket: str,
    server_timeout: str = "30s",
    server_host: str = "127.0.0.1",
    stats_port: int | None = None,
    access_log: str | None = None,
) -> str:
    """The HAProxy config of a deployment's proxy from ``templates/haproxy.cfg.j2`` (every target's).

    :param servers: the backend servers and their weights.
    :param name: config section names (``[A-Za-z0-9_]``).
    :param port: port of the stable endpoint on ``bind_host``.
    :param pid_file: pid file and ``stats_socket`` path, as the HAProxy process sees them.
    :param server_host: address of the backend servers.
    :param stats_port: also serve the statistics as CSV over HTTP on ``bind_host:stats_port``
        (``/stats;csv``), for a proxy whose stats socket is out of reach (in a container).
    :param access_log: where the proxy sends one syslog line per request (HAProxy's HTTP log
        format: backend server, timers, status, termination state): ``host:port`` (UDP) or the
        path of a UNIX datagram socket (``/dev/log``). ``None`` logs nothing.
    """
    import jinja2

    if not servers:
        raise ConfigError("The proxy needs at least one backend server.")
    if access_log is not None and (not access_log.strip() or any(c.isspace() for c in access_log)):
        raise ConfigError(f"access_log must be host:port or a socket path, not {access_log!r}.")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    return env.from_string(TEMPLATE.read_text()).render(
        name=name,
        access_log=access_log,
        bind_host=bind_host,
        port=port,
        pid_file=pid_file,
        stats_socket=stats_socket,
        stats_port=stats_port,
        hard_stop_after="60s",
        client_timeout="30s",
        server_timeout=server_timeout,
        check_interval="1s",
        server_host=server_host,
        servers=servers,
    )


def parse_stats(raw: str, name: str) -> dict[str, dict[str, Any]]:
    """Per-server counters of the backend ``<name>_model`` from HAProxy's CSV statistics."""
    text = raw.lstrip("# ")
    out: dict[str, dict[str, Any]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("pxname") != f"{name}_model" or row.get("svname") in ("FRONTEND", "BACKEND"):
            continue

        def num(key: str, r: dict[str, str] = row) -> int:
            return int(r.get(key) or 0)

        out[row["svname"]] = {
            "requests": num("stot"),
            "http_5xx": num("hrsp_5xx"),
            "connection_errors": num("econ"),
            "response_errors": num("eresp"),
            "retries": num("wretr"),
            "redispatches": num("wredis"),
            "status": row.get("status", ""),
            "weight": num("weight"),
        }
    return out


class HAProxy:
    """One HAProxy instance whose files live in ``state_dir``.

    :param name: config section names (``[A-Za-z0-9_]``).
    :param port: loopback port of the stable endpoint.
    :param access_log: syslog destination of the per-request log (:func:`render_config`).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        name: str,
        port: int,
        bind_host: str = "127.0.0.1",
        server_timeout: str = "30s",
        binary: str | None = None,
        access_log: str | None = None,
    ) -> None:
        self.dir = Path(state_dir)
        self.access_log = access_log
        self.name = name
        self.port = port
        self.bind_host = bind_host
        self.server_timeout = server_timeout
        self.binary = binary
        self.config_path = self.dir / "haproxy.cfg"
        self.pid_file = self.dir / "haproxy.pid"
        self.socket_path = short_socket_path(self.dir)

    def render(self, servers: list[ServerEntry]) -> str:
        return render_config(
            servers,
            name=self.name,
            port=self.port,
            bind_host=self.bind_host,
            pid_file=str(self.pid_file),
            stats_socket=str(self.socket_path),
            server_timeout=self.server_timeout,
            access_log=self.access_log,
        )

    def pids(self) -> list[int]:
        try:
            text = self.pid_file.read_text()
        except FileNotFoundError:
            return []
        return [int(p) for p in text.split() if p.strip().isdigit() and pid_alive(int(p))]

    def running(self) -> bool:
        return bool(self.pids()) and self.socket_path.exists()

    def apply(self, servers: list[ServerEntry]) -> list[int]:
        """Write the config for ``servers`` and (re)start gracefully; return the old, draining pids."""
        binary = haproxy_binary(self.binary)
        self.dir.mkdir(parents=True, exist_ok=True)
        candidate = self.dir / "haproxy.cfg.new"
        candidate.write_text(self.render(servers))
        check = subprocess.run([binary, "-c", "-q", "-f", str(candidate)], capture_output=True, text=True)
        if check.returncode != 0:
            output = (check.stderr.strip() + "\n" + check.stdout.strip()).strip()
            raise ProxyError(f"HAProxy rejected the generated config {candidate}: {output}")
        os.replace(candidate, self.config_path)
        old = self.pids()
        cmd = [binary, "-f", str(self.config_path), "-p", str(self.pid_file)]
        if old and self.socket_path.exists():
            cmd += ["-x", str(self.socket_path), "-sf", *map(str, old)]
        # -D (daemon) returns once the new process listens; it lives on after the Airflow task.
        proc = subprocess.run(cmd + ["-D"], capture_output=True, text=True, start_new_session=True)
        if proc.returncode != 0:
            raise ProxyError(f"HAProxy did not start ({' '.join(cmd)}): {proc.stderr.strip()}")
        self._wait_listening()
        return old

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex((self.bind_host, self.port)) == 0:
                    return
            time.sleep(0.05)
        raise ProxyError(f"HAProxy is not listening on {self.bind_host}:{self.port} after {timeout}s")

    @staticmethod
    def wait_drained(pids: list[int], timeout: float = 60.0) -> bool:
        """Wait until the old processes of a reload finished their in-flight requests and exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(pid_alive(p) for p in pids):
                return True
            time.sleep(0.05)
        return False

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-server counters from the stats socket (``show stat``): requests, 5xx, errors, status."""
        return parse_stats(self._command("show stat"), self.name)

    def _command(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stop(self, timeout: float = 10.0) -> None:
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGUSR1)  # soft stop: finish in-flight requests
            except ProcessLookupError:
                pass
        if not self.wait_drained(pids, timeout):
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.pid_file.unlink(missing_ok=True)
        self.socket_path.unlink(missing_ok=True)
