"""Metrics per task type: the catalog (names and which direction is better) and their computation.

The catalog is plain data so configuration can be validated at parse time; scikit-learn and numpy
are imported only when metrics are computed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.core.conventions import TaskType
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.exceptions import ConfigError

if TYPE_CHECKING:
    import numpy as np

HIGHER = "higher"
LOWER = "lower"

#: metric name -> which direction is better, per task type
CATALOG: dict[TaskType, dict[str, str]] = {
    TaskType.CLASSIFICATION: {
        "accuracy": HIGHER,
        "precision": HIGHER,
        "recall": HIGHER,
        "f1": HIGHER,
        "roc_auc": HIGHER,
        "log_loss": LOWER,
    },
    TaskType.REGRESSION: {"rmse": LOWER, "mae": LOWER, "r2": HIGHER},
}

_PROBA_METRICS = ("roc_auc", "log_loss")


def direction(task_type: TaskType | str, metric: str) -> str:
    """``"higher"`` or ``"lower"``: which values of ``metric`` are better.

    :raises ConfigError: the metric does not exist for the task type.
    """
    check_metric(task_type, metric)
    return CATALOG[TaskType.parse(task_type)][metric]


def check_metric(task_type: TaskType | str, metric: str) -> None:
    """Raise :class:`ConfigError` when ``metric`` is not defined for ``task_type``."""
    kind = TaskType.parse(task_type)
    if metric not in CATALOG[kind]:
        raise ConfigError(
            f"Metric {metric!r} does not exist for {kind.value} models; use one of {sorted(CATALOG[kind])}."
        )


def improvement(task_type: TaskType | str, metric: str, new: float, old: float) -> float:
    """How much better ``new`` is than ``old`` (positive = better), whatever the metric's direction."""
    return new - old if direction(task_type, metric) == HIGHER else old - new


@dataclasses.dataclass
class Predictions:
    """What a model predicted on the holdout.

    :param y_pred: predicted labels (classification) or values (regression).
    :param proba: class probabilities, columns in the order of ``classes``; ``None`` when the model
        has no ``predict_proba``.
    :param classes: the class labels the model knows (classification), else ``None``.
    """

    y_pred: np.ndarray
    proba: np.ndarray | None = None
    classes: list[Any] | None = None
    proba_unavailable: str | None = None

    def subset(self, mask: np.ndarray) -> Predictions:
        return Predictions(
            y_pred=self.y_pred[mask],
            proba=None if self.proba is None else self.proba[mask],
            classes=self.classes,
            proba_unavailable=self.proba_unavailable,
        )


def predict(model: Any, features: Any, task_type: TaskType | str) -> Predictions:
    """Run ``model`` on the feature frame; collect probabilities for classifiers that have them."""
    np = require("numpy")
    y_pred = np.asarray(model.predict(features))
    if TaskType.parse(task_type) is TaskType.REGRESSION:
        return Predictions(y_pred=y_pred.astype(float))
    raw = getattr(model, "classes_", None)
    classes = list(raw) if raw is not None and len(raw) else None
    # hasattr honours scikit-learn's available_if (e.g. SVC(probability=False) has no predict_proba).
    if not hasattr(model, "predict_proba"):
        return Predictions(
            y_pred=y_pred,
            classes=classes,
            proba_unavailable=f"{type(model).__name__} has no predict_proba",
        )
    proba = np.asarray(model.predict_proba(features), dtype=float)
    if classes is None:
        return Predictions(y_pred=y_pred, proba_unavailable="the model does not expose classes_")
    return Predictions(y_pred=y_pred, proba=proba, classes=classes)


@dataclasses.dataclass
class MetricValues:
    """Computed metrics and, for those that could not be computed, the reason."""

    values: dict[str, float]
    unavailable: dict[str, str]

    def get(self, metric: str) -> float | None:
        return self.values.get(metric)


