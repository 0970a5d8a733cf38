"""Typed configuration of the monitoring stage: data drift, prediction quality, serving health.

Each object validates itself in ``__post_init__`` and raises :class:`~airflow_mlpipe.exceptions.ConfigError`
with a message that says what to change. They hold primitives only, so they can be deep-copied,
templated values excepted, and rebuilt from a dict (``DriftConfig(**mapping)``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_mlpipe.config.base import MappingConfig, from_mapping
from airflow_mlpipe.core import metrics as metric_catalog
from airflow_mlpipe.exceptions import ConfigError


def _fraction(name: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{name} must be a number in (0, 1], got {value!r}.")
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        raise ConfigError(f"{name} must be in {'[0' if allow_zero else '(0'}, 1], got {value!r}.")


def _names(name: str, value: Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise ConfigError(f"{name} must be a list of column names, not the string {value!r}.")
    items = tuple(value)
    bad = [v for v in items if not isinstance(v, str) or not v]
    if bad:
        raise ConfigError(f"{name} must contain non-empty column names; got {bad}.")
    if len(set(items)) != len(items):
        raise ConfigError(f"{name} lists a column twice: {list(items)}.")
    return items


@dataclasses.dataclass
class DriftConfig(MappingConfig):
    """How data drift is measured and when the dataset counts as drifted.

    :param columns: feature columns to compare (default: every column the two tables share, minus
        the prediction, label and ``exclude_columns``).
    :param exclude_columns: columns never compared (ids, timestamps).
    :param categorical_columns: columns to treat as categorical even if numeric (codes, small ints).
    :param drift_share: the dataset drifts when the share of drifted columns is ``>=`` this.
    :param method: Evidently stat test for every column (``"ks"``, ``"psi"``, ``"wasserstein"`` …);
        ``None`` lets Evidently pick per column type and size.
    :param num_method: stat test for numerical columns.
    :param cat_method: stat test for categorical columns.
    :param per_column_method: stat test per column.
    :param threshold: threshold of the stat test for every column (``None``: the method's default).
        For p-value tests a column drifts when the p-value is *below* it, for distances when the
        distance is *at or above* it.
    :param per_column_threshold: threshold per column.
    :param prediction_column: column with the model's predictions (compared separately).
    :param prediction_method: stat test for the prediction column.
    :param prediction_threshold: threshold for the prediction column.
    :param prediction_is_categorical: class labels (``True``) or continuous values (``False``);
        ``None``: categorical when the column is not a float column.
    :param important_columns: the dataset drifts as soon as any of these columns drifts, whatever
        the share (e.g. the model's most important features).
    :param column_weights: weigh columns in the share (default weight 1): the share becomes the
        drifted columns' weight over the total weight (e.g. feature importances).
    """

    columns: Sequence[str] | None = None
    exclude_columns: Sequence[str] = ()
    categorical_columns: Sequence[str] = ()
    drift_share: float = 0.5
    method: str | None = None
    num_method: str | None = None
    cat_method: str | None = None
    per_column_method: Mapping[str, str] | None = None
    threshold: float | None = None
    per_column_threshold: Mapping[str, float] | None = None
    prediction_column: str | None = None
    prediction_method: str | None = None
    prediction_threshold: float | None = None
    prediction_is_categorical: bool | None = None
    important_columns: Sequence[str] = ()
    column_weights: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        self.important_columns = _names("important_columns", self.important_columns) or ()
        if self.column_weights is not None:
            if not isinstance(self.column_weights, Mapping) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                for v in self.column_weights.values()
            ):
                raise ConfigError(
                    f"column_weights must map column names to weights >= 0, got {self.column_weights!r}."
                )
            if not any(self.column_weights.values()):
                raise ConfigError("column_weights are all zero; give at least one column a positive weight.")
            self.column_weights = {str(k): float(v) for k, v in self.column_weights.items()}
        from airflow_mlpipe.core.drift_methods import check_method

        self.columns = _names("columns", self.columns)
        if self.columns is not None and not self.columns:
            raise ConfigError("columns is empty; list the features to compare or leave it None for all.")
        self.exclude_columns = _names("exclude_columns", self.exclude_columns) or ()
        self.categorical_columns = _names("categorical_columns", self.categorical_columns) or ()
        _fraction("drift_share", self.drift_share)
        for field in ("method", "num_method", "cat_method", "prediction_method"):
            value = getattr(self, field)
            if value is not None:
                check_method(value, field)
        for col, method in (self.per_column_method or {}).items():
            check_method(method, f"per_column_method[{col!r}]")
        for field, value in [
            ("threshold", self.threshold),
            ("prediction_threshold", self.prediction_threshold),
        ]:
            if value is not None:
                _check_threshold(field, value)
        for col, value in (self.per_column_threshold or {}).items():
            _check_threshold(f"per_column_threshold[{col!r}]", value)
        if self.prediction_column is not None and self.columns and self.prediction_column in self.columns:
            raise ConfigError(
                f"prediction_column {self.prediction_column!r} is also listed in columns; "
                "prediction drift is measured separately, remove it from columns."
            )


def _check_threshold(name: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}.")


@dataclasses.dataclass
class QualityConfig:
    """When live prediction quality counts as degraded against the champion's evaluation metrics.

    :param label_column: column of the current batch holding the ground truth that has arrived.
    :param prediction_column: column holding the model's predictions for those rows.
    :param task_type: ``"classification"`` or ``"regression"``.
    :param metrics: metrics to compare, from the catalog (:mod:`airflow_mlpipe.core.metrics`) and
        computable from labels alone; default by task type.
    :param max_degradation: largest tolerated worsening, direction-aware (a drop for accuracy, a
        rise for RMSE); relative to the baseline value when ``relative`` else in metric units.
    :param relative: compare relative (``(base - live) / |base|``) instead of absolute changes.
    :param min_labelled_rows: fewer labelled rows than this → quality is not judged (``None`` result).
    :param score_column: column holding the served positive-class probability (binary
        classification); allows metrics computed from scores (``roc_auc``).
    """

    label_column: str
    prediction_column: str
    task_type: str = "classification"
    metrics: Sequence[str] | None = None
    max_degradation: float = 0.05
    relative: bool = True
    min_labelled_rows: int = 30
    score_column: str | None = None

    def __post_init__(self) -> None:
        from airflow_mlpipe.core.conventions import TaskType

        if not self.label_column or not self.prediction_column:
            raise ConfigError("QualityConfig needs label_column and prediction_column.")
        if self.label_column == self.prediction_column:
            raise ConfigError("label_column and prediction_column must be different columns.")
        task = TaskType.parse(self.task_type)
        self.task_type = task.value
        if self.metrics is None:
            self.metrics = (
                ("accuracy", "f1_macro") if task is TaskType.CLASSIFICATION else ("rmse", "mae", "r2")
            )
        self.metrics = _names("metrics", self.metrics) or ()
        if self.score_column is not None and (
            not isinstance(self.score_column, str)
            or self.score_column in (self.label_column, self.prediction_column)
        ):
            raise ConfigError(
                f"score_column={self.score_column!r} must be a column name other than the label and prediction."
            )
        if self.score_column is not None and task is not TaskType.CLASSIFICATION:
            raise ConfigError("score_column holds a class probability: it needs task_type classification.")
        # A positive-class score gives roc_auc; log_loss needs every class's probability.
        scored = {"roc_auc"} if self.score_column else set()
        from_labels = {
            m.name: m for m in metric_catalog.CATALOG.values() if not m.needs_scores or m.name in scored
        }
        unknown = [m for m in self.metrics if m not in from_labels]
        if unknown:
            hint = "" if self.score_column else " (roc_auc needs score_column)"
            raise ConfigError(
                f"Unknown quality metric(s) {unknown}; use some of {sorted(from_labels)}{hint}."
            )
        wrong = [m for m in self.metrics if from_labels[m].task_type is not task]
        if wrong:
            raise ConfigError(f"Metric(s) {wrong} do not apply to {task.value}; choose metrics of that task.")
        _check_threshold("max_degradation", self.max_degradation)
        if not isinstance(self.min_labelled_rows, int) or self.min_labelled_rows < 1:
            raise ConfigError(f"min_labelled_rows must be an integer >= 1, got {self.min_labelled_rows!r}.")

    @classmethod
    def for_prediction_log(cls, value: Mapping[str, Any] | None, where: str = "quality") -> QualityConfig:
        """The quality check of logged predictions: ``value`` without column names (the joined
        log's ``label``, ``prediction`` and, for score metrics such as ``roc_auc``, ``score``)."""
        fields = dict(value or {})
        named = sorted({"label_column", "prediction_column", "score_column"} & set(fields))
        if named:
            raise ConfigError(f"{where} judges the prediction log, whose columns are fixed; remove {named}.")
        needs_scores = any(
            m in metric_catalog.CATALOG and metric_catalog.CATALOG[m].needs_scores
            for m in fields.get("metrics") or ()
        )
        fields.update(label_column="label", prediction_column="prediction")
        if needs_scores:
            fields["score_column"] = "score"
        return from_mapping(cls, fields, where)

    @classmethod
    def from_mapping(
        cls, value: QualityConfig | Mapping[str, Any] | None, where: str | None = None
    ) -> QualityConfig | None:
        """Like every config's ``from_mapping``, except that ``None`` means no quality check."""
        return None if value is None else from_mapping(cls, value, where)


@dataclasses.dataclass
class ServingHealthConfig:
    """Thresholds on a serving endpoint's Prometheus metrics.

    :param max_latency_seconds: the latency quantile must stay at or below this.
    :param latency_quantile: which quantile of the request-duration histogram (0.95 = p95).
    :param max_error_rate: the share of 5xx responses must stay at or below this.
    :param min_requests: fewer requests than this in the window → not judged (no breach).
    :param endpoints: request paths to include (default: every path except health and metrics).
    :param metric_prefix: prefix of the metric names (BentoML: ``bentoml_service_``).
    """

    max_latency_seconds: float = 0.5
    latency_quantile: float = 0.95
    max_error_rate: float = 0.01
    min_requests: int = 1
    endpoints: Sequence[str] | None = None
    metric_prefix: str = "bentoml_service_"

    def __post_init__(self) -> None:
        _check_threshold("max_latency_seconds", self.max_latency_seconds)
        _fraction("latency_quantile", self.latency_quantile)
        _fraction("max_error_rate", self.max_error_rate, allow_zero=True)
        if not isinstance(self.min_requests, int) or self.min_requests < 0:
            raise ConfigError(f"min_requests must be an integer >= 0, got {self.min_requests!r}.")
        self.endpoints = _names("endpoints", self.endpoints)


@dataclasses.dataclass
class PredictionLogConfig(MappingConfig):
    """Where served predictions are logged, and how labels that arrive later are joined to them.

    :param uri: directory of the prediction log (parquet parts under ``<uri>/<date>/``, one per
        write); local path or ``file://`` URI.
    :param labels_uri: the label table (or a directory of label files): ``keys``, ``label_column``
        and ``label_timestamp_column``.
    :param keys: entity key columns that identify what was predicted (e.g. ``[customer_id]``).
    :param label_column: column of the label table holding the ground truth.
    :param label_timestamp_column: when a label became known. A label judges the latest prediction
        of its key made at or before it, within ``label_delay_seconds``.
    :param timestamp_column: the logged prediction's event time (the request's, else when it was made).
    :param label_delay_seconds: how long after a prediction its label may arrive. A prediction
        younger than this without a label is *pending* (not counted); an older one is *missing*
        its label; a label that comes later than this belongs to a later prediction.
    :param lookback_seconds: only predictions of the last this many seconds are judged (``None``: all).
    """

    uri: str
    labels_uri: str
    keys: Sequence[str]
    label_column: str
    label_timestamp_column: str
    timestamp_column: str = "event_timestamp"
    label_delay_seconds: float = 86400.0
    lookback_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("uri", "labels_uri", "label_column", "label_timestamp_column", "timestamp_column"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"prediction_log.{name} must be a non-empty string, got {value!r}.")
        self.keys = _names("prediction_log.keys", self.keys) or ()
        if not self.keys:
            raise ConfigError("prediction_log.keys is empty: name the entity key columns of a prediction.")
        _check_threshold("prediction_log.label_delay_seconds", self.label_delay_seconds)
        if self.lookback_seconds is not None:
            _check_threshold("prediction_log.lookback_seconds", self.lookback_seconds)
            if self.lookback_seconds <= self.label_delay_seconds:
                raise ConfigError(
                    "prediction_log.lookback_seconds must exceed label_delay_seconds, or no prediction "
                    "old enough to have its label would be judged."
                )


@dataclasses.dataclass
class PredictionLogWriterConfig(MappingConfig):
    """Where a serving path (batch scoring, the stream scorer, the HTTP service) logs its predictions:
    the writer's part of :class:`PredictionLogConfig`.

    :param uri: directory of the prediction log (as ``monitoring.prediction_log.uri``).
    :param keys: entity key columns that identify what was predicted.
    :param timestamp_column: the event time column; without a value for it, the time the prediction
        was asked for.
    """

    uri: str
    keys: Sequence[str]
    timestamp_column: str = "event_timestamp"

    def __post_init__(self) -> None:
        for name in ("uri", "timestamp_column"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"prediction_log.{name} must be a non-empty string, got {value!r}.")
        self.keys = list(_names("prediction_log.keys", self.keys) or ())
        if not self.keys:
            raise ConfigError("prediction_log.keys is empty: name the entity key columns of a prediction.")
        if self.timestamp_column in self.keys:
            raise ConfigError(f"prediction_log.timestamp_column {self.timestamp_column!r} is also a key.")

    @classmethod
    def of(cls, value: Any, where: str) -> PredictionLogWriterConfig | None:
        """From a mapping of its fields (``None``: no log; a ``null`` timestamp column: the default)."""
        if value is None:
            return None
        if isinstance(value, Mapping):
            if not (value.get("uri") and value.get("keys")):
                raise ConfigError(
                    f"{where} needs 'uri' and 'keys' (the log directory and entity key columns), "
                    f"got {dict(value)!r}."
                )
            value = {k: v for k, v in value.items() if not (k == "timestamp_column" and v is None)}
        return from_mapping(cls, value, where)
