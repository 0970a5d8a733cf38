"""Point-in-time correct training sets from a Feast feature service.

The entity/label table is checked before Feast sees it, because Feast's own behaviour on bad input
is silent: a missing join key fails deep inside the join, and naive timestamps are quietly taken
as UTC. Here a missing column is a :class:`DataError` naming it, and naive timestamps are refused
unless the caller declares them UTC (``naive_timestamps="utc"``); aware timestamps in any zone
are converted to UTC, which changes no instant.

Feast does not keep the entity table's row order, and its file offline store collapses rows with
equal keys and timestamp. Only the unique (keys, timestamp) pairs are sent, numbered; the result
is joined back onto every input row, so row *i* of the training set is row *i* of the input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.features import TrainingSetConfig
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.exceptions import DataError
from airflow_mlpipe.features.registry import ServiceInfo, feature_service

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

ROW_ID = "_mlpipe_row_id"


def normalise_timestamps(series: pd.Series, *, column: str, naive: str) -> pd.Series:
    """``series`` as tz-aware UTC timestamps, or a :class:`DataError` saying what is wrong."""
    pd = require("pandas")
    ptypes = pd.api.types
    if not ptypes.is_datetime64_any_dtype(series):
        if ptypes.is_numeric_dtype(series) or ptypes.is_bool_dtype(series):
            raise DataError(
                f"Timestamp column {column!r} holds {series.dtype} values, not timestamps; store "
                "timestamps (tz-aware, UTC) or ISO-8601 strings."
            )
        try:
            parsed = pd.to_datetime(series, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise DataError(
                f"Timestamp column {column!r} has values that are not timestamps: {exc}"
            ) from None
        if not ptypes.is_datetime64_any_dtype(parsed):
            # Several UTC offsets in one column: fine when every value has one, else ambiguous.
            if any(getattr(v, "tzinfo", None) is None for v in parsed.dropna()):
                raise DataError(
                    f"Timestamp column {column!r} mixes values with and without a time zone; "
                    "store tz-aware UTC timestamps."
                )
            parsed = pd.to_datetime(series, format="ISO8601", utc=True)
        series = parsed
    if series.isna().any():
        raise DataError(
            f"Timestamp column {column!r} has {int(series.isna().sum())} missing value(s); every row "
            "needs the time its label was observed."
        )
    if series.dt.tz is None:
        if naive != "utc":
            raise DataError(
                f"Timestamp column {column!r} has no time zone. A point-in-time join on naive "
                "timestamps silently assumes a zone; store tz-aware UTC timestamps, or pass "
                "naive_timestamps='utc' to declare them UTC."
            )
        return series.dt.tz_localize("UTC").dt.as_unit("ns")
    return series.dt.tz_convert("UTC").dt.as_unit("ns")


def time_range(frame: pd.DataFrame, column: str) -> dict[str, str] | None:
    """The event-time range of a batch, ``{"column", "start", "end"}`` (UTC, ISO-8601, both ends
    inclusive), recorded on its asset events so that a run it triggers knows which time it covers.

    ``None`` for a table without rows; naive timestamps are taken as UTC.

    :raises DataError: the column is missing or holds something other than timestamps.
    """
    if column not in frame.columns:
        raise DataError(
            f"Timestamp column {column!r} is not in the batch; its columns are {list(frame.columns)}."
        )
    if frame.empty:
        return None
    ts = normalise_timestamps(frame[column], column=column, naive="utc")
    return {"column": column, "start": ts.min().isoformat(), "end": ts.max().isoformat()}


def prepare_entities(frame: pd.DataFrame, cfg: TrainingSetConfig, info: ServiceInfo) -> pd.DataFrame:
    """Check the entity table and return a copy with UTC nanosecond timestamps and a fresh index."""
    keys = cfg.entity_columns or info.entity_keys
    wanted = [*keys, cfg.timestamp_column] + ([cfg.label] if cfg.label else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(
            f"Entity table {cfg.entity_source} lacks column(s) {missing} needed by feature service "
            f"{info.name!r} (join keys {keys}, timestamp {cfg.timestamp_column!r}"
            f"{', label ' + repr(cfg.label) if cfg.label else ''}); it has {list(frame.columns)}."
        )
    clash = [c for c in info.features if c in frame.columns]
    if clash:
        raise DataError(
            f"Entity table {cfg.entity_source} already has column(s) {clash} that feature service "
            f"{info.name!r} produces; drop or rename them so no value is silently replaced."
        )
    null_keys = [k for k in keys if frame[k].isna().any()]
    if null_keys:
        raise DataError(f"Entity table {cfg.entity_source} has missing values in join key(s) {null_keys}.")
    out = frame.reset_index(drop=True)  # a copy: the caller's frame is left alone
    out[cfg.timestamp_column] = normalise_timestamps(
        out[cfg.timestamp_column], column=cfg.timestamp_column, naive=cfg.naive_timestamps
    )
    return out


def _historical(store: FeatureStore, entities: pd.DataFrame, features: Any, cfg: TrainingSetConfig) -> Any:
    job = store.get_historical_features(
        entity_df=entities, features=features, full_feature_names=cfg.full_feature_names
    )
    return job.to_df()


def join_features(
    store: FeatureStore, cfg: TrainingSetConfig, pairs: pd.DataFrame, service: Any, info: ServiceInfo
) -> pd.DataFrame:
    """Feature values for each row of ``pairs`` (unique join keys + timestamp, numbered by ``ROW_ID``).

    Feast's file (dask) offline store drops an entity row when one view has values for its key
    but none inside ``[timestamp - ttl, timestamp]`` — taking the other views' valid values with
    it. Rows it drops are asked for again one view at a time (only when the service has several
    views), so each view contributes what it has and a view without a valid value gives a missing
    value, as a left join should.
    """
    pd = require("pandas")
    joined = _historical(store, pairs, service, cfg).set_index(ROW_ID)[info.features]
    lost = pairs[~pairs[ROW_ID].isin(joined.index)]
    parts = [joined]
    # With one view, a dropped row simply has no valid value: nothing to ask again.
    if len(lost) and len(info.views) > 1:
        per_view = []
        for view in info.views:
            refs = [r for r in info.refs if r.split(":", 1)[0] == view]
            names = [info.features[info.refs.index(r)] for r in refs]
            got = _historical(store, lost, refs, cfg).set_index(ROW_ID)[names]
            per_view.append(got.reindex(lost[ROW_ID]))
        parts.append(pd.concat(per_view, axis=1)[info.features])
    features = pd.concat(parts).reindex(pairs[ROW_ID])
    if features.index.has_duplicates:  # pragma: no cover - pairs are unique by construction
        raise DataError("Feast returned more than one row for an entity key and timestamp.")
    return features


def retrieve(
    store: FeatureStore, cfg: TrainingSetConfig, frame: pd.DataFrame
) -> tuple[pd.DataFrame, ServiceInfo]:
    """Join ``frame`` (the entity table) with the feature service, point in time, in input order.

    Only the unique (join keys, timestamp) pairs go to Feast; their features are joined back onto
    every row of ``frame``, so duplicate rows and the row order survive. Columns: the entity
    table's columns, then the service's features in the service's order.
    """
    pd = require("pandas")
    service, info = feature_service(store, cfg.feature_service, full_feature_names=cfg.full_feature_names)
    entities = prepare_entities(frame, cfg, info)
    on = [*(cfg.entity_columns or info.entity_keys), cfg.timestamp_column]
    pairs = entities[on].drop_duplicates(ignore_index=True)
    pairs[ROW_ID] = range(len(pairs))
    features = join_features(store, cfg, pairs, service, info)
    row_ids = entities[on].merge(pairs, on=on, how="left", validate="many_to_one")[ROW_ID]
    values = features.reindex(row_ids.to_numpy()).reset_index(drop=True)
    result = pd.concat([entities, values], axis=1)
    return result, info


def summary(
    cfg: TrainingSetConfig, info: ServiceInfo, uri: str, digest: str, rows: int, offline_store: str = "file"
) -> dict[str, Any]:
    """The XCom / lineage summary of a training set (see interfaces: Features).

    :param offline_store: the type of the offline store that joined it (``file``, ``postgres``).
    """
    return {
        "training_set_uri": uri,
        "row_count": rows,
        "digest": digest,
        "feature_service": info.name,
        "feature_service_version": info.version,
        "features": list(info.features),
        "entity_columns": list(cfg.entity_columns or info.entity_keys),
        "timestamp_column": cfg.timestamp_column,
        "label": cfg.label,
        "entity_source": cfg.entity_source,
        "offline_store": offline_store,
    }
