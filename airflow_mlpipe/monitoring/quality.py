"""Live prediction quality, once labels have arrived, against the champion's evaluation metrics.

Degradation is direction-aware: for a metric where higher is better (accuracy, F1, R²) a *drop*
counts, for an error (RMSE, MAE) a *rise* counts. Only rows whose label has arrived are scored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.monitoring import QualityConfig
from airflow_mlpipe.core import metrics
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

#: Prefixes under which training/evaluation stages may have logged the same metric.
_BASELINE_PREFIXES = ("", "test_", "eval_", "val_", "validation_", "holdout_")


def live_metrics(y_true: Any, y_pred: Any, cfg: QualityConfig) -> dict[str, float]:
    """The configured metrics of the served predictions, computed as training and the gate do."""
    np = require("numpy")
    preds = metrics.Predictions(y_pred=np.asarray(y_pred))
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
    labelled = current[current[cfg.label_column].notna() & current[cfg.prediction_column].notna()]
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
    live = live_metrics(y_true, y_pred, cfg)
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
