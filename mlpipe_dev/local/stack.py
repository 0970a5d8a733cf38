"""An embedded Airflow for laptops, demos and end-to-end tests: real processes, loopback only.

``LocalAirflow`` runs the real components — api-server, scheduler, dag-processor and triggerer —
as child processes against a metadata DB (SQLite in WAL mode by default, or any SQLAlchemy URI such
as PostgreSQL), with LocalExecutor by default or CeleryExecutor (then also ``celery worker``
processes). Everything binds to 127.0.0.1 and the log servers are off (``--skip-serve-logs``):
nothing listens on a public interface.

It is driven through Airflow's public REST API (:class:`AirflowApi`), exactly as any external client
would: a JWT from ``POST /auth/token`` and ``/api/v2`` calls.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow_mlpipe.core.timing import scaled
from airflow_mlpipe.exceptions import MlpipeError
from airflow_mlpipe.executors.preload import DEFAULT_MODULES, forkserver_settings
from mlpipe_dev.local.processes import terminate

TERMINAL_STATES = frozenset({"success", "failed"})


class StackError(MlpipeError):
    """The embedded Airflow did not start or did not answer as expected."""


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AirflowApi:
    """A minimal client of Airflow's public REST API (``/api/v2``) with JWT auth."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._token: str | None = None

    def _request(
        self, method: str, path: str, body: Any = None, *, auth: bool = True, timeout: float = 30
    ) -> Any:
        """One call; a GET (idempotent) is retried when the api-server is slow or briefly away —
        on a busy machine a poll can time out while the run it watches is fine."""
        attempts = 4 if method == "GET" else 1
        for attempt in range(1, attempts + 1):
            try:
                return self._request_once(method, path, body, auth=auth, timeout=scaled(timeout))
            except (TimeoutError, ConnectionError, urllib.error.URLError) as exc:
                if isinstance(exc, urllib.error.HTTPError) and exc.code < 500:
                    raise
                if attempt == attempts:
                    raise StackError(f"{method} {path} failed {attempts} times; last: {exc!r}") from exc
                time.sleep(attempt)  # back off before asking a busy api-server again
        raise AssertionError("unreachable")

    def _request_once(self, method: str, path: str, body: Any, *, auth: bool, timeout: float) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 401 and auth and self._token is not None:
                self._token = None  # expired: fetch a new token once
                return self._request_once(method, path, body, auth=auth, timeout=timeout)
            if exc.code >= 500:
                raise
            detail = exc.read().decode(errors="replace")[:2000]
            raise StackError(f"{method} {path} -> HTTP {exc.code}: {detail}") from exc
        return json.loads(raw) if raw else None

    def token(self) -> str:
        if self._token is None:
            # The token endpoint is outside /api/v2.
            reply = self._request("POST", "/auth/token", self._credentials, auth=False)
            self._token = str(reply["access_token"])
        return self._token

    def get(self, path: str) -> Any:
        return self._request("GET", f"/api/v2{path}")

    def post(self, path: str, body: Any) -> Any:
        return self._request("POST", f"/api/v2{path}", body)

    def patch(self, path: str, body: Any) -> Any:
        return self._request("PATCH", f"/api/v2{path}", body)

    def dag_ids(self) -> list[str]:
        return [d["dag_id"] for d in self.get("/dags?limit=1000")["dags"]]

    def wait_dags(self, dag_ids: list[str], timeout: float = 180) -> None:
        """Wait until the dag-processor has parsed and serialized ``dag_ids``."""
        deadline = time.monotonic() + timeout
        missing = set(dag_ids)
        while time.monotonic() < deadline:
            missing = set(dag_ids) - set(self.dag_ids())
            if not missing:
                return
            time.sleep(1)
        errors = self.get("/importErrors")
        raise StackError(f"DAGs {sorted(missing)} not parsed after {timeout}s; import errors: {errors}")

    def unpause(self, dag_id: str) -> None:
        self.patch(f"/dags/{dag_id}", {"is_paused": False})

    def trigger(
        self, dag_id: str, conf: Mapping[str, Any] | None = None, *, logical_date: str | None = None
    ) -> str:
        """Trigger a run; return its id. The id is chosen here, so that a request the api-server
        failed (HTTP 5xx: e.g. SQLite busy while other runs are created) can be sent again: the
        run exists at most once, and a repeat that finds it (HTTP 409) is the same run."""
        run_id = f"manual__{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime())}_{secrets.token_hex(3)}"
        body: dict[str, Any] = {"dag_run_id": run_id, "logical_date": logical_date, "conf": dict(conf or {})}
        for attempt in range(1, 5):
            try:
                return str(self.post(f"/dags/{dag_id}/dagRuns", body)["dag_run_id"])
            except StackError as exc:
                cause = exc.__cause__
                code = cause.code if isinstance(cause, urllib.error.HTTPError) else None
                if attempt > 1 and code == 409:
                    return run_id  # an earlier attempt created it after all
                if attempt == 4 or (code is not None and code < 500):
                    raise
            time.sleep(attempt)
        raise AssertionError("unreachable")

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"))

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/dags/{dag_id}/dagRuns?order_by=run_after&limit=100")["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        quoted = quote(run_id, safe="")
        return list(self.get(f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances?limit=1000")["task_instances"])

    def task_log(self, dag_id: str, run_id: str, ti: Mapping[str, Any]) -> str:
        """The log of one task instance try (a task instance of :meth:`task_instances`), as text."""
        path = (
            f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/"
            f"{quote(str(ti['task_id']), safe='')}/logs/{max(int(ti.get('try_number') or 1), 1)}"
            f"?full_content=true&map_index={ti.get('map_index', -1)}"
        )
        content = self.get(path).get("content")
        if isinstance(content, str):
            return content
        lines = []
        for item in content or []:
            if isinstance(item, Mapping):
                extra = {k: v for k, v in item.items() if k not in ("timestamp", "level", "event")}
                lines.append(
                    f"{item.get('timestamp', '')} {item.get('level', '')} {item.get('event', '')}"
                    + (f" {extra}" if extra else "")
                )
            else:
                lines.append(str(item))
        return "\n".join(lines)

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 2) -> str:
        """Wait for a DAG run to finish; return its final state."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            state = str(self.run(dag_id, run_id)["state"])
            if state in TERMINAL_STATES:
                return state
            time.sleep(poll)
        raise StackError(f"run {dag_id}/{run_id} still {state!r} after {timeout}s")

    def wait_new_run(self, dag_id: str, known: set[str], timeout: float = 300, poll: float = 1) -> str:
        """Wait until a run of ``dag_id`` not in ``known`` exists (e.g. one started by an asset event)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for run in self.runs(dag_id):
                if run["dag_run_id"] not in known:
                    return str(run["dag_run_id"])
            time.sleep(poll)
        raise StackError(f"no new run of {dag_id} after {timeout}s")

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        quoted = quote(run_id, safe="")
        path = f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/xcomEntries/{key}?map_index={map_index}&deserialize=true"
        return self.get(path)["value"]


@dataclass
class CeleryWorker:
    """One ``airflow celery worker`` of the stack, set up like a worker on a host of its own.

    :param name: names its log (``celery-worker-<name>.log``) and Celery hostname.
    :param queue: the queue it consumes (a task chooses one with ``queue=``); default Airflow's.
    :param cwd: its working directory (default the stack's home).
    :param env: its environment on top of the stack's (``HOME``, ``BENTOML_HOME`` …).
    """

    name: str
    queue: str | None = None
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def args(self) -> list[str]:
        queue = ["--queues", self.queue] if self.queue else []
        return [
            "celery",
            "worker",
            "--skip-serve-logs",
            "--celery-hostname",
            f"worker-{self.name}@%h",
            *queue,
        ]


#: the provider's Celery configuration: workers import the stages' libraries before their pool forks
PRELOADING_CELERY_CONFIG = "airflow_mlpipe.executors.celery.CELERY_CONFIG"


@dataclass
class LocalAirflow:
    """Real Airflow processes on loopback; a context manager that stops all it started.

    :param home: ``AIRFLOW_HOME`` (created); logs of every process go to ``home/logs/<component>.log``.
    :param dags_folder: the DAGs folder the dag-processor parses.
    :param executor: ``LocalExecutor`` or ``CeleryExecutor``.
    :param sql_alchemy_conn: metadata DB; default SQLite in ``home``.
    :param celery_broker_url: broker for CeleryExecutor (e.g. ``redis://127.0.0.1:6379/5``).
    :param celery_workers: number of ``airflow celery worker`` processes for CeleryExecutor.
    :param workers: the Celery workers one by one (queue, working directory, environment) instead of
        ``celery_workers`` alike ones.
    :param parallelism: executor slots; each LocalExecutor slot is a forked worker (~150 MB).
    :param preload: task processes start with ``preload_modules`` imported: Airflow's forkserver
        settings for LocalExecutor, the provider's Celery configuration for CeleryExecutor (see
        :mod:`airflow_mlpipe.executors`); ``False``: every task process imports what it needs.
    :param preload_modules: what is preloaded (default: the provider's stages' libraries).
    :param env: extra environment for every process (artifact root, connections, …).
    """

    home: Path
    dags_folder: Path
    executor: str = "LocalExecutor"
    sql_alchemy_conn: str | None = None
    celery_broker_url: str | None = None
    celery_workers: int = 2
    workers: list[CeleryWorker] = field(default_factory=list)
    parallelism: int = 4
    preload: bool = True
    preload_modules: tuple[str, ...] = DEFAULT_MODULES
    env: dict[str, str] = field(default_factory=dict)
    api_port: int = 0
    username: str = "admin"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False, repr=False)
    _logs: list[Any] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        self.dags_folder = Path(self.dags_folder).resolve()
        if self.executor not in ("LocalExecutor", "CeleryExecutor"):
            raise StackError(f"executor must be LocalExecutor or CeleryExecutor, not {self.executor!r}")
        if self.executor == "CeleryExecutor" and not self.celery_broker_url:
            raise StackError("CeleryExecutor needs celery_broker_url (e.g. redis://127.0.0.1:6379/5)")
        if not self.api_port:
            self.api_port = free_port()
        self.api = AirflowApi(self.url, self.username, self.password)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def process_env(self) -> dict[str, str]:
        """The environment every Airflow process of this stack gets."""
        db = self.sql_alchemy_conn or f"sqlite:///{self.home}/airflow.db"
        # The stack's tasks choose their own MLflow experiment and run: none is inherited from the
        # process that starts the stack (MLflow reads these before anything the task configures).
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")
        }
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                # Task processes call the api-server; its 5 s default fails tasks on a busy machine.
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": str(round(scaled(30))),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.username}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt"),
                "AIRFLOW__API__SECRET_KEY": self._secret("api"),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "BENTOML_DO_NOT_TRACK": "true",
                "GX_ANALYTICS_ENABLED": "false",
            }
        )
        if self.preload and self.executor == "LocalExecutor":
            env.update(forkserver_settings(self.preload_modules))
        if self.executor == "CeleryExecutor":
            env["AIRFLOW__CELERY__BROKER_URL"] = str(self.celery_broker_url)
            env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + db.replace(
                "postgresql://", "postgresql+psycopg2://", 1
            )
            if self.preload:
                env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] = PRELOADING_CELERY_CONFIG
                env["AIRFLOW__MLPIPE__PRELOAD_MODULES"] = ",".join(self.preload_modules)
            env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(
                max(1, self.parallelism // max(1, len(self.workers) or self.celery_workers))
            )
        env.update(self.env)
        return env

    def _secret(self, name: str) -> str:
        # Stable per home, so restarted components keep accepting each other's tokens.
        path = self.home / f".{name}_secret"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def _spawn(
        self, name: str, args: list[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        log = open(self.home / "logs" / f"{name}.log", "ab")
        self._logs.append(log)
        self._procs[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env={**self.process_env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd or self.home,
            start_new_session=True,  # own process group: stop() ends the forked workers too
        )

    def start(self, *, timeout: float = 180) -> LocalAirflow:
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({self.username: self.password}))
        migrate = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=self.process_env,
            capture_output=True,
            text=True,
            cwd=self.home,
        )
        if migrate.returncode != 0:
            raise StackError(
                f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}"
            )
        if self.sql_alchemy_conn is None:
            self._enable_sqlite_wal()
        self._spawn(
            "api-server",
            ["api-server", "--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"],
        )
        self._spawn("scheduler", ["scheduler", "--skip-serve-logs"])
        self._spawn("dag-processor", ["dag-processor"])
        self._spawn("triggerer", ["triggerer", "--skip-serve-logs"])
        if self.executor == "CeleryExecutor":
            for worker in self.workers or [CeleryWorker(str(i)) for i in range(self.celery_workers)]:
                name = f"celery-worker-{worker.name}"
                if worker.cwd is not None:
                    Path(worker.cwd).mkdir(parents=True, exist_ok=True)
                pid = ["--pid", str(self.home / f"{name}.pid")]
                self._spawn(name, [*worker.args, *pid], cwd=worker.cwd, env=worker.env)
        self._wait_ready(timeout)
        return self

    def _enable_sqlite_wal(self) -> None:
        import sqlite3

        with sqlite3.connect(self.home / "airflow.db") as con:
            con.execute("PRAGMA journal_mode=WAL")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=2) as resp:
                    health = json.loads(resp.read())
                if health.get("scheduler", {}).get("status") == "healthy":
                    return
            except (OSError, ValueError):
                pass
            time.sleep(1)
        raise StackError(f"Airflow not healthy after {timeout}s; see logs in {self.home / 'logs'}")

    def check_alive(self) -> None:
        """Raise if a component exited (with the tail of its log)."""
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                tail = (self.home / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise StackError(f"airflow {name} exited with {proc.returncode}:\n{tail}")

    def restart(self, component: str) -> None:
        """Stop one component (e.g. ``triggerer``) and start it again — for fault tests."""
        proc = self._procs[component]
        terminate(proc)
        args = {
            "api-server": [
                "api-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.api_port),
                "--workers",
                "1",
            ],
            "scheduler": ["scheduler", "--skip-serve-logs"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer", "--skip-serve-logs"],
        }[component]
        self._spawn(component, args)

    def stop(self) -> None:
        for proc in reversed(list(self._procs.values())):
            terminate(proc)
        self._procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> LocalAirflow:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
