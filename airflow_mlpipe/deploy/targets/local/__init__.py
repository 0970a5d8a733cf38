"""The local target: ``bentoml serve`` processes on loopback ports behind a local HAProxy.

What a later task needs to find, check or stop the deployment lives in one state directory
(HAProxy config/pid/socket, one log and pid per backend) and in the deployment's state store
(``state.json`` in that directory by default; a SQL store with the option ``state_conn_id``).
Backends and the proxy run in their own sessions, detached from the Airflow task, so the service
outlives the task.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow_mlpipe.deploy.targets.base import Backend, BackendStartError, DeploymentState, Health
from airflow_mlpipe.deploy.targets.local.proxy import HAProxy, ServerEntry, pid_alive
from airflow_mlpipe.deploy.targets.state import FileStateStore, StateStore, read_json, write_json
from airflow_mlpipe.exceptions import ConfigError, MlpipeError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except Exception:
        return False


def probe(backend: Backend, alive: bool, dead: str) -> Health:
    """The backend's health: ``alive`` (its process or container runs, else ``dead`` says why) and
    its ``/livez`` and ``/readyz`` answers."""
    live = http_ok(f"{backend.url}/livez")
    ready = live and http_ok(f"{backend.url}/readyz")
    detail = [] if alive else [dead]
    if not live:
        detail.append(f"{backend.url}/livez does not answer")
    elif not ready:
        detail.append(f"{backend.url}/readyz is not ready")
    return Health(alive=alive, ready=ready, detail="; ".join(detail))


def weighted_servers(stable: Backend, canary: Backend | None, share: float) -> list[ServerEntry]:
    """The proxy's servers: ``share`` of the requests to ``canary``, the rest to ``stable``."""
    if canary is None or share <= 0:
        return [ServerEntry(stable.server, stable.port, 100)]
    weight = max(1, round(share * 100))
    return [
        ServerEntry(stable.server, stable.port, 100 - weight),
        ServerEntry(canary.server, canary.port, weight),
    ]


class ProxiedTarget:
    """Traffic through an HAProxy (``self.proxy``: the local process or the container), the same
    for every target that routes with one."""

    proxy: Any

    def route(self, stable: Backend, canary: Backend | None = None, share: float = 0.0) -> None:
        old = self.proxy.apply(weighted_servers(stable, canary, share))
        # The old proxy processes keep serving the requests they accepted; wait until they drained.
        if old and not self.proxy.wait_drained(old):
            raise MlpipeError(f"HAProxy processes {old} did not drain within 60 s after the reload")

    def traffic(self) -> dict[str, dict[str, Any]]:
        return self.proxy.stats() if self.proxy.running() else {}

    def proxy_running(self) -> bool:
        return bool(self.proxy.running())


