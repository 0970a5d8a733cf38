"""Fit with a seeded holdout split or cross-validation, and compute the task type's metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_mlpipe.config.training import TrainingConfig
from airflow_mlpipe.core.conventions import TaskType
from airflow_mlpipe.exceptions import DataError


@dataclass
class FitOutcome:
    model: Any
    metrics: dict[str, float]
    n_train: int
    n_test: int


def compute_metrics(task_type: TaskType, model: Any, X: Any, y: Any) -> dict[str, float]:
    """Classification: accuracy, f1 (macro for multiclass), roc_auc (one-vs-rest), log_loss.
    Regression: rmse, mae, r2. Probability metrics are omitted for models without ``predict_proba``.
    """
    import numpy as np
    from sklearn import metrics as m

    pred = model.predict(X)
    if task_type is TaskType.REGRESSION:
        return {
            "rmse": float(np.sqrt(m.mean_squared_error(y, pred))),
            "mae": float(m.mean_absolute_error(y, pred)),
            "r2": float(m.r2_score(y, pred)),
        }
    classes = list(getattr(model, "classes_", sorted(set(y))))
    binary = len(classes) == 2
    out = {
        "accuracy": float(m.accuracy_score(y, pred)),
        "f1": float(
            m.f1_score(y, pred, pos_label=classes[1], average="binary")
            if binary
            else m.f1_score(y, pred, average="macro", labels=classes, zero_division=0)
        ),
    }
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        out["log_loss"] = float(m.log_loss(y, proba, labels=classes))
        try:
            out["roc_auc"] = float(
                m.roc_auc_score(np.asarray(y) == classes[1], proba[:, 1])
                if binary
                else m.roc_auc_score(y, proba, multi_class="ovr", labels=classes)
            )
        except ValueError:  # a class absent from this evaluation split: AUC is undefined
            pass
    return out


def _fit(estimator: Any, X: Any, y: Any, name: str) -> Any:
    try:
        return estimator.fit(X, y)
    except ValueError as exc:
        # scikit-learn reports unusable input (strings, NaN, infinities, shapes) as ValueError.
        raise DataError(f"{name} could not be fitted on this training set: {exc}") from exc


def fit_and_score(
    make_estimator: Callable[[], Any], X: Any, y: Any, task_type: TaskType, config: TrainingConfig, name: str
) -> FitOutcome:
    """Holdout: fit on the training part, score on the rest. Cross-validation: mean fold metrics, then
    refit on every row. Splits are stratified for classification and seeded with ``config.seed``.
    """
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    classification = task_type is TaskType.CLASSIFICATION
    if not config.cv_folds:
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=config.test_size, random_state=config.seed, stratify=y if classification else None
        )
        model = _fit(make_estimator(), X_tr, y_tr, name)
        return FitOutcome(model, compute_metrics(task_type, model, X_te, y_te), len(X_tr), len(X_te))
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
