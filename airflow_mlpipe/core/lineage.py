"""Lineage through Airflow Assets: what a stage consumed and produced, with metadata.

Operators declare ``outlets`` (and ``inlets``) as Airflow ``Asset`` objects, as in any DAG. When a
stage succeeds it attaches its metadata to the asset events of its outlets with
:func:`emit_asset_metadata`; a task that fails emits no asset event at all, so nothing downstream
is ever told that bad data is valid or that a blocked model was blessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_mlpipe.core.results import jsonable


def asset_outlets(outlets: Iterable[Any] | None) -> list[Any]:
    """The ``Asset`` objects among a task's outlets."""
    from airflow.sdk import Asset

    return [o for o in (outlets or []) if isinstance(o, Asset)]


def emit_asset_metadata(
    context: Mapping[str, Any], outlets: Iterable[Any] | None, extra: Mapping[str, Any]
) -> None:
    """Attach ``extra`` (made JSON-safe) to this task's asset event for every outlet ``Asset``."""
    events = context.get("outlet_events")
    if events is None:
        return
    payload = jsonable(dict(extra))
    for asset in asset_outlets(outlets):
        events[asset].extra.update(payload)


def stage_asset(stage: str, name: str) -> Any:
    """A conventional asset for a stage output: ``mlpipe://<stage>/<name>``.

    Use it in DAG files to wire asset-scheduled DAGs; it is cheap and does no I/O.
    """
    from airflow.sdk import Asset

    return Asset(name=f"mlpipe.{stage}.{name}", uri=f"mlpipe://{stage}/{name}", group="mlpipe")


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
