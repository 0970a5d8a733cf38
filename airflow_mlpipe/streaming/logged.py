"""Scored events into the prediction log, so live quality judges the stream as it judges batch scoring.

The scorer hands over each event its commit wrote (a redelivered duplicate is not logged twice); the
rows are buffered (:class:`~airflow_mlpipe.monitoring.log_parts.PredictionBuffer`, the buffer the HTTP
service uses too) and written as one log part every
:data:`~airflow_mlpipe.monitoring.log_parts.FLUSH_SECONDS` or
:data:`~airflow_mlpipe.monitoring.log_parts.FLUSH_ROWS` rows, and when the scorer stops. A scorer
killed meanwhile loses the rows not written yet: the log is for monitoring, the output stream is the
record.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from airflow_mlpipe.monitoring.log_parts import PredictionBuffer
from airflow_mlpipe.monitoring.prediction_log import log_directory


class StreamPredictionLog:
    """A buffer of scored events for the prediction log at ``spec["uri"]``.

    :param spec: ``uri`` (the log directory), ``keys`` (entity key columns) and optionally
        ``timestamp_column`` (the event time, ISO 8601; default ``event_timestamp``; without it, when
        the event arrived on the stream). Both are read from the event's ``data`` (a feature-store
        model's input is its entity keys), else from the event's own fields beside ``data``; an
        event without every key is not logged (counted in ``skipped``).
    :param model_version: the version that scored the events.
    """

    def __init__(self, spec: Mapping[str, Any], *, model_version: str) -> None:
        self.keys = [str(k) for k in spec["keys"]]
        self.timestamp_column = str(spec.get("timestamp_column") or "event_timestamp")
        self.buffer = PredictionBuffer(
            log_directory(str(spec["uri"])), self.keys, self.timestamp_column, model_version
        )
        self.skipped = 0  # events whose data lacks an entity key: nothing to join a label to

    @property
    def written(self) -> int:
        """Rows written to the log so far."""
        return self.buffer.written

    def add(
        self,
        data: Any,
        fields: Mapping[str, str],
        prediction: Any,
        score: float | None,
        arrived_ms: float | None,
    ) -> None:
        """Buffer one scored event: ``data``, its parsed input; ``fields``, the event's own fields;
        ``score``, the positive-class probability, else ``None``."""
        keys = [_lookup(k, data, fields) for k in self.keys]
        if any(v is None for v in keys):
            self.skipped += 1
            return
        when = _lookup(self.timestamp_column, data, fields)
        if when is None:
            seconds = (arrived_ms if arrived_ms is not None else time.time() * 1000) / 1000
            when = dt.datetime.fromtimestamp(seconds, dt.UTC)
        self.buffer.add((*keys, when, prediction, score))

    def flush_due(self) -> None:
        """Write the buffer when it is old or large enough."""
        if self.buffer.full() or (self.buffer.rows and time.monotonic() >= self.buffer.due):
            self.flush()

    def flush(self) -> str | None:
        """Write the buffered rows as one log part; the path written (``None``: nothing buffered)."""
        return self.buffer.write(self.buffer.take())


def _lookup(name: str, data: Any, fields: Mapping[str, str]) -> Any:
    """``name`` in the event's input (entity keys of a feature-store model), else in its own fields
    (beside ``data``: a plain model's input holds its columns only)."""
    if isinstance(data, Mapping) and data.get(name) is not None:
        return data[name]
    return fields.get(name)
