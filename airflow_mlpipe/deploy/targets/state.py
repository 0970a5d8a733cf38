"""Deployment state with a lock: where a rollout finds what serves, whichever worker runs it.

A *state store* keeps one JSON document per deployment (the rollout's
:class:`~airflow_mlpipe.deploy.targets.base.DeploymentState`, a stream's scorers) and an exclusive
lock held for one rollout step, so two rollouts of one deployment never interleave.

- :class:`FileStateStore` — ``state.json`` and an ``fcntl`` lock in a directory: every task that
  deploys must run on the machine (or shared volume) of that directory. The default.
- :class:`SqlStateStore` — a row of a PostgreSQL table and an advisory lock on a dedicated
  connection: every worker that reaches the database sees the state. Chosen with the target
  option ``state_conn_id`` (see docs/howto/deployment-target.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from airflow_mlpipe.config.deploy import DEFAULT_STATE_TABLE as DEFAULT_TABLE
from airflow_mlpipe.exceptions import ConfigError, MlpipeError


class StateStoreError(MlpipeError):
    """The state store could not be read or written (the database went away, a corrupt document)."""


@runtime_checkable
class StateStore(Protocol):
    """One deployment's state document and its lock."""

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive access for one rollout step; released when the step ends or its process dies."""
        ...

    def load(self) -> dict[str, Any]:
        """The saved document, ``{}`` before the first save."""
        ...

    def save(self, state: Mapping[str, Any]) -> None:
        """Replace the document (atomically: a reader sees the old or the new one)."""
        ...


class FileStateStore:
    """``state.json`` and an ``fcntl`` lock (``.lock``) in ``directory`` (created).

    :param directory: the deployment's state directory.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "state.json"

    def __repr__(self) -> str:
        return f"FileStateStore({str(self.dir)!r})"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def load(self) -> dict[str, Any]:
        return read_json(self.path) or {}

    def save(self, state: Mapping[str, Any]) -> None:
        write_json(self.path, state)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, ``None`` when the file does not exist."""
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file renamed over it)."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")


class SqlStateStore:
    """A row of ``table`` (``deployment``, ``state`` JSON, ``updated_at``) in PostgreSQL.

    The lock is a session advisory lock taken on a connection of its own, which exists only while a
    step holds the lock: the server releases it when the step ends, and when the process holding it
    dies (its connection closes). Reads and writes use short transactions of other connections, so
    a reader (``check``) never waits for a rollout.

    :param url: SQLAlchemy URL of the PostgreSQL database (``postgresql://…``).
    :param key: the deployment's name (the row's key).
    :param table: table name, ``name`` or ``schema.name``; created on first use.
    :param where: what to name in error messages (the Airflow connection id).
    """

    def __init__(self, url: str, key: str, *, table: str = DEFAULT_TABLE, where: str | None = None) -> None:
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        if not key:
            raise ConfigError("The SQL state store needs the deployment's name as its key.")
        if not _TABLE.match(table):
            raise ConfigError(f"state_table must be a table name (schema.name allowed), got {table!r}.")
        try:
            parsed = sqlalchemy.make_url(url)
        except Exception as exc:  # sqlalchemy.exc.ArgumentError
            raise ConfigError(f"The state store's URL is invalid ({where or 'url'}): {exc}") from None
        self.where = where or parsed.render_as_string(hide_password=True)
        if parsed.get_backend_name() != "postgresql":
            raise ConfigError(
                f"The SQL state store needs PostgreSQL (advisory locks); {self.where} is "
                f"{parsed.get_backend_name()!r}. Use a postgres connection."
            )
        self.key = key
        self.table = table
        # No pool: a connection closed by the store is closed on the server, so a lock never
        # outlives the step in a pooled connection.
        self._engine = sqlalchemy.create_engine(parsed, poolclass=NullPool)
        self._lock_id = int.from_bytes(
            hashlib.sha256(f"{table}\0{key}".encode()).digest()[:8], "big", signed=True
        )
        self._create_table()

    @classmethod
    def from_connection(cls, conn_id: str, key: str, *, table: str = DEFAULT_TABLE) -> SqlStateStore:
        """The store on the Airflow connection ``conn_id`` (a postgres connection; a task in Airflow 3
        cannot use the metadata database, but the connection may name the same server).

        :raises ConfigError: the connection is missing, not PostgreSQL, or the database cannot be reached.
        """
        from airflow_mlpipe.hooks.database import sqlalchemy_url

        return cls(sqlalchemy_url(conn_id), key, table=table, where=f"connection {conn_id!r}")

    def __repr__(self) -> str:
        return f"SqlStateStore({self.where}, table={self.table!r}, key={self.key!r})"

    def _connect(self) -> Any:
        import sqlalchemy.exc

        try:
            return self._engine.connect()
        except sqlalchemy.exc.OperationalError as exc:
            raise StateStoreError(
                f"The deployment state database ({self.where}) cannot be reached: {exc.orig}"
            ) from None

    def _create_table(self) -> None:
        from sqlalchemy import text

        try:
            conn = self._connect()
        except StateStoreError as exc:
            raise ConfigError(f"{exc} Check the connection's host, port, database and login.") from None
        with conn, conn.begin():
            # Concurrent CREATE TABLE IF NOT EXISTS can fail on PostgreSQL's catalog: serialize it.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CREATE_LOCK})
            conn.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {self.table} ("
                    "deployment text PRIMARY KEY, state jsonb NOT NULL, "
                    "updated_at timestamptz NOT NULL DEFAULT now())"
                )
            )

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        from sqlalchemy import text

        conn = self._connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self._lock_id})
            yield
        finally:
            # Closing the connection ends the session, which releases the lock even if the unlock
            # could not be sent.
            with contextlib.suppress(Exception):
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._lock_id})
            conn.close()

    def load(self) -> dict[str, Any]:
        from sqlalchemy import text

        with self._connect() as conn:
            row = conn.execute(
                text(f"SELECT state FROM {self.table} WHERE deployment = :key"), {"key": self.key}
            ).first()
        if row is None:
            return {}
        state = row[0]
        if isinstance(state, str):
            state = json.loads(state)
        if not isinstance(state, dict):
            raise StateStoreError(f"The state of {self.key!r} in {self.table} is not a JSON object.")
        return state

    def save(self, state: Mapping[str, Any]) -> None:
        from sqlalchemy import text

        with self._connect() as conn, conn.begin():
            conn.execute(
                text(
                    f"INSERT INTO {self.table} (deployment, state, updated_at) "
                    "VALUES (:key, CAST(:state AS jsonb), now()) ON CONFLICT (deployment) "
                    "DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
                ),
                {"key": self.key, "state": json.dumps(dict(state), sort_keys=True)},
            )


#: advisory lock key that serializes creating state tables (any value; fixed so all stores share it)
_CREATE_LOCK = int.from_bytes(
    hashlib.sha256(b"mlpipe state store: create table").digest()[:8], "big", signed=True
)


def state_store(
    conn_id: str | None,
    key: str,
    *,
    table: str = DEFAULT_TABLE,
    directory: str | os.PathLike[str] | None = None,
) -> StateStore:
    """The store a target spec chooses: the SQL store on ``conn_id``, else the file store in ``directory``.

    :param conn_id: Airflow connection of the SQL store (the target option ``state_conn_id``).
    :param key: the deployment's name.
    :param table: the SQL store's table (the target option ``state_table``).
    :param directory: the file store's directory, used when ``conn_id`` is not set.
    """
    if conn_id:
        return SqlStateStore.from_connection(conn_id, key, table=table)
    if directory is None:
        raise ConfigError("A file state store needs a directory (or set state_conn_id).")
    return FileStateStore(directory)
