"""Configuration objects of the feature store stage (Feast).

Plain dataclasses, validated in ``__post_init__``; cheap to build in a DAG file (no I/O, no heavy
imports). The operators build them from their (templated) arguments when the task runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing
from typing import Any

from airflow_mlpipe.config.base import MappingConfig
from airflow_mlpipe.exceptions import ConfigError

#: what to do with timestamps that carry no time zone
NAIVE_TIMESTAMPS = ("error", "utc")
#: where a materialization window came from (see ``FeastMaterializeOperator``)
WINDOW_SOURCES = ("data_interval", "arguments", "triggering_batch", "catch_up")
#: rows per fetch and parquet row group when a training set is streamed from PostgreSQL
DEFAULT_CHUNK_ROWS = 100_000


def _names(value: Any, where: str, *, allow_none: bool = True) -> list[str] | None:
    if value is None and allow_none:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list of names, got {value!r}.")
    if not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must contain non-empty strings only, got {list(value)!r}.")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where} lists a name twice: {list(value)!r}.")
    return list(value)


def parse_timestamp(value: Any, where: str) -> dt.datetime:
    """A tz-aware UTC datetime from a datetime or ISO-8601 string (naive values are refused)."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{where}={value!r} is not an ISO-8601 timestamp.") from None
    if not isinstance(value, dt.datetime):
        raise ConfigError(f"{where} must be a datetime or ISO-8601 string, got {type(value).__name__}.")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(
            f"{where}={value.isoformat()} has no time zone; give an aware timestamp (e.g. '...+00:00')."
        )
    return value.astimezone(dt.UTC)


@dataclasses.dataclass
class MaterializeConfig:
    """How one run materializes the offline store into the online store.

    The window is ``[start - overlap, end)``: it starts ``overlap`` before the data interval, so
    rows that arrived late for the previous interval are written too, and it excludes its end, so
    consecutive intervals neither miss nor repeat a row stamped exactly on their boundary.

    :param start: window start (the run's ``data_interval_start``); an aware datetime (an ISO-8601
        string is parsed).
    :param end: window end, exclusive (the run's ``data_interval_end``).
    :param overlap_seconds: how far before ``start`` to re-read, for late data (>= 0).
    :param feature_views: only these feature views (``None``: every feature view of the project).
    :param fail_on_empty: raise :class:`~airflow_mlpipe.exceptions.DataError` when no feature view
        had a row in the window (default: an empty window is a normal, recorded outcome).
    :param source: where ``start``/``end`` came from, recorded with the result: the run's
        ``data_interval``, explicit ``arguments``, the ``triggering_batch``'s time range, or a
        ``catch_up`` from the views' last materialization.
    """

    start: dt.datetime
    end: dt.datetime
    overlap_seconds: float = 0.0
    feature_views: list[str] | None = None
    fail_on_empty: bool = False
    source: str = "data_interval"

    def __post_init__(self) -> None:
        self.start = parse_timestamp(self.start, "start")
        self.end = parse_timestamp(self.end, "end")
        try:
            self.overlap_seconds = float(self.overlap_seconds)
        except (TypeError, ValueError):
            raise ConfigError(f"overlap_seconds={self.overlap_seconds!r} must be a number.") from None
        if self.overlap_seconds < 0:
            raise ConfigError(f"overlap_seconds={self.overlap_seconds} must be >= 0.")
        if self.start >= self.end:
            raise ConfigError(
                f"The materialization window is empty or reversed: start {self.start.isoformat()} "
                f">= end {self.end.isoformat()}."
            )
        if self.source not in WINDOW_SOURCES:
            raise ConfigError(f"source={self.source!r}; use one of {list(WINDOW_SOURCES)}.")
        self.feature_views = _names(self.feature_views, "feature_views")
        if self.feature_views == []:
            raise ConfigError("feature_views is empty; give None (all views) or at least one name.")

    @property
    def window_start(self) -> dt.datetime:
        """The effective start: ``start`` minus the overlap."""
        return self.start - dt.timedelta(seconds=self.overlap_seconds)


