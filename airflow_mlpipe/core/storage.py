"""The artifact root: one URI under which every stage writes data and artifacts.

Layout: ``<root>/<dag_id>/<run_id>/<task_id>[.<map_index>]/<name>``. The root comes from, in order,
the ``MLPIPE_ARTIFACT_ROOT`` environment variable, Airflow config ``[mlpipe] artifact_root``, and
``file://$AIRFLOW_HOME/mlpipe/artifacts``. It is read when a task runs, never at import time.

Paths are Airflow ``ObjectStoragePath`` objects, so ``file://`` works out of the box and object
storage (``s3://``, ``gs://`` …) by configuration with the matching Airflow provider installed.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


def artifact_root() -> ObjectStoragePath:
    """Return the configured artifact root (created if it is a local directory)."""
    from airflow.sdk import ObjectStoragePath

    uri = os.environ.get("MLPIPE_ARTIFACT_ROOT")
    if not uri:
        from airflow.configuration import conf

        uri = conf.get("mlpipe", "artifact_root", fallback=None)
    if not uri:
        home = os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow"))
        uri = f"file://{os.path.abspath(home)}/mlpipe/artifacts"
    path = ObjectStoragePath(to_uri(uri))
    if path.protocol in ("file", "local"):
        path.mkdir(parents=True, exist_ok=True)
    return path


def to_uri(path_or_uri: str | os.PathLike[str]) -> str:
    """Turn a plain local path into a ``file://`` URI; leave URIs with a scheme untouched."""
    text = os.fspath(path_or_uri)
    if "://" in text:
        return text
    return f"file://{os.path.abspath(os.path.expanduser(text))}"


def safe_segment(value: str) -> str:
    """Make a run id, task id … usable as one path segment on every object store."""
    cleaned = _UNSAFE.sub("_", value).strip("._")
    return cleaned or "_"


def task_path(
    dag_id: str, run_id: str, task_id: str, map_index: int | None = -1, *, create: bool = True
) -> ObjectStoragePath:
    """The directory of one task instance under the artifact root."""
    task_part = safe_segment(task_id)
    if map_index is not None and map_index >= 0:
        task_part = f"{task_part}.{map_index}"
    path = artifact_root() / safe_segment(dag_id) / safe_segment(run_id) / task_part
    if create and path.protocol in ("file", "local"):
        path.mkdir(parents=True, exist_ok=True)
    return path


def resolve(uri: str | os.PathLike[str]) -> ObjectStoragePath:
    """An ``ObjectStoragePath`` for a URI or local path."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(to_uri(uri))


def local_path(path: ObjectStoragePath) -> str | None:
    """The local filesystem path behind ``path``, or ``None`` when it is remote."""
    if path.protocol in ("file", "local"):
        return path.path
    return None
