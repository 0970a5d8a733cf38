"""MLflow hook: tracking and registry access through an Airflow connection.

Connection (type ``mlpipe_mlflow``):
* ``host`` — tracking URI (``http://127.0.0.1:5000``, ``sqlite:////abs/path.db``, ``postgresql://…``);
  empty means the embedded default: SQLite under the artifact root.
* ``login`` / ``password`` — basic auth for an MLflow server; ``extra.token`` — bearer token.
* ``extra.registry_uri`` — registry URI when it differs from the tracking URI.
* ``extra.artifact_location`` — artifact root for experiments created on a SQLite/PostgreSQL backend.
* ``extra.max_attempts`` (default 3), ``extra.retry_wait`` (seconds, default 1),
  ``extra.timeout`` (seconds per HTTP request, default 60) — bounded retries of transient errors
  (connection refused, HTTP 429 and 5xx); anything else fails at once.

Secrets go to MLflow only inside :meth:`MlflowHook.activate` (as MLflow's environment variables,
restored afterwards) and bound to the clients :meth:`MlflowHook.get_client` returns; they are never
logged, templated or pushed to XCom, and URIs shown to users pass through :func:`redact_uri`.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from airflow_mlpipe.core.deps import require
from airflow_mlpipe.core.quiet import library_output
from airflow_mlpipe.core.storage import artifact_root, local_path
from airflow_mlpipe.exceptions import ConfigError, MlpipeError
from airflow_mlpipe.hooks.base import OptionalConnectionHook

T = TypeVar("T")

#: fragments of error messages (requests/urllib3/SQLAlchemy, as wrapped by MLflow) that mean "try again"
_TRANSIENT_MARKERS = (
    "connection refused",
    "max retries exceeded",
    "failed to establish a new connection",
    "connection aborted",
    "connection reset",
    "remote end closed connection",
    "read timed out",
    "connect timeout",
    "too many 429 error responses",
    "too many 500 error responses",
    "too many 502 error responses",
    "too many 503 error responses",
    "too many 504 error responses",
    "could not connect to server",
    "connection to server at",
    "server closed the connection unexpectedly",
    "database is locked",
)


class MlflowUnreachableError(MlpipeError, ConnectionError):
    """The tracking server kept failing with transient errors until the retries ran out."""


def redact_uri(uri: str) -> str:
    """``uri`` with any password in its user-info replaced by ``***`` (safe for logs and XCom)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if not parts.password:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) is a connection failure, a timeout, HTTP 429 or a 5xx answer."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        # HTTP 429/5xx answers are retried by MLflow's session and end as "too many <code> error
        # responses"; a RestException's own status is derived from its error code, not the answer.
        if type(cur).__name__ in ("ConnectionError", "ConnectTimeout", "ReadTimeout", "OperationalError"):
            text = str(cur).lower()
            if type(cur).__name__ != "OperationalError" or any(m in text for m in _TRANSIENT_MARKERS):
                return True
        text = str(cur).lower()
        if any(m in text for m in _TRANSIENT_MARKERS):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


