"""Load a training set and check, before any fitting, that the estimator can learn from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.training import TrainingConfig
from airflow_mlpipe.core.conventions import TaskType
from airflow_mlpipe.core.datasets import file_digest, read_table
from airflow_mlpipe.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class TrainingSet:
    """The rows to learn from (features in model input order, then the label) and their provenance."""

    uri: str
    digest: str
    frame: pd.DataFrame
    label: str
    features: list[str]
    feature_service: str | None = None
    feature_service_version: str | None = None

    @property
    def X(self) -> pd.DataFrame:
        return self.frame[self.features]

    @property
    def y(self) -> pd.Series:
        return self.frame[self.label]


def load_training_set(source: str | Mapping[str, Any], config: TrainingConfig) -> TrainingSet:
    """Read the training set named by a URI or by the features stage's XCom result.

    The features stage result supplies the URI, digest, label, feature list and the entity and
    timestamp columns to exclude; explicit values in ``config`` take precedence.
    """
    label, features = config.label, config.features
    exclude = list(config.exclude_columns)
    digest = fs = fsv = None
    if isinstance(source, Mapping):
        if "training_set_uri" not in source:
            raise ConfigError(
                f"training_set must be a URI or the features stage result with 'training_set_uri'; got keys {sorted(source)}."
            )
        uri = str(source["training_set_uri"])
        digest = source.get("digest")
        label = label or source.get("label")
        features = features or source.get("features") or None
        exclude += list(source.get("entity_columns") or [])
        if source.get("timestamp_column"):
            exclude.append(str(source["timestamp_column"]))
        fs, fsv = source.get("feature_service"), source.get("feature_service_version")
    elif isinstance(source, str) and source:
        uri = source
    else:
        raise ConfigError(f"training_set must be a dataset URI or the features stage result, not {source!r}.")
    if not label:
        raise ConfigError("No label column: set TrainingConfig.label (the features stage result had none).")

    frame = read_table(uri)
    columns = [str(c) for c in frame.columns]
    if label not in columns:
        raise DataError(f"Training set {uri} has no label column {label!r}; its columns are {columns}.")
    if features:
        missing = [c for c in features if c not in columns]
        if missing:
            raise DataError(
                f"Training set {uri} lacks feature column(s) {missing}; its columns are {columns}."
            )
    else:
        # Event timestamps cannot be model inputs; entity ids must be excluded explicitly.
        features = [
            c
            for c in columns
            if c != label
            and c not in exclude
            and not str(frame[c].dtype).startswith(("datetime", "timedelta"))
        ]
        if not features:
            raise DataError(f"Training set {uri} has no feature columns besides the label {label!r}.")
    return TrainingSet(
        uri=uri,
        digest=str(digest or file_digest(uri)),
        frame=frame[list(features) + [label]],
        label=label,
        features=list(features),
        feature_service=str(fs) if fs else None,
        feature_service_version=str(fsv) if fsv else None,
    )


def infer_task_type(y: pd.Series) -> TaskType:
    """Regression for non-integer numbers or many distinct values, classification otherwise."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        return TaskType.CLASSIFICATION
    values = y.dropna()
    if pd.api.types.is_float_dtype(values) and not (values == values.round()).all():
        return TaskType.REGRESSION
    return (
        TaskType.CLASSIFICATION
        if values.nunique() <= max(20, int(len(values) ** 0.5))
        else TaskType.REGRESSION
    )


def check_training_set(data: TrainingSet, task_type: TaskType, config: TrainingConfig, nan_ok: bool) -> None:
    """Raise a :class:`DataError` naming the problem when fitting could not work or would mislead."""
    import pandas as pd

    y = data.y
    missing_labels = int(y.isna().sum())
    if missing_labels:
        raise DataError(
            f"Label column {data.label!r} has {missing_labels} missing value(s); drop or fill those rows."
        )
    if task_type is TaskType.CLASSIFICATION:
        counts = y.value_counts()
        if len(counts) < 2:
            raise DataError(
                f"Label column {data.label!r} has a single class ({counts.index[0]!r}); classification needs at least two."
            )
        needed = config.cv_folds or 2
        rare = {str(k): int(v) for k, v in counts.items() if v < needed}
        if rare:
            raise DataError(
                f"Classes {rare} of {data.label!r} have fewer than {needed} rows; a stratified "
                f"{'cross-validation' if config.cv_folds else 'split'} needs at least {needed} per class."
            )
    elif not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        raise DataError(f"Regression needs a numeric label; {data.label!r} has dtype {y.dtype}.")
    nans = {c: int(n) for c, n in data.X.isna().sum().items() if n}
    if nans and not nan_ok:
        raise DataError(
            f"Feature column(s) with missing values {nans} (column: count), and the estimator does not accept "
            "NaN. Impute them (e.g. a Pipeline with SimpleImputer) or use an estimator that supports missing "
            "values (e.g. HistGradientBoostingClassifier/Regressor)."
        )
