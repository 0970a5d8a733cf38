"""The prediction log: what a serving path predicted, for whom and when, joined later with labels.

**Where.** Plain parquet files under one directory (``monitoring.prediction_log.uri``, usually
under the artifact root): ``<uri>/<YYYY-MM-DD>/<time>-<random>.parquet``, one file per write (a
batch-scoring run, a stream chunk, a few seconds of HTTP requests). Each file is written under a
temporary name and renamed, so a reader never sees half a write, and writers never share a file, so
no locking is needed. The format is defined once, in :mod:`airflow_mlpipe.monitoring.log_parts`.

**Columns.** The entity keys, the event time of the prediction (``timestamp_column``: the
request's, else when the prediction was made), ``prediction``, ``score`` (the positive-class
probability of a binary classifier, else null), ``model_version`` and ``logged_at``.

**The join** (:func:`join_labels`). Labels arrive later than predictions — hours or days. A label
judges the latest prediction of its key made at or before the label's time and at most
``label_delay_seconds`` before it. A prediction younger than the delay that has no label yet is
*pending* and not judged; an older one without a label is *missing* its label and not judged
either (a missing label is not a wrong prediction). Duplicates: the same prediction logged twice
(same keys and event time, e.g. a retried write) counts once, the latest write winning; the same
label delivered twice (same keys and label time) counts once, the last row winning; two
predictions before one label are judged once, by their latest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.monitoring import PredictionLogConfig, QualityConfig
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.core.storage import local_path, resolve
from airflow_mlpipe.exceptions import ConfigError, DataError
from airflow_mlpipe.monitoring.log_parts import LOGGED_AT, MODEL_VERSION, PREDICTION, SCORE, write_part

if TYPE_CHECKING:
    import pandas as pd

#: the label column of a joined frame (whatever the label table calls it)
LABEL = "label"


def log_directory(uri: str) -> str:
    """The absolute local directory of the log at ``uri`` (a local path or ``file://`` URI)."""
    local = local_path(resolve(uri))
    if local is None:
        raise ConfigError(f"The prediction log is a local directory in this version; got {uri!r}.")
    return os.path.abspath(local)


def write_log(
    frame: pd.DataFrame,
    uri: str,
    *,
    keys: list[str],
    model_version: str,
    timestamp_column: str = "event_timestamp",
    prediction_column: str = PREDICTION,
    score_column: str | None = None,
    now: dt.datetime | None = None,
) -> str | None:
    """Append the predictions in ``frame`` to the log at ``uri``; the path written (``None``: no rows).

    ``frame`` holds ``keys``, the predictions and, when present, ``timestamp_column`` (else the
    time of writing is the event time) and ``score_column``.
    """
    pd = require("pandas")
    missing = [c for c in [*keys, prediction_column] if c not in frame.columns]
    if missing:
        raise DataError(
            f"Cannot log predictions without column(s) {missing}; the frame has {list(frame.columns)}."
        )
    if frame.empty:
        return None
    now = now or dt.datetime.now(dt.UTC)
    stamp = pd.Timestamp(now)
    out = frame[list(keys)].copy()
    out[timestamp_column] = (
        pd.to_datetime(frame[timestamp_column], utc=True) if timestamp_column in frame.columns else stamp
    )
    out[PREDICTION] = frame[prediction_column].to_numpy()
    out[SCORE] = frame[score_column].astype(float).to_numpy() if score_column else float("nan")
    out[MODEL_VERSION] = str(model_version)
    return write_part(out, log_directory(uri), now)


def read_log(uri: str) -> pd.DataFrame:
    """Every logged prediction (an empty frame when nothing was logged yet)."""
    pd = require("pandas")
    root = log_directory(uri)
    parts = sorted(
        os.path.join(d, f)
        for d, _, files in os.walk(root)
        for f in files
        if f.endswith(".parquet") and not f.startswith(".")
    )
    if not parts:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def read_labels(uri: str) -> pd.DataFrame:
    """The label table: one parquet/CSV file, or every such file of a directory."""
    from airflow_mlpipe.core.datasets import read_table

    pd = require("pandas")
    path = resolve(uri)
    local = local_path(path)
    if local is not None and os.path.isdir(local):
        files = sorted(
            f for f in os.listdir(local) if f.endswith((".parquet", ".csv")) and not f.startswith(".")
        )
        if not files:
            return pd.DataFrame()
        return pd.concat([read_table(os.path.join(local, f)) for f in files], ignore_index=True)
    return read_table(uri)


def join_labels(
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    cfg: PredictionLogConfig,
    *,
    as_of: dt.datetime,
    model_version: str | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Logged predictions with the labels known at ``as_of`` (see the module docstring).

    :param model_version: judge only this version's predictions (the one serving now).
    :return: the judged rows (keys, event time, ``prediction``, ``score``, ``label``,
        ``model_version``) and counts: ``predictions``, ``judged``, ``pending``, ``missing_label``,
        ``duplicate_predictions``, ``duplicate_labels``, ``superseded``, ``labels_not_yet_known``.
    """
    pd = require("pandas")
    keys, ts = list(cfg.keys), cfg.timestamp_column
    label_ts, label_col = cfg.label_timestamp_column, cfg.label_column
    now = (
        pd.Timestamp(as_of).tz_convert("UTC") if pd.Timestamp(as_of).tzinfo else pd.Timestamp(as_of, tz="UTC")
    )
    _require(predictions, [*keys, ts, PREDICTION, MODEL_VERSION], "prediction log")
    _require(labels, [*keys, label_ts, label_col], f"label table {cfg.labels_uri}")
    stats: dict[str, Any] = {"as_of": now.isoformat()}

    preds = predictions.copy()
    preds[ts] = pd.to_datetime(preds[ts], utc=True)
    if model_version is not None:
        preds = preds[preds[MODEL_VERSION].astype(str) == str(model_version)]
    preds = preds[preds[ts] <= now]
    if cfg.lookback_seconds is not None:
        preds = preds[preds[ts] >= now - pd.Timedelta(seconds=cfg.lookback_seconds)]
    order = [LOGGED_AT] if LOGGED_AT in preds.columns else []
    preds = preds.sort_values([ts, *order], kind="stable")
    before = len(preds)
    preds = preds.drop_duplicates([*keys, ts], keep="last")
    stats["duplicate_predictions"] = before - len(preds)
    stats["predictions"] = len(preds)

    labs = labels[[*keys, label_ts, label_col]].copy()
    labs[label_ts] = pd.to_datetime(labs[label_ts], utc=True)
    known = labs[label_ts] <= now
    stats["labels_not_yet_known"] = int((~known).sum())
    labs = labs[known & labs[label_col].notna()]
    before = len(labs)
    labs = labs.drop_duplicates([*keys, label_ts], keep="last")
    stats["duplicate_labels"] = before - len(labs)

    preds = preds.reset_index(drop=True)
    preds["_row"] = preds.index
    # Each label looks back for the latest prediction of its key within the label delay.
    matched = pd.merge_asof(
        labs.sort_values(label_ts, kind="stable"),
        preds[[*keys, ts, "_row"]].sort_values(ts, kind="stable"),
        left_on=label_ts,
        right_on=ts,
        by=keys,
        direction="backward",
        tolerance=pd.Timedelta(seconds=cfg.label_delay_seconds),
    ).dropna(subset=["_row"])
    matched["_row"] = matched["_row"].astype("int64")
    # Two labels for one prediction (a later label of the same key within the delay): the earliest
    # label after the prediction is its outcome.
    matched = matched.sort_values(label_ts, kind="stable").drop_duplicates("_row", keep="first")
    judged = preds.merge(matched[["_row", label_col]], on="_row", how="inner")
    judged = judged.rename(columns={label_col: LABEL}) if label_col != LABEL else judged

    unjudged = preds[~preds["_row"].isin(judged["_row"])]
    young = unjudged[ts] > now - pd.Timedelta(seconds=cfg.label_delay_seconds)
    # An older prediction whose label went to a newer prediction of the same key was superseded,
    # not left without a label.
    old = unjudged[~young][[*keys, ts, "_row"]]
    near = old.merge(matched[[*keys, label_ts]], on=keys, how="inner")
    lag = near[label_ts] - near[ts]
    superseded = near[(lag >= pd.Timedelta(0)) & (lag <= pd.Timedelta(seconds=cfg.label_delay_seconds))]
    n_superseded = int(superseded["_row"].nunique())
    stats.update(
        judged=len(judged),
        pending=int(young.sum()),
        superseded=n_superseded,
        missing_label=len(old) - n_superseded,
    )
    columns = [*keys, ts, PREDICTION, SCORE, LABEL, MODEL_VERSION]
    judged = judged.drop(columns="_row")
    if SCORE not in judged.columns:
        judged[SCORE] = float("nan")
    return judged[columns].reset_index(drop=True), stats


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"The {what} lacks column(s) {missing}; it has {list(frame.columns)}.")


def logged_quality(
    log: PredictionLogConfig,
    quality: QualityConfig,
    baseline: Mapping[str, Any],
    *,
    as_of: dt.datetime,
    model_version: str | None = None,
) -> dict[str, Any]:
    """The serving model's live quality from its logged predictions and the labels known at
    ``as_of``, judged by :func:`airflow_mlpipe.monitoring.quality.check_quality` against ``baseline``.

    ``quality``'s column names are replaced by the joined frame's (``label``, ``prediction`` and,
    when it names a score column, ``score``). The result also has the join's counts (``join``).
    """
    from airflow_mlpipe.monitoring.quality import check_quality

    cfg = dataclasses.replace(
        quality,
        label_column=LABEL,
        prediction_column=PREDICTION,
        score_column=SCORE if quality.score_column else None,
    )
    predictions = read_log(log.uri)
    labels = read_labels(log.labels_uri)
    if predictions.empty or labels.empty:
        nothing = f"no predictions logged yet under {log.uri}" if predictions.empty else "no labels yet"
        return {
            "judged": False,
            "degraded": False,
            "labelled_rows": 0,
            "metrics": {},
            "reason": nothing,
            "join": {"predictions": len(predictions)},
            "model_version": model_version,
        }
    joined, stats = join_labels(predictions, labels, log, as_of=as_of, model_version=model_version)
    result = check_quality(joined, cfg, baseline)
    result.update(join=stats, model_version=model_version, source="prediction_log", log_uri=log.uri)
    return result
