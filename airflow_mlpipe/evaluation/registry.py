"""The gate's view of the model registry: resolve aliases, load versions, check holdout fit."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.core.conventions import TAG_FEATURES, TAG_LABEL, TAG_TASK_TYPE
from airflow_mlpipe.core.models import input_columns, load_sklearn_model
from airflow_mlpipe.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

#: MLflow signature type -> numpy dtype kinds a holdout column may have (int → double is safe).
_COMPATIBLE_KINDS = {
    "double": "fiub",
    "float": "fiub",
    "long": "iub",
    "integer": "iub",
    "boolean": "b",
    "string": "OUS",
    "binary": "OS",
    "datetime": "M",
}


@dataclasses.dataclass
class LoadedModel:
    """A registered model version, loaded, with what the gate needs to score it."""

    name: str
    version: str
    model: Any
    features: list[str]
    input_types: dict[str, str]
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def version_by_alias(client: Any, name: str, alias: str) -> str | None:
    """The version the alias points at, or ``None`` when the alias is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise


def version_exists(client: Any, name: str, version: str) -> bool:
    """Whether ``name`` has a version ``version`` (a missing model is no error either)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, str(version))
    except MlflowException as exc:
        if _not_found(exc):
            return False
        raise
    return True


def _not_found(exc: Exception) -> bool:
    code = str(getattr(exc, "error_code", ""))
    return code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(exc).lower()


def load_version(client: Any, name: str, version: str, *, trusted: bool = True) -> LoadedModel:
    """Load ``name``/``version`` with the sklearn flavor (``predict_proba`` stays available).

    Feature columns come from the logged signature, else the ``mlpipe.features`` tag.
    """
    mv = client.get_model_version(name, version)
    uri = f"models:/{name}/{version}"
    tags = dict(mv.tags or {})
    columns = input_columns(uri)
    if columns is not None:
        features = [c for c, _ in columns]
        types = dict(columns)
    elif tags.get(TAG_FEATURES):
        features = list(json.loads(tags[TAG_FEATURES]))
        types = {}
    else:
        raise ConfigError(
            f"Model {uri} has neither a named input signature nor a {TAG_FEATURES!r} tag; "
            "log it with a signature inferred from a DataFrame."
        )
    model = load_sklearn_model(uri, trusted=trusted)
    return LoadedModel(
        name=name, version=str(version), model=model, features=features, input_types=types, tags=tags
    )


def task_type_and_label(challenger: LoadedModel, task_type: str | None, label: str | None) -> tuple[str, str]:
    """Configuration wins; otherwise the challenger's tags decide."""
    task_type = task_type or challenger.tags.get(TAG_TASK_TYPE)
    label = label or challenger.tags.get(TAG_LABEL)
    if not task_type:
        raise ConfigError(
            f"Cannot tell the task type of {challenger.uri}: set task_type in the gate config or the "
            f"{TAG_TASK_TYPE!r} tag on the model version."
        )
    if not label:
        raise ConfigError(
            f"Cannot tell the label column for {challenger.uri}: set label in the gate config or the "
            f"{TAG_LABEL!r} tag on the model version."
        )
    return task_type, label


def check_holdout(frame: pd.DataFrame, model: LoadedModel, role: str) -> None:
    """Raise :class:`DataError` when the holdout does not match the model's logged input signature."""
    missing = [c for c in model.features if c not in frame.columns]
    if missing:
        raise DataError(
            f"The holdout does not match the {role} {model.uri}: missing feature column(s) {missing} "
            f"(the model's signature expects {model.features})."
        )
    wrong = []
    for column, kind in model.input_types.items():
        allowed = _COMPATIBLE_KINDS.get(kind)
        dtype = frame[column].dtype
        if allowed and getattr(dtype, "kind", "O") not in allowed:
            wrong.append(f"{column}: holdout has {dtype}, signature expects {kind}")
    if wrong:
        raise DataError(f"The holdout does not match the {role} {model.uri}'s signature: " + "; ".join(wrong))
