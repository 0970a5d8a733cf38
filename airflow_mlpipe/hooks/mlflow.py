"""MLflow hook: tracking and registry access through an Airflow connection.

Connection (type ``mlpipe_mlflow``):
* ``host`` — tracking URI (``http://127.0.0.1:5000``, ``sqlite:////abs/path.db``, ``postgresql://…``);
  empty means the embedded default: SQLite under the artifact root.
* ``login`` / ``password`` — basic auth for an MLflow server; ``extra.token`` — bearer token.
* ``extra.registry_uri`` — registry URI when it differs from the tracking URI.
* ``extra.artifact_location`` — artifact root for experiments created on a SQLite/PostgreSQL backend.

Secrets go to MLflow through its environment variables inside :meth:`MlflowHook.activate` only; they
are never logged, templated or pushed to XCom.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from airflow_mlpipe.core.deps import require
from airflow_mlpipe.core.storage import artifact_root, local_path


class MlflowHook(BaseHook):
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

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port"],
            "relabeling": {
                "host": "Tracking URI",
                "login": "Username (basic auth)",
                "password": "Password (basic auth)",
            },
            "placeholders": {
                "host": "http://127.0.0.1:5000 — empty: SQLite under the artifact root",
                "extra": '{"registry_uri": "", "token": "", "artifact_location": ""}',
            },
        }

    @cached_property
    def connection(self) -> Any | None:
        try:
            return self.get_connection(self.mlflow_conn_id)
        except Exception:  # AirflowNotFoundException: no connection → embedded default
            return None

    @cached_property
    def settings(self) -> dict[str, Any]:
        """Tracking URI, registry URI, artifact location and credentials (not for logging)."""
        conn = self.connection
        extra = (conn.extra_dejson if conn is not None else {}) or {}
        tracking = (conn.host if conn is not None else None) or ""
        if not tracking:
            root = artifact_root() / "mlflow"
            local = local_path(root)
            if local is None:
                raise ValueError("The embedded MLflow default needs a local artifact root; set a tracking URI.")
            os.makedirs(local, exist_ok=True)
            tracking = f"sqlite:///{local}/mlflow.db"
            extra.setdefault("artifact_location", f"file://{local}/artifacts")
        return {
            "tracking_uri": tracking,
            "registry_uri": extra.get("registry_uri") or tracking,
            "artifact_location": extra.get("artifact_location") or None,
            "username": conn.login if conn is not None else None,
            "password": conn.password if conn is not None else None,
            "token": extra.get("token"),
        }

    @property
    def tracking_uri(self) -> str:
        return str(self.settings["tracking_uri"])

    @property
    def registry_uri(self) -> str:
        return str(self.settings["registry_uri"])

    @contextlib.contextmanager
    def activate(self) -> Iterator[Any]:
        """Point the ``mlflow`` module at this connection for the duration of the block; yield it."""
        mlflow = require("mlflow")
        s = self.settings
        env = {
            "MLFLOW_TRACKING_USERNAME": s["username"],
            "MLFLOW_TRACKING_PASSWORD": s["password"],
            "MLFLOW_TRACKING_TOKEN": s["token"],
        }
        saved = {k: os.environ.get(k) for k in env}
        try:
            for k, v in env.items():
                if v:
                    os.environ[k] = v
            mlflow.set_tracking_uri(s["tracking_uri"])
            mlflow.set_registry_uri(s["registry_uri"])
            yield mlflow
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def get_client(self) -> Any:
        """An ``mlflow.MlflowClient`` bound to this connection's tracking and registry URIs."""
        require("mlflow")
        from mlflow import MlflowClient

        with self.activate():
            return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    def get_or_create_experiment(self, name: str) -> str:
        """The experiment id of ``name``, creating it (with the configured artifact location)."""
        client = self.get_client()
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        return str(client.create_experiment(name, artifact_location=self.settings["artifact_location"]))

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.get_client().search_experiments(max_results=1)
        except Exception as exc:
            return False, f"MLflow at {self.tracking_uri} is not reachable: {exc}"
        return True, f"Connected to MLflow at {self.tracking_uri}"
