"""What the gate checks before it scores a model version: its task type and label, and that the
holdout fits the version's logged input signature (the version comes from :mod:`airflow_mlpipe.core.registry`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_mlpipe.core.conventions import TAG_LABEL, TAG_TASK_TYPE
from airflow_mlpipe.core.registry import RegistryModel
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


def task_type_and_label(
    challenger: RegistryModel, task_type: str | None, label: str | None
) -> tuple[str, str]:
    """Configuration wins; otherwise the challenger's tags decide."""
    task_type = task_type or challenger.task_type
    label = label or challenger.label
    if not task_type:
        raise ConfigError(
            f"Cannot tell the task type of {challenger.model_uri}: set task_type in the gate config or the "
            f"{TAG_TASK_TYPE!r} tag on the model version."
        )
    if not label:
        raise ConfigError(
            f"Cannot tell the label column for {challenger.model_uri}: set label in the gate config or the "
            f"{TAG_LABEL!r} tag on the model version."
        )
    return task_type, label


def check_holdout(frame: pd.DataFrame, model: RegistryModel, role: str) -> None:
    """Raise :class:`DataError` when the holdout does not match the model's logged input signature."""
    missing = [c for c in model.features if c not in frame.columns]
    if missing:
        raise DataError(
            f"The holdout does not match the {role} {model.model_uri}: missing feature column(s) {missing} "
            f"(the model's signature expects {model.features})."
        )
    wrong = []
    for column, kind in model.input_types.items():
        allowed = _COMPATIBLE_KINDS.get(kind)
        dtype = frame[column].dtype
        if allowed and getattr(dtype, "kind", "O") not in allowed:
            wrong.append(f"{column}: holdout has {dtype}, signature expects {kind}")
    if wrong:
        raise DataError(
            f"The holdout does not match the {role} {model.model_uri}'s signature: " + "; ".join(wrong)
        )
