"""Same-origin URLs of the reports tasks write (for operator extra links and the UI plugin).

The links themselves, fed by an XCom the task pushes before its long work starts, are
:class:`airflow_mlpipe.operators._context.XComLink`.
"""

from __future__ import annotations

from typing import Any

#: Where the api-server mounts the provider's UI plugin app (``airflow_mlpipe.ui``) ...
UI_PREFIX = "/mlpipe"
#: ... which serves the files of the artifact root here ...
REPORTS_PREFIX = f"{UI_PREFIX}/reports/"
#: ... and the audit of a model version, rendered when asked for, here.
AUDIT_PREFIX = f"{UI_PREFIX}/audit/"


def report_url(path: Any) -> str:
    """A same-origin link to a report the task wrote under the artifact root.

    The Airflow UI shows extra links only when they are http(s), mailto or same-origin; a
    ``file://`` or ``s3://`` URI would be dropped. Reports under the artifact root are served by
    the plugin at ``<api base path>/mlpipe/reports/<path relative to the root>``; anything else keeps
    its URI (the REST API still returns it).

    :param path: an ``ObjectStoragePath`` (or URI) of the report.
    """
    from urllib.parse import quote

    from airflow_mlpipe.core.storage import artifact_root

    uri, root = str(path), str(artifact_root()).rstrip("/") + "/"
    if not uri.startswith(root):
        return uri
    return f"{base_path()}{REPORTS_PREFIX}{quote(uri[len(root) :])}"


def audit_url(model_name: str, version: str) -> str:
    """A same-origin link to the audit of ``model_name`` version ``version``, as of when it is opened.

    The plugin renders it from the registry and the Airflow metadata DB at request time, so the link
    works before anyone ran ``mlpipe audit`` and never shows a stale record.
    """
    from urllib.parse import quote

    return f"{base_path()}{AUDIT_PREFIX}{quote(model_name, safe='')}/{quote(str(version), safe='')}"


def base_path() -> str:
    """The path part of Airflow's ``[api] base_url`` (``""`` when served at the root)."""
    from urllib.parse import urlsplit

    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="") or ""
    return urlsplit(base).path.rstrip("/")
