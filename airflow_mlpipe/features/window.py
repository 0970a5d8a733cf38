"""Choose the rows a model learns from and the rows it is judged on, by event time.

Both choices are made on the entity/label table *before* the point-in-time join, so a row's
features are still those known at its own timestamp. The holdout is cut from the windowed rows and
removed from training: the gate never scores a model on rows it was fitted on. By default the
holdout is the newest slice, so "better" means better on the most recent data (see
``docs/concepts/training-data.md``).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.features import HoldoutConfig, TrainingWindowConfig
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.exceptions import DataError

if TYPE_CHECKING:
    import pandas as pd


def batch_ids(frame: pd.DataFrame, timestamp_column: str, batch_column: str | None) -> pd.Series:
    """The batch of every row: ``batch_column`` when given, else the UTC day of its timestamp."""
    if batch_column:
        if batch_column not in frame.columns:
            raise DataError(
                f"Batch column {batch_column!r} is not in the entity table; its columns are {list(frame.columns)}."
            )
        return frame[batch_column]
    return frame[timestamp_column].dt.floor("D")


def _newest(ids: pd.Series, count: int) -> pd.Series:
    keep = sorted(ids.dropna().unique())[-count:]
    return ids.isin(keep)


def window_mask(
    frame: pd.DataFrame,
    timestamp_column: str,
    cfg: TrainingWindowConfig,
    drift_since: dt.datetime | None = None,
) -> tuple[pd.Series, dict[str, Any]]:
    """Which rows of ``frame`` (UTC timestamps) the window keeps, and a lineage record of it.

    :param drift_since: start of the batch that drifted, when drift started this run.
    """
    pd = require("pandas")
    ts = frame[timestamp_column]
    mode = cfg.mode
    if mode == "auto":
        mode = "since_drift" if drift_since is not None else "all"
    if mode == "last_days":
        keep = ts > ts.max() - pd.Timedelta(days=float(cfg.days or 0))
    elif mode == "last_batches":
        keep = _newest(batch_ids(frame, timestamp_column, cfg.batch_column), int(cfg.batches or 0))
    elif mode == "since_drift" and drift_since is not None:
        keep = ts >= pd.Timestamp(drift_since).tz_convert("UTC")
    else:
        keep = pd.Series(True, index=frame.index)
    widened = False
    if int(keep.sum()) < min(cfg.min_rows, len(frame)):
        cutoff = ts.sort_values().iloc[len(frame) - cfg.min_rows] if cfg.min_rows <= len(frame) else ts.min()
        keep = keep | (ts >= cutoff)
        widened = True
    if not keep.any():
        raise DataError(
            f"The training window ({mode}) selects none of the {len(frame)} rows; set "
            "training_window.min_rows to fall back on the newest rows."
        )
    record = {
        "mode": mode,
        "configured_mode": cfg.mode,
        "drift_since": drift_since.isoformat() if drift_since is not None else None,
        "start": ts[keep].min().isoformat(),
        "end": ts[keep].max().isoformat(),
        "rows": int(keep.sum()),
        "rows_available": len(frame),
        "widened_to_min_rows": widened,
    }
    return keep, record


def holdout_mask(
    frame: pd.DataFrame, timestamp_column: str, cfg: HoldoutConfig, batch_column: str | None
) -> pd.Series:
    """Which rows of ``frame`` are held out for evaluation (the rest is training data).

    Rows that are identical (duplicates) or share the cut-off timestamp fall on one side only, so
    no training row reappears in the holdout.
    """
    pd = require("pandas")
    if len(frame) < 2:
        raise DataError(f"{len(frame)} row(s) cannot be split into training data and a holdout.")
    ts = frame[timestamp_column]
    if cfg.method == "random":
        np = require("numpy")
        groups = pd.util.hash_pandas_object(frame, index=False)
        unique = groups.unique()
        size = max(1, round(cfg.fraction * len(unique)))
        chosen = np.random.default_rng(cfg.seed).choice(unique, size=size, replace=False)
        held = groups.isin(chosen)
    elif cfg.batches:
        held = _newest(batch_ids(frame, timestamp_column, batch_column), cfg.batches)
    else:
        size = max(1, round(cfg.fraction * len(frame)))
        held = ts >= ts.sort_values().iloc[len(frame) - size]
    if held.all() or not held.any():
        raise DataError(
            f"The {cfg.method} holdout leaves {'no' if held.all() else 'every'} row for training "
            f"out of {len(frame)}; widen the training window or hold out less."
        )
    return held


def exclude_rows(frame: pd.DataFrame, other: pd.DataFrame, label: str | None) -> pd.Series:
    """Rows of ``frame`` that also appear in ``other`` (compared on their shared columns, label aside)."""
    pd = require("pandas")
    shared = [c for c in frame.columns if c in other.columns and c != label]
    if not shared:
        raise DataError("The holdout table shares no column with the entity table; cannot keep them apart.")
    mine = pd.util.hash_pandas_object(frame[shared], index=False)
    theirs = set(pd.util.hash_pandas_object(other[shared], index=False))
    return mine.isin(theirs)


def span(frame: pd.DataFrame, timestamp_column: str) -> dict[str, Any]:
    """Rows and time range of a table, for lineage."""
    ts = frame[timestamp_column]
    return {"rows": len(frame), "start": ts.min().isoformat(), "end": ts.max().isoformat()}
