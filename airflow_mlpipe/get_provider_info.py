"""Provider metadata for Airflow's ``ProvidersManager`` (entry point ``apache_airflow_provider``).

``provider.yaml`` beside this module is the single source of truth; this function only mirrors it.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any


@cache
def _load() -> dict[str, Any]:
    import yaml

    from airflow_mlpipe import __version__

    data: dict[str, Any] = yaml.safe_load((Path(__file__).with_name("provider.yaml")).read_text())
    data["versions"] = [__version__]
    return data


def get_provider_info() -> dict[str, Any]:
    # A copy: Airflow's ProvidersManager adds keys (e.g. "documentation-url") to the dict it gets,
    # which would otherwise leak into the cached metadata for everyone else in the process.
    return copy.deepcopy(_load())


def ui_field_behaviour(connection_type: str) -> dict[str, Any]:
    """The connection form of ``connection_type`` from ``provider.yaml``, in the shape of
    ``BaseHook.get_ui_field_behaviour()`` (snake_case keys)."""
    for entry in get_provider_info()["connection-types"]:
        if entry["connection-type"] == connection_type:
            behaviour = entry.get("ui-field-behaviour", {})
            return {
                "hidden_fields": list(behaviour.get("hidden-fields", [])),
                "relabeling": dict(behaviour.get("relabeling", {})),
                "placeholders": dict(behaviour.get("placeholders", {})),
            }
    raise KeyError(f"connection type {connection_type!r} is not declared in provider.yaml")
