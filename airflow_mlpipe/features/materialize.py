"""Incremental materialization of a data interval, with row counts per feature view.

Feast's local engine reads the window *inclusive of both ends*. Consecutive Airflow data intervals
share their boundary, so the window handed to Feast ends one nanosecond before the interval's end:
``[start - overlap, end)``. A row stamped exactly on a boundary belongs to the later interval only
— no gap, no double count. PostgreSQL keeps microseconds and rounds a bound finer than that to the
nearest microsecond (``…59.999999999`` becomes the boundary itself), so with the ``postgres``
offline store the window ends one microsecond before the interval's end instead. Re-running an interval writes the same latest value per entity again,
so a rerun is idempotent.

Feast reports no row counts, so the online store's ``online_write_batch`` is wrapped for the
duration of the call and counts the rows handed to it per feature view; the rows themselves pass
through untouched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.features import MaterializeConfig, parse_timestamp
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.core.lineage import stage_asset
from airflow_mlpipe.exceptions import DataError
from airflow_mlpipe.features.registry import check_feature_views
from airflow_mlpipe.hooks.feast import offline_store_type

if TYPE_CHECKING:
    from feast import FeatureStore


def feature_view_asset(name: str, project: str | None = None) -> Any:
    """The Airflow ``Asset`` of one feature view (``mlpipe://features/<project>.<view>``).

    Cheap and store-free: use it in DAG files to declare a materialize task's outlets.
    """
    return stage_asset("features", f"{project}.{name}" if project else name)


def feature_view_assets(names: Iterable[str], project: str | None = None) -> list[Any]:
    """One asset per feature view name, for ``outlets=`` of the materialize operator."""
    return [feature_view_asset(n, project) for n in names]


@contextlib.contextmanager
def count_online_writes(store: FeatureStore) -> Iterator[Counter[str]]:
    """Count the rows written to the online store per feature view inside the block."""
    online = store._get_provider().online_store
    counts: Counter[str] = Counter()
    original = online.online_write_batch

    def counting(config: Any, table: Any, data: Any, progress: Any) -> Any:
        counts[table.name] += len(data)
        return original(config, table, data, progress)

    online.online_write_batch = counting  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        # Remove the instance attribute: the class method shows through again.
        with contextlib.suppress(AttributeError):
            del online.online_write_batch


def catch_up_start(store: FeatureStore, views: list[str] | None, end: dt.datetime) -> dt.datetime:
    """Where a run without a data interval starts: the earliest point any view still lacks.

    That is the end of the view's last materialized window (Feast records it in the registry), or
    ``end - ttl`` for a view never materialized (Feast's ``materialize_incremental`` rule), or the
    epoch for a view without TTL.
    """
    pd = require("pandas")
    starts = []
    for name in check_feature_views(store, views):
        view = store.get_feature_view(name)
        last = view.most_recent_end_time
        if last is not None:
            # Windows end 1 ns (1 µs) before their interval's end (see above): resume exactly there.
            starts.append((pd.Timestamp(last) + pd.Timedelta(1, "ns")).ceil("us").to_pydatetime())
        elif view.ttl:
            starts.append(end - view.ttl)
        else:
            starts.append(dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
    start = min(starts) if starts else end
    return start if start.tzinfo else start.replace(tzinfo=dt.UTC)


def batch_window(extras: Iterable[Mapping[str, Any]]) -> tuple[dt.datetime, dt.datetime] | None:
    """The time the triggering batches cover, as a half-open window ``[first, last + 1 µs)``.

    Read from the ``time_range`` their validation recorded on its asset events
    (``DataValidationOperator(timestamp_column=...)``); ``None`` when no event carries one.
    """
    ranges = [e["time_range"] for e in extras if isinstance(e.get("time_range"), Mapping)]
    if not ranges:
        return None
    first = min(parse_timestamp(r["start"], "time_range.start") for r in ranges)
    last = max(parse_timestamp(r["end"], "time_range.end") for r in ranges)
    return first, last + dt.timedelta(microseconds=1)


def materialize_window(store: FeatureStore, cfg: MaterializeConfig) -> list[dict[str, Any]]:
    """Materialize ``cfg``'s window into the online store; one summary dict per feature view.

    :raises ConfigError: an unknown feature view.
    :raises DataError: ``fail_on_empty`` and no row in the window.
    """
    pd = require("pandas")
    views = check_feature_views(store, cfg.feature_views)
    start = pd.Timestamp(cfg.window_start)
    # Half-open window, see the module docstring.
    before = pd.Timedelta(1, "us" if offline_store_type(store.config) == "postgres" else "ns")
    end = pd.Timestamp(cfg.end) - before
    if not views:
        return []
    with count_online_writes(store) as counts:
        store.materialize(start_date=start, end_date=end, feature_views=views)
    summaries = [
        {
            "feature_view": name,
            "project": store.project,
            "window_start": cfg.window_start.isoformat(),
            "window_end": cfg.end.isoformat(),
            "data_interval_start": cfg.start.isoformat(),
            "data_interval_end": cfg.end.isoformat(),
            "overlap_seconds": cfg.overlap_seconds,
            "window_source": cfg.source,
            "rows_written": int(counts.get(name, 0)),
            "materialized_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        for name in views
    ]
    if cfg.fail_on_empty and not any(s["rows_written"] for s in summaries):
        raise DataError(
            f"No feature rows in [{cfg.window_start.isoformat()}, {cfg.end.isoformat()}) for feature "
            f"view(s) {views}; the source data for this interval is missing."
        )
    return summaries
