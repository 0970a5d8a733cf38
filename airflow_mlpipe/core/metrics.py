"""The one metric catalog: names, directions, task types, averaging, and how each is computed.

Training (candidate metrics), the evaluation gate (criteria) and live monitoring (quality against
the champion) all compute metrics here, and configuration is validated against the same catalog, so
a metric name means the same number in every stage. The catalog is plain data, cheap to import at
parse time; scikit-learn and numpy are imported only when metrics are computed.
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

#: Classification averaging: the positive class when there are at most two classes, else the macro
#: average over the label set (as the gate has always computed ``f1``, ``precision``, ``recall``).
BINARY_OR_MACRO = "binary-or-macro"


@dataclasses.dataclass(frozen=True)
class Metric:
    """One entry of the catalog.

    :param name: the name used in configs, XCom summaries, MLflow metrics and registry tags.
    :param task_type: the kind of model it applies to.
    :param direction: :data:`HIGHER` or :data:`LOWER` values are better.
    :param averaging: how per-class values combine (:data:`BINARY_OR_MACRO`, ``"macro"``,
        ``"weighted"``), empty when the metric is not per class.
    :param needs_scores: computed from class probabilities, so not from labels alone (live monitoring
        has only the served predictions).
    :param in_training: reported for every training candidate.
    :param in_report: computed when no metric list is given (the gate's evaluation report); the
        variants only live monitoring asks for by name are not.
    """

    name: str
    task_type: TaskType
    direction: str
    averaging: str = ""
    needs_scores: bool = False
    in_training: bool = False
    in_report: bool = True


_C, _R = TaskType.CLASSIFICATION, TaskType.REGRESSION

#: metric name -> its definition; the only table of metrics in the package
CATALOG: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", _C, HIGHER, in_training=True),
        Metric("balanced_accuracy", _C, HIGHER, in_report=False),
        Metric("precision", _C, HIGHER, BINARY_OR_MACRO),
        Metric("recall", _C, HIGHER, BINARY_OR_MACRO),
        Metric("f1", _C, HIGHER, BINARY_OR_MACRO, in_training=True),
        Metric("f1_macro", _C, HIGHER, "macro", in_report=False),
        Metric("f1_weighted", _C, HIGHER, "weighted", in_report=False),
        Metric("roc_auc", _C, HIGHER, BINARY_OR_MACRO, needs_scores=True, in_training=True),
        Metric("log_loss", _C, LOWER, needs_scores=True, in_training=True),
        Metric("rmse", _R, LOWER, in_training=True),
        Metric("mse", _R, LOWER, in_report=False),
        Metric("mae", _R, LOWER, in_training=True),
        Metric("r2", _R, HIGHER, in_training=True),
    )
}


def names(task_type: TaskType | str, *, training: bool = False, report: bool = False) -> list[str]:
    """The catalog's metric names for ``task_type``, in catalog order.

    :param training: only those reported for every training candidate.
    :param report: only those the evaluation report computes by default.
    """
    kind = TaskType.parse(task_type)
    return [
        m.name
        for m in CATALOG.values()
        if m.task_type is kind and not (training and not m.in_training) and not (report and not m.in_report)
    ]


def direction(task_type: TaskType | str, metric: str) -> str:
    """``"higher"`` or ``"lower"``: which values of ``metric`` are better.

    :raises ConfigError: the metric does not exist for the task type.
    """
    check_metric(task_type, metric)
    return CATALOG[metric].direction


def check_metric(task_type: TaskType | str, metric: str) -> None:
    """Raise :class:`ConfigError` when ``metric`` is not defined for ``task_type``."""
    kind = TaskType.parse(task_type)
    entry = CATALOG.get(metric)
    if entry is None or entry.task_type is not kind:
        raise ConfigError(
            f"Metric {metric!r} does not exist for {kind.value} models; use one of {sorted(names(kind))}."
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
    """Compute the report metrics of the catalog for ``task_type`` (or ``only`` those named).

    Classification uses binary averaging when there are at most two classes (positive class:
    ``positive_label`` or the model's last class, as scikit-learn's ``predict_proba[:, 1]``) and
    macro averaging otherwise; ROC AUC is one-vs-rest for multiclass. Metrics that cannot be
    computed (no ``predict_proba``, a single class present …) are reported in ``unavailable``.
    """
    kind = TaskType.parse(task_type)
    wanted = list(only) if only is not None else names(kind, report=True)
    for name in wanted:
        check_metric(kind, name)
    np = require("numpy")
    truth = np.asarray(y_true)
    if kind is TaskType.REGRESSION:
        return _regression(truth.astype(float), preds.y_pred.astype(float), wanted)
    return _classification(truth, preds, wanted, positive_label)


def _regression(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> MetricValues:
    skm = require("sklearn.metrics")
    np = require("numpy")
    out: dict[str, float] = {}
    missing: dict[str, str] = {}
    for name in names:
        if name == "rmse":
            out[name] = float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
        elif name == "mse":
            out[name] = float(skm.mean_squared_error(y_true, y_pred))
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
        avg = {"average": "macro", "labels": labels}
    y_pred = preds.y_pred
    for name in names:
        if CATALOG[name].needs_scores and preds.proba is None:
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
            elif name == "balanced_accuracy":
                out[name] = float(skm.balanced_accuracy_score(y_true, y_pred))
            elif name in ("f1_macro", "f1_weighted"):
                average = CATALOG[name].averaging
                out[name] = float(
                    skm.f1_score(y_true, y_pred, average=average, labels=labels, zero_division=0)
                )
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