def compute(
    task_type: TaskType | str,
    y_true: Sequence[Any] | np.ndarray,
    preds: Predictions,
    *,
    positive_label: Any = None,
    only: Iterable[str] | None = None,
) -> MetricValues:
    """Compute the catalog's metrics for ``task_type`` (or ``only`` those named).

    Classification uses binary averaging when there are at most two classes (positive class:
    ``positive_label`` or the model's last class, as scikit-learn's ``predict_proba[:, 1]``) and
    macro averaging over the classes present in ``y_true`` otherwise (a class a slice or a small
    holdout lacks has no recall to average, so it does not count as 0); ROC AUC is one-vs-rest for
    multiclass. Metrics that cannot be computed (no ``predict_proba``, a single class present …)
    are reported in ``unavailable``.
    """
    kind = TaskType.parse(task_type)
    names = list(only) if only is not None else list(CATALOG[kind])
    for name in names:
        check_metric(kind, name)
    np = require("numpy")
    truth = np.asarray(y_true)
    if kind is TaskType.REGRESSION:
        return _regression(truth.astype(float), preds.y_pred.astype(float), names)
    return _classification(truth, preds, names, positive_label)


def _regression(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> MetricValues:
    skm = require("sklearn.metrics")
    np = require("numpy")
    out: dict[str, float] = {}
    missing: dict[str, str] = {}
    for name in names:
        if name == "rmse":
            out[name] = float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
        elif name == "mae":
            out[name] = float(skm.mean_absolute_error(y_true, y_pred))
        elif name == "r2":
            if len(y_true) < 2:
                missing[name] = "R² needs at least two rows"
            else:
                out[name] = float(skm.r2_score(y_true, y_pred))
    return MetricValues(out, missing)


def class_labels(y_true: np.ndarray, preds: Predictions) -> list[Any]:
    """The label set: the model's classes, else every label seen in truth or prediction."""
    if preds.classes:
        return list(preds.classes)
    np = require("numpy")
    return list(np.unique(np.concatenate([y_true, preds.y_pred])))


def positive_class(labels: list[Any], positive_label: Any) -> Any:
    if positive_label is None:
        return labels[-1]
    for label in labels:
        if label == positive_label or str(label) == str(positive_label):
            return label
    raise ConfigError(f"positive_label {positive_label!r} is not one of the model's classes {labels}.")


def _classification(
    y_true: np.ndarray, preds: Predictions, names: list[str], positive_label: Any
) -> MetricValues:
    skm = require("sklearn.metrics")
    np = require("numpy")
    labels = class_labels(y_true, preds)
    binary = len(labels) <= 2
    out: dict[str, float] = {}
    missing: dict[str, str] = {}
    avg: dict[str, Any]
    if binary:
        pos = positive_class(labels, positive_label)
        avg = {"average": "binary", "pos_label": pos}
    else:
        pos = None
        seen = set(y_true.tolist())
        avg = {"average": "macro", "labels": [label for label in labels if label in seen] or labels}
    y_pred = preds.y_pred
    for name in names:
        if name in _PROBA_METRICS and preds.proba is None:
            missing[name] = f"{name} not available: {preds.proba_unavailable or 'no probabilities'}"
            continue
        try:
            if name == "accuracy":
                out[name] = float(skm.accuracy_score(y_true, y_pred))
            elif name == "precision":
                out[name] = float(skm.precision_score(y_true, y_pred, zero_division=0, **avg))
            elif name == "recall":
                out[name] = float(skm.recall_score(y_true, y_pred, zero_division=0, **avg))
            elif name == "f1":
                out[name] = float(skm.f1_score(y_true, y_pred, zero_division=0, **avg))
            elif name == "roc_auc":
                assert preds.proba is not None
                if len(np.unique(y_true)) < 2:
                    missing[name] = "roc_auc not available: only one class present in the labels"
                elif binary:
                    score = preds.proba[:, labels.index(pos)]
                    out[name] = float(skm.roc_auc_score(y_true == pos, score))
                else:
                    out[name] = float(
                        skm.roc_auc_score(y_true, preds.proba, multi_class="ovr", labels=labels)
                    )
            elif name == "log_loss":
                assert preds.proba is not None
                out[name] = float(skm.log_loss(y_true, preds.proba, labels=labels))
        except ValueError as exc:  # e.g. a class absent from the holdout, labels the model never saw
            missing[name] = f"{name} not available: {exc}"
    return MetricValues(out, missing)
