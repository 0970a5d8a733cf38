"""HAProxy in a container: the config of the local proxy, reloaded by HAProxy's master process.

The container runs HAProxy in master-worker mode in the foreground (``haproxy -W -db -f
/usr/local/etc/haproxy/haproxy.cfg``, the official image's start). A change puts the new config
into the container (Engine API archive upload), has the container's ``haproxy -c`` check it, and
sends ``SIGUSR2`` to the master: it starts new workers on the listening sockets it hands over and
lets the old workers finish their requests. The old workers are watched through the engine's
process list until they are gone. The statistics are read over HTTP (``/stats;csv``) from a second
listener on the engine's host, so any worker that reaches the endpoint reads the counters too.
"""

from __future__ import annotations

import io
import socket
import tarfile
import time
import urllib.request
from typing import Any

from airflow_mlpipe.deploy.targets.local.proxy import ProxyError, ServerEntry, parse_stats, render_config

CONFIG_DIR = "/usr/local/etc/haproxy"
CONFIG = f"{CONFIG_DIR}/haproxy.cfg"
_CANDIDATE = "haproxy.cfg.new"
# paths inside the container: /tmp is writable for the official image's unprivileged user too
_PID_FILE = "/tmp/mlpipe-haproxy.pid"
_SOCKET = "/tmp/mlpipe-haproxy.sock"


def _archive(name: str, text: str) -> bytes:
    data = text.encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class ContainerProxy:
    """The HAProxy container of one deployment.

    :param client: a ``docker.DockerClient``.
    :param container_name: the container's name.
    :param name: config section names (``[A-Za-z0-9_]``).
    :param host: address the proxy binds and reaches the backends on (host networking).
    :param port: stable endpoint port; ``stats_port``: the statistics listener's port.
    :param image: the HAProxy image (official layout: config in ``/usr/local/etc/haproxy``).
    :param labels: labels of the container (deployment, role).
    """

    def __init__(
        self,
        client: Any,
        *,
        container_name: str,
        name: str,
        host: str,
        port: int,
        stats_port: int,
        image: str,
        labels: dict[str, str],
    ) -> None:
        self.client = client
        self.container_name = container_name
        self.name = name
        self.host = host
        self.port = port
        self.stats_port = stats_port
        self.image = image
        self.labels = labels

    def render(self, servers: list[ServerEntry]) -> str:
        return render_config(
            servers,
            name=self.name,
            port=self.port,
            bind_host=self.host,
            pid_file=_PID_FILE,
            stats_socket=_SOCKET,
            server_host=self.host,
            stats_port=self.stats_port,
        )

    def container(self) -> Any | None:
        from airflow_mlpipe.core.deps import require

        errors = require("docker.errors")
        try:
            return self.client.containers.get(self.container_name)
        except errors.NotFound:
            return None

    def running(self) -> bool:
        found = self.container()
        return found is not None and found.status == "running" and self._listening(self.port)

    def apply(self, servers: list[ServerEntry]) -> list[int]:
        """Put the config for ``servers`` in place and start or reload; return the draining workers."""
        text = self.render(servers)
        found = self.container()
        if found is not None and found.status != "running":
            found.remove(force=True)
            found = None
        if found is None:
            self._create(text)
            return []
        found.put_archive(CONFIG_DIR, _archive(_CANDIDATE, text))
        check = found.exec_run(["haproxy", "-c", "-q", "-f", f"{CONFIG_DIR}/{_CANDIDATE}"])
        if check.exit_code != 0:
            output = check.output.decode(errors="replace").strip()
            raise ProxyError(f"HAProxy rejected the generated config in {self.container_name}: {output}")
        found.put_archive(CONFIG_DIR, _archive("haproxy.cfg", text))
        old = self.workers(found)
        found.kill(signal="SIGUSR2")  # master-worker reload: new workers, old ones drain
        self._wait_new_worker(found, old)
        return old

    def _create(self, text: str) -> None:
        container = self.client.containers.create(
            self.image,
            name=self.container_name,
            network_mode="host",
            labels=self.labels,
            restart_policy={"Name": "unless-stopped"},
        )
        container.put_archive(CONFIG_DIR, _archive("haproxy.cfg", text))
        container.start()
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            container.reload()
            if container.status != "running":
                logs = container.logs(tail=20).decode(errors="replace")
                container.remove(force=True)
                raise ProxyError(f"The HAProxy container {self.container_name} exited:\n{logs}")
            if self._listening(self.port) and self._listening(self.stats_port):
                return
            time.sleep(0.1)
        raise ProxyError(f"HAProxy in {self.container_name} is not listening on {self.host}:{self.port}")

    @staticmethod
    def workers(container: Any) -> list[int]:
        """Engine-host pids of the container's HAProxy workers (children of its master, pid 1)."""
        container.reload()
        master = str(container.attrs["State"]["Pid"])
        top = container.top(ps_args="-o pid,ppid")
        titles = [t.upper() for t in top["Titles"]]
        pid_at, ppid_at = titles.index("PID"), titles.index("PPID")
        return [int(row[pid_at]) for row in top.get("Processes") or [] if row[ppid_at] == master]

    def _wait_new_worker(self, container: Any, old: list[int], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if set(self.workers(container)) - set(old) and self._listening(self.port):
                return
            time.sleep(0.05)
        raise ProxyError(f"HAProxy in {self.container_name} started no new worker after the reload")

    def wait_drained(self, pids: list[int], timeout: float = 60.0) -> bool:
        """Wait until the workers of before a reload finished their requests and exited."""
        container = self.container()
        deadline = time.monotonic() + timeout
        while container is not None and time.monotonic() < deadline:
            if not set(pids) & set(self.workers(container)):
                return True
            time.sleep(0.05)
        return container is None

    def stats(self) -> dict[str, dict[str, Any]]:
        url = f"http://{self.host}:{self.stats_port}/stats;csv"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return parse_stats(resp.read().decode(), self.name)

    def _listening(self, port: int) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex((self.host, port)) == 0

    def remove(self) -> None:
        found = self.container()
        if found is not None:
            found.stop(timeout=10)  # SIGUSR1 (the image's stop signal): soft stop
            found.remove(force=True)
