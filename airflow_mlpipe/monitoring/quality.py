"""Live prediction quality, once labels have arrived, against the champion's evaluation metrics.

Degradation is direction-aware: for a metric where higher is better (accuracy, F1, R²) a *drop*
counts, for an error (RMSE, MAE) a *rise* counts. Only rows whose label has arrived are scored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.monitoring import QualityConfig
from airflow_mlpipe.core import metrics
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

#: Prefixes under which training/evaluation stages may have logged the same metric.
_BASELINE_PREFIXES = ("", "test_", "eval_", "val_", "validation_", "holdout_")


def live_metrics(y_true: Any, y_pred: Any, cfg: QualityConfig, scores: Any = None) -> dict[str, float]:
    """The configured metrics of the served predictions, computed as training and the gate do.

    :param scores: the served positive-class probabilities (binary classification), needed by
        score metrics (``roc_auc``). The positive class is the greater of the two classes, as in
        scikit-learn's ``predict_proba[:, 1]`` and the served ``scores``.
    """
    np = require("numpy")
    preds = metrics.Predictions(y_pred=np.asarray(y_pred))
    if scores is not None:
        classes = sorted(set(np.asarray(y_true).tolist()) | set(preds.y_pred.tolist()))
        if len(classes) > 2:
            raise DataError(
                f"A positive-class score needs two classes; labels and predictions have {classes}."
            )
        positive = np.asarray(scores, dtype=float)
        preds = metrics.Predictions(
            y_pred=preds.y_pred, proba=np.column_stack([1 - positive, positive]), classes=classes
        )
    return metrics.compute(cfg.task_type, y_true, preds, only=cfg.metrics or ()).values


def find_baseline(baseline: Mapping[str, Any], metric: str) -> float | None:
    """The baseline value of ``metric``, also under common prefixes (``test_accuracy``)."""
    for prefix in _BASELINE_PREFIXES:
        value = baseline.get(f"{prefix}{metric}")
        if value is not None:
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                return number
    return None


def degradation(live: float, base: float, higher_is_better: bool, relative: bool) -> float:
    """How much worse ``live`` is than ``base`` (positive = worse), relative when asked and possible."""
    worse_by = (base - live) if higher_is_better else (live - base)
    if relative and base != 0:
        return worse_by / abs(base)
    return worse_by


def check_quality(current: pd.DataFrame, cfg: QualityConfig, baseline: Mapping[str, Any]) -> dict[str, Any]:
    """Score the labelled rows of ``current`` and compare with ``baseline`` metrics."""
    for col in (cfg.label_column, cfg.prediction_column):
        if col not in current.columns:
            raise DataError(
                f"Quality check needs column {col!r}; the current table has {list(current.columns)}."
            )
    if cfg.score_column is not None and cfg.score_column not in current.columns:
        raise DataError(
            f"Quality check needs score column {cfg.score_column!r}; the current table has {list(current.columns)}."
        )
    present = current[cfg.label_column].notna() & current[cfg.prediction_column].notna()
    if cfg.score_column is not None:
        present &= current[cfg.score_column].notna()
    labelled = current[present]
    n = len(labelled)
    result: dict[str, Any] = {
        "judged": False,
        "degraded": False,
        "labelled_rows": n,
        "max_degradation": cfg.max_degradation,
        "relative": cfg.relative,
        "metrics": {},
    }
    if n < cfg.min_labelled_rows:
        result["reason"] = f"only {n} labelled rows (< min_labelled_rows={cfg.min_labelled_rows})"
        return result
    available = {m: find_baseline(baseline, m) for m in cfg.metrics or ()}
    if all(v is None for v in available.values()):
        raise ConfigError(
            f"No baseline value for any quality metric {list(cfg.metrics or ())}; "
            f"the baseline has {sorted(baseline)}. Pass baseline_metrics or choose matching metrics."
        )
    y_true, y_pred = labelled[cfg.label_column], labelled[cfg.prediction_column]
    if cfg.task_type == "regression":
        y_true, y_pred = y_true.astype(float), y_pred.astype(float)
    scores = labelled[cfg.score_column] if cfg.score_column is not None else None
    live = live_metrics(y_true, y_pred, cfg, scores)
    for name, value in live.items():
        base = available[name]
        higher = metrics.CATALOG[name].direction == metrics.HIGHER
        entry: dict[str, Any] = {"live": value, "baseline": base, "higher_is_better": higher}
        if base is None:
            entry.update(degradation=None, degraded=False)
        else:
            worse = degradation(value, base, higher, cfg.relative)
            entry.update(degradation=worse, degraded=bool(worse > cfg.max_degradation))
        result["metrics"][name] = entry
    result["judged"] = True
    result["degraded"] = any(e["degraded"] for e in result["metrics"].values())
    return result


def served_predictions(answers: Sequence[Mapping[str, Any]]) -> metrics.Predictions:
    """The :class:`~airflow_mlpipe.core.metrics.Predictions` of one or more ``/predict`` answers of
    the served API (concatenated in order), so a metric of served answers is computed exactly as
    training and the gate compute it; probabilities only when every answer has them."""
    np = require("numpy")
    if not answers:
        raise DataError("No served answers to score.")
    y_pred = np.asarray([p for a in answers for p in a["predictions"]])
    classes = answers[0].get("classes")
    if classes is None or any(a.get("classes") != classes or "probabilities" not in a for a in answers):
        return metrics.Predictions(
            y_pred=y_pred, proba_unavailable="the served answers carry no probabilities"
        )
    proba = np.asarray([row for a in answers for row in a["probabilities"]], dtype=float)
    return metrics.Predictions(y_pred=y_pred, proba=proba, classes=list(classes))