class MlflowHook(OptionalConnectionHook):
    """Access to MLflow tracking and the model registry.

    :param mlflow_conn_id: Airflow connection id; when the connection does not exist the embedded
        default (SQLite tracking + registry under the artifact root) is used.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlpipe_mlflow_default"
    conn_type = "mlpipe_mlflow"
    hook_name = "MLflow (mlpipe)"

    def __init__(self, mlflow_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def settings(self) -> dict[str, Any]:
        """Tracking URI, registry URI, artifact location, retries and credentials (not for logging)."""
        conn = self.connection
        extra = dict((conn.extra_dejson if conn is not None else {}) or {})
        tracking = (conn.host if conn is not None else None) or ""
        if not tracking:
            root = artifact_root() / "mlflow"
            local = local_path(root)
            if local is None:
                raise ConfigError(
                    "The embedded MLflow default needs a local artifact root; set a tracking URI "
                    f"as the host of connection {self.mlflow_conn_id!r}."
                )
            os.makedirs(local, exist_ok=True)
            tracking = f"sqlite:///{local}/mlflow.db"
            extra.setdefault("artifact_location", f"file://{local}/artifacts")
        try:
            max_attempts = int(extra.get("max_attempts", 3))
            retry_wait = float(extra.get("retry_wait", 1))
            timeout = int(extra.get("timeout", 60))
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"Connection {self.mlflow_conn_id!r}: max_attempts, retry_wait and timeout must be numbers ({exc})."
            ) from None
        if max_attempts < 1 or retry_wait < 0 or timeout < 1:
            raise ConfigError(
                f"Connection {self.mlflow_conn_id!r}: use max_attempts >= 1, retry_wait >= 0, timeout >= 1."
            )
        return {
            "tracking_uri": tracking,
            "registry_uri": extra.get("registry_uri") or tracking,
            "artifact_location": extra.get("artifact_location") or None,
            "username": conn.login if conn is not None else None,
            "password": conn.password if conn is not None else None,
            "token": extra.get("token"),
            "max_attempts": max_attempts,
            "retry_wait": retry_wait,
            "timeout": timeout,
        }

    @property
    def tracking_uri(self) -> str:
        return str(self.settings["tracking_uri"])

    @property
    def registry_uri(self) -> str:
        return str(self.settings["registry_uri"])

    @property
    def display_uri(self) -> str:
        """The tracking URI without any password, for logs, links and XCom."""
        return redact_uri(self.tracking_uri)

    @property
    def max_attempts(self) -> int:
        return int(self.settings["max_attempts"])

    def _env(self) -> dict[str, str | None]:
        s = self.settings
        # MLflow's own HTTP session retries connection errors, 429 and 5xx (urllib3 Retry); bound it
        # so one request makes at most ``max_attempts`` attempts. Its backoff factor is an integer.
        wait = s["retry_wait"]
        return {
            "MLFLOW_TRACKING_USERNAME": s["username"] or None,
            "MLFLOW_TRACKING_PASSWORD": s["password"] or None,
            "MLFLOW_TRACKING_TOKEN": s["token"] or None,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(s["max_attempts"] - 1),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(int(round(wait))),
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": str(min(1.0, wait)),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(s["timeout"]),
            # progress bars are drawn on stderr, which a task log shows at ERROR
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": os.environ.get(
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"
            ),
        }

    def unreachable(self, exc: BaseException) -> MlflowUnreachableError:
        """The error that ends a task once the transient failures outlast the retries."""
        return MlflowUnreachableError(
            f"MLflow tracking server at {self.display_uri} unreachable after {self.max_attempts} "
            f"attempts: {type(exc).__name__}: {redact_uri(str(exc))[:500]}"
        )

    @contextlib.contextmanager
    def activate(self) -> Iterator[Any]:
        """Point the ``mlflow`` module at this connection for the duration of the block; yield it.

        Inside the block MLflow logs through the task's logging, without progress bars, and model
        (de)serialization adds no library noise (:func:`airflow_mlpipe.core.quiet.library_output`).

        Transient failures that outlast the bounded retries leave the block as
        :class:`MlflowUnreachableError`; other errors pass through unchanged.
        """
        mlflow = require("mlflow")
        s = self.settings
        env = self._env()
        saved = {k: os.environ.get(k) for k in env}
        try:
            for k, v in env.items():
                if v:
                    os.environ[k] = v
                else:
                    os.environ.pop(k, None)
            mlflow.set_tracking_uri(s["tracking_uri"])
            mlflow.set_registry_uri(s["registry_uri"])
            with library_output():
                yield mlflow
        except MlpipeError:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise self.unreachable(exc) from exc
            raise
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def retry(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` up to ``max_attempts`` times while it fails with a transient error.

        For calls that MLflow does not retry itself (database-backed stores); HTTP requests made
        inside :meth:`activate` are already bounded by MLflow's own retry.
        """
        wait = float(self.settings["retry_wait"])
        # Over HTTP, MLflow's session already made max_attempts attempts: do not multiply them.
        own_attempts = 1 if self.tracking_uri.startswith(("http://", "https://")) else self.max_attempts
        for attempt in range(1, own_attempts + 1):
            try:
                return fn()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt == own_attempts:
                    raise self.unreachable(exc) from exc
                self.log.warning(
                    "MLflow at %s: transient error (attempt %d of %d), retrying: %s",
                    self.display_uri,
                    attempt,
                    self.max_attempts,
                    type(exc).__name__,
                )
                time.sleep(wait * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _bind_credentials(self, client: Any) -> None:
        """Make this client (only) send the connection's credentials, also outside :meth:`activate`.

        MLflow caches one store per URI and reads credentials from the environment on each request;
        the client gets private copies of its REST stores that carry this connection's credentials,
        so another connection to the same URI never sees them.
        """
        s = self.settings
        if not (s["username"] or s["token"]):
            return

        def bind(holder: Any) -> None:
            shared = holder.store
            if not hasattr(shared, "get_host_creds"):
                return  # database-backed store: no HTTP credentials
            own = copy.copy(shared)
            original = shared.get_host_creds

            def creds() -> Any:
                c = original()
                c.username, c.password, c.token = s["username"], s["password"], s["token"]
                return c

            own.get_host_creds = creds
            holder.__class__ = type(
                holder.__class__.__name__, (holder.__class__,), {"store": property(lambda _: own)}
            )

        with contextlib.suppress(Exception):
            bind(client._tracking_client)
        with contextlib.suppress(Exception):
            bind(client._get_registry_client())

    def get_client(self) -> Any:
        """An ``mlflow.MlflowClient`` bound to this connection's tracking and registry URIs."""
        require("mlflow")
        from mlflow import MlflowClient

        with self.activate():
            client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
            self._bind_credentials(client)
            return client

    def ensure_reachable(self) -> None:
        """Fail fast with :class:`MlflowUnreachableError` before any long work starts."""
        with self.activate():
            client = self.get_client()
            self.retry(lambda: client.search_experiments(max_results=1))

    def get_or_create_experiment(self, name: str) -> str:
        """The experiment id of ``name``, creating it (with the configured artifact location)."""
        with self.activate():
            client = self.get_client()
            exp = client.get_experiment_by_name(name)
            if exp is not None:
                return str(exp.experiment_id)
            try:
                return str(
                    client.create_experiment(name, artifact_location=self.settings["artifact_location"])
                )
            except Exception:
                # Parallel tasks may create it at the same moment: the loser reads the winner's id.
                exp = client.get_experiment_by_name(name)
                if exp is None:
                    raise
                return str(exp.experiment_id)

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """The run's page: a UI URL for an HTTP server, else the tracking URI plus the run's page path."""
        base = self.display_uri.rstrip("/")
        page = f"#/experiments/{experiment_id}/runs/{run_id}"
        return f"{base}/{page}" if base.startswith(("http://", "https://")) else f"{base}{page}"

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.ensure_reachable()
        except MlflowUnreachableError as exc:
            return False, str(exc)
        except Exception as exc:
            return False, f"MLflow at {self.display_uri} is not usable: {type(exc).__name__}: {exc}"
        return True, f"Connected to MLflow at {self.display_uri}"