class LocalTarget(ProxiedTarget):
    """Serve bentos as local processes behind HAProxy on ``127.0.0.1:<port>``.

    :param state_dir: directory of the deployment's state (created).
    :param name: deployment name (``[A-Za-z0-9_-]``), used in the proxy config.
    :param port: stable endpoint port; ``None`` picks a free one on first deploy and keeps it.
    :param bentoml_home: BentoML store the backends serve from (default: ``$BENTOML_HOME``).
    :param ready_timeout: seconds a new backend may take to answer ``/readyz``.
    :param state_store: where the deployment state and its lock live (default: ``state.json`` in
        ``state_dir``).
    :param access_log: syslog destination of the proxy's per-request log (``None``: no log).
    """

    host = "127.0.0.1"

    @classmethod
    def from_options(
        cls,
        deployment_name: str,
        *,
        state_dir: str | None = None,
        port: int | None = None,
        bentoml_home: str | None = None,
        ready_timeout: float = 180.0,
        state_store: StateStore | None = None,
        access_log: str | None = None,
    ) -> LocalTarget:
        """The local target of a target spec (``kind: local``), with defaults under the artifact root.

        :param deployment_name: the deployment's name.
        :param state_dir: deployment state (default ``<artifact root>/deployments/<deployment_name>``).
        :param port: stable endpoint port on 127.0.0.1 (first deploy; kept afterwards).
        :param bentoml_home: BentoML store (default ``$BENTOML_HOME`` or ``<artifact root>/bentoml``).
        :param ready_timeout: seconds a new backend may take to answer ``/readyz``.
        :param state_store: the deployment state's store (:func:`~airflow_mlpipe.deploy.targets.resolve_target`
            passes the SQL store of ``state_conn_id``); default ``state.json`` in ``state_dir``.
        :param access_log: the proxy's per-request log, sent to this syslog destination
            (``host:port`` over UDP, or a UNIX datagram socket path such as ``/dev/log``).
        """
        from airflow_mlpipe.core.storage import artifact_root, local_path, safe_segment
        from airflow_mlpipe.deploy.bento import use_bentoml_home

        home = bentoml_home or os.environ.get("BENTOML_HOME")
        if not home:
            root = local_path(artifact_root())
            if root is None:
                raise ConfigError("Set bentoml_home (or BENTOML_HOME) when the artifact root is not local.")
            home = os.path.join(root, "bentoml")
        use_bentoml_home(home)
        if not state_dir:
            root = local_path(artifact_root())
            if root is None:
                raise ConfigError("Set state_dir when the artifact root is not local.")
            state_dir = os.path.join(root, "deployments", safe_segment(deployment_name))
        return cls(
            state_dir,
            name=deployment_name,
            port=port or None,
            bentoml_home=home,
            ready_timeout=ready_timeout,
            state_store=state_store,
            access_log=access_log,
        )

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        name: str,
        port: int | None = None,
        bentoml_home: str | None = None,
        ready_timeout: float = 180.0,
        haproxy_binary: str | None = None,
        env: dict[str, str] | None = None,
        state_store: StateStore | None = None,
        access_log: str | None = None,
    ) -> None:
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"Deployment name {name!r} may only contain letters, digits, '-' and '_'.")
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.bentoml_home = bentoml_home or os.environ.get("BENTOML_HOME")
        self.ready_timeout = ready_timeout
        self.extra_env = dict(env or {})
        self.store = state_store if state_store is not None else FileStateStore(self.dir)
        meta = read_json(self.dir / "endpoint.json") or {}
        if meta.get("port") and port and int(meta["port"]) != port:
            raise ConfigError(
                f"Deployment {name!r} already serves on port {meta['port']} (state {self.dir}); "
                f"cannot move it to {port}. Stop it first or keep the port."
            )
        self.port = int(meta.get("port") or port or free_port(self.host))
        if not meta:
            write_json(self.dir / "endpoint.json", {"port": self.port, "name": name})
        self.proxy = HAProxy(
            self.dir,
            name=name.replace("-", "_"),
            port=self.port,
            binary=haproxy_binary,
            access_log=access_log,
        )

    # -- state -----------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def locked(self) -> contextlib.AbstractContextManager[None]:
        return self.store.locked()

    def load_state(self) -> DeploymentState:
        return DeploymentState.from_dict(self.store.load())

    def save_state(self, state: DeploymentState) -> None:
        self.store.save(state.as_dict())

    # -- backends ----------------------------------------------------------------------------
    def _env(self, home: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(BENTOML_DO_NOT_TRACK="true", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
        # Each backend has a BentoML home of its own. `bentoml serve` keeps its Prometheus
        # multiprocess files in <home>/prometheus_multiproc_dir and empties it at start: with one
        # shared home, starting a canary wiped the stable backend's metrics and both backends then
        # reported the same mixed histograms, so the canary's latency could never differ from
        # stable's. The private home links the shared store's bentos and models.
        env["BENTOML_HOME"] = str(home)
        env.pop("MLPIPE_SERVICE_CONFIG", None)  # the bento reads its own config
        env.update(self.extra_env)
        return env

    def _private_home(self, home: Path) -> Path:
        """A BentoML home of the backend's own that shares the store's bentos and models."""
        from airflow_mlpipe.deploy.bento import use_bentoml_home

        store = Path(self.bentoml_home or use_bentoml_home(None))
        home.mkdir(exist_ok=True)
        for part in ("bentos", "models"):
            (store / part).mkdir(parents=True, exist_ok=True)
            link = home / part
            if not link.is_symlink():
                link.symlink_to(store / part, target_is_directory=True)
        return home

    def start(
        self, bento_tag: str, *, model_name: str, model_version: str, port: int | None = None
    ) -> Backend:
        port = port or free_port(self.host)
        server = "b_" + "".join(c if c.isalnum() else "_" for c in bento_tag.split(":", 1)[-1])
        logs = self.dir / "backends"
        logs.mkdir(exist_ok=True)
        log_path = logs / f"{server}-{port}.log"
        home = self._private_home(logs / f"{server}-{port}.home")
        cmd = [sys.executable, "-m", "bentoml", "serve", bento_tag, "--host", self.host, "--port", str(port)]
        proc = spawn_detached(cmd, log_path, self._env(home), cwd=self.dir)
        backend = Backend(
            server=server,
            bento_tag=bento_tag,
            model_name=model_name,
            model_version=str(model_version),
            url=f"http://{self.host}:{port}",
            port=port,
            pid=proc.pid,
            log=str(log_path),
            started_at=dt.datetime.now(dt.UTC).isoformat(),
        )
        backend.extra["start_ticks"] = _start_ticks(proc.pid)
        backend.extra["home"] = str(home)
        (logs / f"{server}-{port}.pid").write_text(str(proc.pid))
        what = f"bentoml serve {bento_tag}"
        wait_ready(
            proc, f"{backend.url}/readyz", self.ready_timeout, what, log_path, lambda: self.stop(backend)
        )
        return backend

    def stop(self, backend: Backend, timeout: float = 15.0) -> None:
        """Stop the backend's process tree: ``circusd`` and its workers (which run in their own
        process groups, so the leader's group alone is not enough)."""
        if not backend.pid:
            return
        if _is_backend_process(backend):
            tree = [backend.pid, *_descendants(backend.pid)]
            _signal(tree, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(pid_alive(p) for p in tree):
                _reap(backend.pid)
                time.sleep(0.1)
        else:
            # The leader is gone (e.g. killed -9): its workers were re-parented; find them by group.
            tree = _group_members(backend.pid)
        _signal([p for p in tree if pid_alive(p)], signal.SIGKILL)
        _reap(backend.pid)
        if backend.extra.get("home"):
            shutil.rmtree(backend.extra["home"], ignore_errors=True)

    def health(self, backend: Backend) -> Health:
        return probe(backend, _is_backend_process(backend), f"process {backend.pid} is not running")

    def shutdown(self) -> None:
        """Stop the proxy and every backend of this deployment (tests, demo teardown)."""
        state = self.load_state()
        self.proxy.stop()
        for backend in (state.candidate, state.canary, state.stable, state.previous):
            if backend is not None and self.health(backend).alive:
                self.stop(backend)


def spawn_detached(
    cmd: list[str], log_path: Path, env: dict[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session (it outlives the task, and is stopped as a group), output
    appended to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )


def wait_ready(
    proc: subprocess.Popen[bytes],
    url: str,
    timeout: float,
    what: str,
    log_path: Path,
    on_timeout: Callable[[], None],
) -> None:
    """Return once ``url`` answers 200; after ``timeout`` call ``on_timeout`` (stop it) and raise.

    :raises BackendStartError: the process exited first, or was not ready in time (with its log tail).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BackendStartError(
                f"{what} exited with code {proc.returncode} before it was ready. "
                f"Log {log_path}:\n{_tail(log_path)}"
            )
        if http_ok(url, timeout=1.0):
            return
        time.sleep(0.25)
    on_timeout()
    raise BackendStartError(f"{what} was not ready after {timeout:.0f}s. Log {log_path}:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(") ", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[19])


def _is_backend_process(backend: Backend) -> bool:
    """True when the backend's pid is still the process started for it (pids get reused, and
    ``bentoml serve`` renames itself, so the start time identifies it)."""
    if not backend.pid:
        return False
    ticks = _start_ticks(backend.pid)
    return ticks is not None and ticks == backend.extra.get("start_ticks", ticks)


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _proc_table() -> list[tuple[int, int, int]]:
    """(pid, ppid, session id) of every process."""
    rows = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        rows.append((int(entry), int(fields[1]), int(fields[3])))
    return rows


def _descendants(pid: int) -> list[int]:
    table = _proc_table()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp, _ in table if pp == parent]
        found += children
        frontier += children
    return found


def _group_members(leader: int) -> list[int]:
    """Processes of the session the backend leader created (``start_new_session``)."""
    return [p for p, _, sid in _proc_table() if sid == leader and p != os.getpid()]


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
