"""Provider metadata for Airflow's ``ProvidersManager`` (entry point ``apache_airflow_provider``).

``provider.yaml`` beside this module is the single source of truth; this function only mirrors it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any


@cache
def get_provider_info() -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load((Path(__file__).with_name("provider.yaml")).read_text())
    return data