@dataclasses.dataclass
class TrainingSetConfig:
    """A point-in-time correct training set: an entity/label table joined with a feature service.

    :param feature_service: Feast feature service whose features make up the set.
    :param entity_source: URI of the entity/label table (parquet or CSV).
    :param timestamp_column: event timestamp column of the entity table; a feature value stamped
        after it never reaches the row.
    :param label: label column (kept as is; ``None`` for an unlabelled scoring set).
    :param entity_columns: join keys; default: the join keys of the feature service's views.
    :param naive_timestamps: ``"error"`` (default) refuses timestamps without a time zone;
        ``"utc"`` declares them UTC. Aware timestamps in other zones are converted to UTC.
    :param full_feature_names: name features ``<view>__<feature>`` (needed when two views share a
        feature name).
    :param output_name: file name of the parquet file under the task's artifact directory.
    :param chunk_rows: with the ``postgres`` offline store, rows fetched from the database and
        written as one parquet row group at a time (the worker holds one chunk of features).
    """

    feature_service: str
    entity_source: str
    timestamp_column: str = "event_timestamp"
    label: str | None = None
    entity_columns: list[str] | None = None
    naive_timestamps: str = "error"
    full_feature_names: bool = False
    output_name: str = "training_set.parquet"
    chunk_rows: int = DEFAULT_CHUNK_ROWS

    def __post_init__(self) -> None:
        for name in ("feature_service", "entity_source", "timestamp_column"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{name} must be a non-empty string, got {value!r}.")
        if self.label is not None and (not isinstance(self.label, str) or not self.label):
            raise ConfigError(f"label must be a column name or None, got {self.label!r}.")
        self.label = self.label or None
        self.entity_columns = _names(self.entity_columns, "entity_columns")
        if self.naive_timestamps not in NAIVE_TIMESTAMPS:
            raise ConfigError(
                f"naive_timestamps={self.naive_timestamps!r}; use one of {list(NAIVE_TIMESTAMPS)}."
            )
        if not self.output_name.endswith(".parquet") or "/" in self.output_name:
            raise ConfigError(f"output_name={self.output_name!r} must be a file name ending in .parquet.")
        if self.label is not None and self.label == self.timestamp_column:
            raise ConfigError("label and timestamp_column name the same column.")
        if isinstance(self.chunk_rows, bool) or not isinstance(self.chunk_rows, int) or self.chunk_rows < 1:
            raise ConfigError(f"chunk_rows must be a positive integer, got {self.chunk_rows!r}.")


#: how the rows a model learns from are chosen (see docs/concepts/training-data.md)
WINDOW_MODES = ("auto", "all", "last_days", "last_batches", "since_drift")
#: how the gate's holdout is cut from the entity table
HOLDOUT_METHODS = ("time", "random")


def _positive(value: Any, where: str, kind: type) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or value <= 0:
        raise ConfigError(
            f"{where} must be a positive {'number' if kind is float else 'integer'}, got {value!r}."
        )


@dataclasses.dataclass
class TrainingWindowConfig(MappingConfig):
    """Which labelled rows the model learns from, chosen by event time before the feature join.

    :param mode: ``"all"`` (every row), ``"last_days"`` (rows within ``days`` of the newest row),
        ``"last_batches"`` (the newest ``batches`` batches), ``"since_drift"`` (rows at or after the
        start of the batch that drifted; all rows when the run was not started by drift) or
        ``"auto"`` (default): ``since_drift`` for a run started by drift, ``all`` otherwise.
    :param days: width of the ``last_days`` window.
    :param batches: number of batches of the ``last_batches`` window.
    :param batch_column: column naming the batch of a row; default: the UTC calendar day of the
        timestamp.
    :param min_rows: a window with fewer rows is widened back in time to the newest ``min_rows``
        rows (a drift one small batch ago still leaves enough to learn from).
    """

    mode: str = "auto"
    days: float | None = None
    batches: int | None = None
    batch_column: str | None = None
    min_rows: int = 0

    def __post_init__(self) -> None:
        if self.mode not in WINDOW_MODES:
            raise ConfigError(f"training_window.mode={self.mode!r}; use one of {list(WINDOW_MODES)}.")
        if self.mode == "last_days":
            _positive(self.days, "training_window.days (needed by mode last_days)", float)
        if self.mode == "last_batches":
            _positive(self.batches, "training_window.batches (needed by mode last_batches)", int)
        if isinstance(self.min_rows, bool) or not isinstance(self.min_rows, int) or self.min_rows < 0:
            raise ConfigError(f"training_window.min_rows must be an integer >= 0, got {self.min_rows!r}.")
        if self.batch_column is not None and (
            not isinstance(self.batch_column, str) or not self.batch_column
        ):
            raise ConfigError(
                f"training_window.batch_column must be a column name, got {self.batch_column!r}."
            )


@dataclasses.dataclass
class HoldoutConfig(MappingConfig):
    """The evaluation holdout, cut from the entity table and never given to training.

    :param method: ``"time"`` (default): the most recent rows by event time, so the gate asks "is
        the new model better on the newest data"; ``"random"``: a seeded random sample (for data
        whose order carries no meaning).
    :param fraction: share of the (windowed) rows held out.
    :param batches: hold out the newest ``batches`` batches instead of ``fraction`` (``time`` only).
    :param seed: seed of the ``random`` method.
    """

    method: str = "time"
    fraction: float = 0.2
    batches: int | None = None
    seed: int = 42

    def __post_init__(self) -> None:
        if self.method not in HOLDOUT_METHODS:
            raise ConfigError(f"holdout.method={self.method!r}; use one of {list(HOLDOUT_METHODS)}.")
        if (
            isinstance(self.fraction, bool)
            or not isinstance(self.fraction, (int, float))
            or not 0 < self.fraction < 1
        ):
            raise ConfigError(f"holdout.fraction must be between 0 and 1 (exclusive), got {self.fraction!r}.")
        if self.batches is not None:
            _positive(self.batches, "holdout.batches", int)
            if self.method != "time":
                raise ConfigError("holdout.batches holds out the newest batches: it needs method 'time'.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"holdout.seed must be an integer, got {self.seed!r}.")


C = typing.TypeVar("C", TrainingWindowConfig, HoldoutConfig)
