"""Data and prediction drift between a reference and a current table, measured with Evidently 0.7.

The logic lives in plain functions so it runs the same inside an operator, a notebook or a test.
Evidently 0.7 reports no ``dataset_drift`` boolean: the dataset decision is the
``DriftedColumnsCount`` share compared with the configured drift share (``>=``, as Evidently's own
test does), and each column's decision applies the direction of its method
(:mod:`airflow_mlpipe.core.drift_methods`) to the reported statistic and threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.monitoring import DriftConfig
from airflow_mlpipe.core import drift_methods as methods
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.exceptions import DataError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def feature_columns(
    reference: pd.DataFrame, current: pd.DataFrame, cfg: DriftConfig, extra_excluded: Sequence[str] = ()
) -> list[str]:
    """The columns to compare; a column missing from either table is a :class:`DataError`."""
    excluded = {*cfg.exclude_columns, *extra_excluded}
    if cfg.prediction_column:
        excluded.add(cfg.prediction_column)
    if cfg.columns is not None:
        wanted = list(cfg.columns)
    else:
        wanted = [c for c in reference.columns if c not in excluded]
    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise DataError(
                f"The {name} table lacks column(s) {missing} that drift is measured on; "
                f"it has {list(frame.columns)}. A schema change is not 'no drift'."
            )
    if not wanted:
        raise DataError("No columns left to compare after exclusions; set DriftConfig.columns.")
    for col in wanted:
        if current[col].notna().sum() == 0:
            raise DataError(f"Column {col!r} of the current table has no values (all null): corrupt batch?")
        if reference[col].notna().sum() == 0:
            raise DataError(f"Column {col!r} of the reference table has no values (all null).")
    return wanted


def _is_categorical(series: pd.Series, forced: Sequence[str]) -> bool:
    pd = require("pandas")
    if series.name in forced:
        return True
    return bool(pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series))


def _dataset(frame: pd.DataFrame, numerical: list[str], categorical: list[str]) -> Any:
    evidently = require("evidently")
    definition = evidently.DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    return evidently.Dataset.from_pandas(frame[numerical + categorical], data_definition=definition)


def run_drift_report(reference: pd.DataFrame, current: pd.DataFrame, cfg: DriftConfig) -> tuple[Any, dict]:
    """Run Evidently on both tables; return the snapshot (for HTML) and the drift part of the summary."""
    require("evidently")
    from evidently import Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    features = feature_columns(reference, current, cfg)
    categorical = [c for c in features if _is_categorical(reference[c], cfg.categorical_columns)]
    numerical = [c for c in features if c not in categorical]
    metrics: list[Any] = [
        DataDriftPreset(
            columns=features,
            drift_share=cfg.drift_share,
            method=cfg.method,
            num_method=cfg.num_method,
            cat_method=cfg.cat_method,
            per_column_method=dict(cfg.per_column_method) if cfg.per_column_method else None,
            threshold=cfg.threshold,
            per_column_threshold=dict(cfg.per_column_threshold) if cfg.per_column_threshold else None,
        )
    ]
    pred = cfg.prediction_column
    has_prediction = bool(pred) and pred in reference.columns and pred in current.columns
    if has_prediction:
        assert pred is not None
        pred_categorical = cfg.prediction_is_categorical
        if pred_categorical is None:
            pd = require("pandas")
            pred_categorical = not pd.api.types.is_float_dtype(reference[pred])
        (categorical if pred_categorical else numerical).append(pred)
        metrics.append(
            ValueDrift(column=pred, method=cfg.prediction_method, threshold=cfg.prediction_threshold)
        )
    report = Report(metrics, include_tests=True)
    try:
        snapshot = report.run(
            current_data=_dataset(current, numerical, categorical),
            reference_data=_dataset(reference, numerical, categorical),
        )
    except (ValueError, TypeError) as exc:
        raise DataError(f"Evidently could not compare the tables: {type(exc).__name__}: {exc}") from exc
    return snapshot, _summarise(snapshot, cfg, features, pred if has_prediction else None)


def _summarise(snapshot: Any, cfg: DriftConfig, features: list[str], pred: str | None) -> dict:
    result = snapshot.dict()
    test_status: dict[str, str] = {}  # metric id -> PASS/FAIL, for methods not in our table
    for test in result.get("tests", []):
        metric_id = (test.get("metric_config") or {}).get("metric_id")
        if metric_id:
            test_status[metric_id] = str(test.get("status"))
    share: float | None = None
    columns: dict[str, dict] = {}
    prediction: dict | None = None
    for metric in result["metrics"]:
        config = metric.get("config") or {}
        kind = str(config.get("type", ""))
        if kind.endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif kind.endswith(":ValueDrift"):
            entry = _column_entry(metric, test_status)
            if config["column"] == pred and pred not in columns and pred not in features:
                prediction = {"column": pred, **entry}
            else:
                columns[config["column"]] = entry
    if share is None:  # pragma: no cover - Evidently always reports it for the preset
        raise DataError("Evidently returned no DriftedColumnsCount metric")
    drifted = [c for c in features if columns.get(c, {}).get("drifted")]
    expected_share = len(drifted) / len(features)
    if abs(expected_share - share) > 1e-9:
        # Our per-column decisions and Evidently's count disagree: report Evidently's share (it is the
        # documented dataset decision) and say so in the log, so a table/library mismatch is visible.
        log.warning(
            "Evidently drift share %.4f differs from per-column decisions %.4f", share, expected_share
        )
    return {
        "drift_detected": bool(share >= cfg.drift_share),
        "drift_share": share,
        "threshold": cfg.drift_share,
        "drifted_columns": drifted,
        "columns": columns,
        "prediction_drift": prediction,
    }


def _column_entry(metric: dict, test_status: dict[str, str]) -> dict:
    config = metric["config"]
    method = str(config.get("method"))
    statistic = float(metric["value"])
    threshold = float(config["threshold"])
    drifted = methods.is_drifted(method, statistic, threshold)
    if drifted is None:  # a method outside the table: trust Evidently's own per-column test
        drifted = test_status.get(metric["id"]) == "FAIL"
    way = methods.direction(method)
    return {
        "statistic": statistic,
        "threshold": threshold,
        "drifted": bool(drifted),
        "method": methods.canonical(method) or method,
        "direction": way.value if way else None,
    }
