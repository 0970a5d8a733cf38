"""Fit with a seeded holdout split or cross-validation, and compute the task type's metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_mlpipe.config.training import TrainingConfig
from airflow_mlpipe.core import metrics
from airflow_mlpipe.core.conventions import TaskType
from airflow_mlpipe.exceptions import DataError


@dataclass
class FitOutcome:
    model: Any
    metrics: dict[str, float]
    n_train: int
    n_test: int


def compute_metrics(task_type: TaskType, model: Any, X: Any, y: Any) -> dict[str, float]:
    """The catalog's training metrics (:func:`airflow_mlpipe.core.metrics.names` with
    ``training=True``) of ``model`` on ``X``/``y``; those that cannot be computed (no
    ``predict_proba``, a class absent from the split) are omitted.
    """
    preds = metrics.predict(model, X, task_type)
    return metrics.compute(task_type, y, preds, only=metrics.names(task_type, training=True)).values


def _fit(estimator: Any, X: Any, y: Any, name: str) -> Any:
    try:
        return estimator.fit(X, y)
    except ValueError as exc:
        # scikit-learn reports unusable input (strings, NaN, infinities, shapes) as ValueError.
        raise DataError(f"{name} could not be fitted on this training set: {exc}") from exc


def fit_and_score(
    make_estimator: Callable[[], Any], X: Any, y: Any, task_type: TaskType, config: TrainingConfig, name: str
) -> FitOutcome:
    """Holdout: fit on the training part, score on the rest (then, with ``config.refit_on_all``,
    refit on every row). Cross-validation: mean fold metrics, then refit on every row. Splits are
    stratified for classification and seeded with ``config.seed``.
    """
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    classification = task_type is TaskType.CLASSIFICATION
    if not config.cv_folds:
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=config.test_size, random_state=config.seed, stratify=y if classification else None
        )
        model = _fit(make_estimator(), X_tr, y_tr, name)
        scores = compute_metrics(task_type, model, X_te, y_te)
        if config.refit_on_all:
            # the holdout's metrics describe the procedure; the registered model learns from every row
            return FitOutcome(_fit(make_estimator(), X, y, name), scores, len(X), len(X_te))
        return FitOutcome(model, scores, len(X_tr), len(X_te))
    splitter = (StratifiedKFold if classification else KFold)(
        n_splits=config.cv_folds, shuffle=True, random_state=config.seed
    )
    folds: list[dict[str, float]] = []
    for train_idx, test_idx in splitter.split(X, y):
        fold_model = _fit(make_estimator(), X.iloc[train_idx], y.iloc[train_idx], name)
        folds.append(compute_metrics(task_type, fold_model, X.iloc[test_idx], y.iloc[test_idx]))
    names = set.intersection(*(set(f) for f in folds))
    metrics = {k: float(sum(f[k] for f in folds) / len(folds)) for k in sorted(names)}
    model = _fit(make_estimator(), X, y, name)
    return FitOutcome(model, metrics, len(X), len(X) // config.cv_folds)
