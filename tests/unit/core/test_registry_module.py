"""Every stage reads and writes the model registry through one module, core/registry.py."""

from __future__ import annotations

import ast
from pathlib import Path

from airflow_mlpipe.core import registry

PACKAGE = Path(registry.__file__).resolve().parents[1]
#: MLflow client calls on registered model versions, and reading a model's signature
REGISTRY_CALLS = {
    "get_model_version",
    "get_model_version_by_alias",
    "search_model_versions",
    "set_model_version_tag",
    "delete_model_version_tag",
    "get_registered_model",
    "get_model_info",
}
#: module -> the calls it may make itself, and why
ALLOWED = {
    # the promotion lock lives in tags of the registered model (not of a version)
    "airflow_mlpipe.evaluation.promotion": {"get_registered_model"},
    # the UI plugin's Models page lists versions with its own paging
    "airflow_mlpipe.ui.loop": {"search_model_versions", "get_registered_model"},
}


def _calls() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = "airflow_mlpipe." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in REGISTRY_CALLS:
                    found.setdefault(module.removesuffix(".__init__"), set()).add(node.func.attr)
    return found


def test_only_the_registry_module_calls_the_registry():
    calls = _calls()
    assert calls.pop(registry.__name__) == REGISTRY_CALLS
    outside = {m: c - ALLOWED.get(m, set()) for m, c in calls.items()}
    assert {m: c for m, c in outside.items() if c} == {}
