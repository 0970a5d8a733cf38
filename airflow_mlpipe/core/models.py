"""Loading registered scikit-learn models and reading their signatures (every stage that scores).

MLflow 3.17 refuses to deserialize any model — skops included, because a model's skops allow-list
is read from the model itself — unless ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true``. Models in this
pipeline's registry are produced by its own training stage, so stages that load them opt in, for
the duration of the load only, through :func:`load_sklearn_model` (``trusted=True``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from airflow_mlpipe.core.deps import require

_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
_env_lock = threading.Lock()


@contextlib.contextmanager
def trusted_deserialization(trusted: bool = True) -> Iterator[None]:
    """Allow MLflow to deserialize models inside the block (restores the previous setting)."""
    if not trusted:
        yield
        return
    with _env_lock:
        saved = os.environ.get(_ENV)
        os.environ[_ENV] = "true"
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop(_ENV, None)
            else:
                os.environ[_ENV] = saved


def load_sklearn_model(model_uri: str, *, trusted: bool = True) -> Any:
    """Load the scikit-learn object behind ``model_uri`` (``models:/name/version`` …).

    The tracking/registry URIs must already be active (``MlflowHook.activate()``).

    :param trusted: allow deserialization (the registry is this pipeline's own); with ``False``
        MLflow's own setting decides.
    """
    mlflow_sklearn = require("mlflow.sklearn")
    with trusted_deserialization(trusted):
        return mlflow_sklearn.load_model(model_uri)


def input_columns(model_uri: str) -> list[tuple[str, str]] | None:
    """The model signature's input columns as ``(name, mlflow type)``; ``None`` without a signature
    or with an unnamed (tensor) signature."""
    models = require("mlflow.models")
    info = models.get_model_info(model_uri)
    signature = info.signature
    if signature is None or signature.inputs is None or not signature.inputs.has_input_names():
        return None
    out: list[tuple[str, str]] = []
    for spec in signature.inputs.inputs:
        kind = getattr(spec.type, "name", None) or str(spec.type)
        out.append((str(spec.name), str(kind)))
    return out
