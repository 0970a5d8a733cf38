"""Lineage through Airflow Assets: what a stage consumed and produced, with metadata.

Operators declare ``outlets`` (and ``inlets``) as Airflow ``Asset`` objects, as in any DAG. When a
stage succeeds it attaches its metadata to the asset events of its outlets with
:func:`airflow_mlpipe.operators._context.emit_asset_metadata`; a task that fails emits no asset event at all, so nothing downstream
is ever told that bad data is valid or that a blocked model was blessed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def asset_outlets(outlets: Iterable[Any] | None) -> list[Any]:
    """The ``Asset`` objects among a task's outlets."""
    from airflow.sdk import Asset

    return [o for o in (outlets or []) if isinstance(o, Asset)]


def stage_asset(stage: str, name: str) -> Any:
    """A conventional asset for a stage output: ``mlpipe://<stage>/<name>``.

    Use it in DAG files to wire asset-scheduled DAGs; it is cheap and does no I/O.
    """
    from airflow.sdk import Asset

    return Asset(name=f"mlpipe.{stage}.{name}", uri=f"mlpipe://{stage}/{name}", group="mlpipe")
