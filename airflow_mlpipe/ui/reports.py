"""Files of the artifact root served over http: which path a report URL names, and its media type."""

from __future__ import annotations

import mimetypes
from typing import TYPE_CHECKING
from urllib.parse import unquote

from airflow_mlpipe.exceptions import ConfigError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


def report_parts(relative: str) -> list[str]:
    """The path segments of ``relative`` (below the artifact root), refusing escapes.

    :raises ConfigError: empty, absolute, ``..``/``.`` segments or backslashes — nothing outside
        the artifact root can be named.
    """
    text = unquote(relative)
    parts = text.split("/")
    if not text or text.startswith("/") or "\\" in text or "\x00" in text:
        raise ConfigError(f"Not a report path under the artifact root: {relative!r}")
    if any(p in ("", ".", "..") for p in parts):
        raise ConfigError(f"Report paths may not contain empty, '.' or '..' segments: {relative!r}")
    return parts


def dag_id_of(relative: str) -> str:
    """The DAG a report belongs to: the first segment (layout ``<dag_id>/<run_id>/<task>/…``)."""
    return report_parts(relative)[0]


def resolve_report(relative: str) -> ObjectStoragePath:
    """The ``ObjectStoragePath`` of a file under the artifact root (any object store)."""
    from airflow_mlpipe.core.storage import artifact_root

    path = artifact_root()
    for part in report_parts(relative):
        path = path / part
    return path


def media_type(name: str) -> str:
    """The Content-Type to serve ``name`` with (HTML as UTF-8; unknown types as bytes)."""
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
        return f"{kind}; charset=utf-8"
    return kind
