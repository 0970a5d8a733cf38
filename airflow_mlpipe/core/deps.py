"""Import optional, heavy dependencies only when a task runs.

A missing optional dependency raises only when used, with the exact install hint.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from airflow_mlpipe.core.quiet import before_import
from airflow_mlpipe.exceptions import MissingDependencyError

#: import name -> extra of ``airflow-mlpipe`` that installs it
_EXTRA_OF = {
    "great_expectations": "validation",
    "feast": "features",
    "mlflow": "training",
    "sklearn": "training",
    "skops": "training",
    "matplotlib": "training",  # evaluation report plots; a dependency of mlflow
    "bentoml": "deploy",
    "docker": "containers",  # the container deployment target (kind: docker)
    "uv": "deploy",  # `bentoml build` runs `python -m uv` from the same environment
    "evidently": "monitoring",
    "redis": "streaming",
    "pyspark": "spark",  # batch scoring with engine: spark
    "pandas": "validation",
    "pyarrow": "validation",
}


def require(module: str) -> ModuleType:
    """Import ``module`` (e.g. ``"mlflow"`` or ``"sklearn.metrics"``) or explain how to install it."""
    before_import(module.split(".", 1)[0])
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".", 1)[0]
        if exc.name is not None and exc.name.split(".", 1)[0] != top:
            raise  # the module exists but one of *its* imports is broken: show the real error
        extra = _EXTRA_OF.get(top, "all")
        raise MissingDependencyError(
            f"{module!r} is required for this task but is not installed. "
            f"Install it with: pip install 'airflow-mlpipe[{extra}]'"
        ) from exc
