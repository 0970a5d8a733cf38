"""What operators read from Airflow's task context, in one place.

Airflow's task context stops here: the stage logic below takes plain values (ids, paths, URLs) and
never sees ``context`` or ``ti`` (an import-linter contract in ``pyproject.toml`` keeps Airflow's
execution-time modules out of the stage packages).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink

from airflow_mlpipe.core.lineage import asset_outlets
from airflow_mlpipe.core.results import jsonable
from airflow_mlpipe.core.storage import task_path

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


class XComLink(BaseOperatorLink):
    """A link whose URL is the XCom value stored under :attr:`key` by :func:`push_link`.

    The task pushes the URL *before* its long work starts, so the link works in the Airflow UI even
    when the task later fails (the link a user needs most).
    """

    link_name: ClassVar[str] = "link"
    key: ClassVar[str] = "mlpipe_link"

    @property
    def name(self) -> str:
        return self.link_name

    @property
    def xcom_key(self) -> str:
        return self.key

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        value = XCom.get_value(key=self.key, ti_key=ti_key)
        return str(value) if value else ""


def push_link(context: Any, link: type[XComLink], url: str) -> None:
    """Store ``url`` for ``link`` of the running task (call before the long work starts)."""
    context["ti"].xcom_push(key=link.key, value=url)


def task_dir(context: Any, *, create: bool = True) -> ObjectStoragePath:
    """The directory of the running task instance under the artifact root."""
    ti = context["ti"]
    return task_path(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1), create=create)


def emit_asset_metadata(
    context: Mapping[str, Any], outlets: Iterable[Any] | None, extra: Mapping[str, Any]
) -> None:
    """Attach ``extra`` (made JSON-safe) to this task's asset event for every outlet ``Asset``.

    A task that fails emits no asset event at all, so nothing downstream is ever told that bad data
    is valid or that a blocked model was blessed.
    """
    events = context.get("outlet_events")
    if events is None:
        return
    payload = jsonable(dict(extra))
    for asset in asset_outlets(outlets):
        events[asset].extra.update(payload)


def airflow_ids(context: Mapping[str, Any]) -> dict[str, str]:
    """The Airflow identifiers of the running task, for MLflow tags and provenance records."""
    ti = context["ti"]
    ids = {"airflow.dag_id": ti.dag_id, "airflow.run_id": ti.run_id, "airflow.task_id": ti.task_id}
    map_index = getattr(ti, "map_index", -1)
    if map_index is not None and map_index >= 0:
        ids["airflow.map_index"] = str(map_index)
    try:
        ids["airflow.try_number"] = str(ti.try_number)
    except AttributeError:  # pragma: no cover
        pass
    dag_run = context.get("dag_run")
    bundle_version = getattr(dag_run, "bundle_version", None) if dag_run is not None else None
    if bundle_version:
        ids["airflow.bundle_version"] = str(bundle_version)
    return ids


def dag_search_paths(context: Any, task: Any = None) -> list[str]:
    """Directories to resolve a DAG-relative path in (suites, feature definitions), most specific first.

    The DAG file's directory, the DAG's ``template_searchpath`` entries, then the configured
    ``[core] dags_folder``.
    """
    dag = context.get("dag") or getattr(task, "dag", None)
    paths: list[str] = []
    fileloc = getattr(dag, "fileloc", None)
    if fileloc:
        paths.append(str(Path(fileloc).parent))
    searchpath = getattr(dag, "template_searchpath", None) or []
    paths.extend([searchpath] if isinstance(searchpath, str) else list(searchpath))
    from airflow.configuration import conf

    folder = conf.get("core", "dags_folder", fallback="")
    if folder:
        paths.append(folder)
    return paths
