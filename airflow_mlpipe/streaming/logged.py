"""Scored events into the prediction log, so live quality judges the stream as it judges batch scoring.

The scorer hands over each event its commit wrote (a redelivered duplicate is not logged twice); the
rows are buffered and written as one log part (:func:`~airflow_mlpipe.monitoring.prediction_log.write_log`)
every :data:`FLUSH_SECONDS` or :data:`FLUSH_ROWS` rows, and when the scorer stops. A scorer killed
meanwhile loses the rows not written yet: the log is for monitoring, the output stream is the record.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from airflow_mlpipe.core.deps import require

#: a log part is written at least this often while events are scored …
FLUSH_SECONDS = 5.0
#: … and at the latest when this many rows are buffered
FLUSH_ROWS = 10_000


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
        self.uri = str(spec["uri"])
        self.keys = [str(k) for k in spec["keys"]]
        self.timestamp_column = str(spec.get("timestamp_column") or "event_timestamp")
        self.model_version = model_version
        self.rows: list[dict[str, Any]] = []
        self.written = 0
        self.skipped = 0  # events whose data lacks an entity key: nothing to join a label to
        self._due = time.monotonic() + FLUSH_SECONDS

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
        row = {k: _lookup(k, data, fields) for k in self.keys}
        if any(v is None for v in row.values()):
            self.skipped += 1
            return
        when = _lookup(self.timestamp_column, data, fields)
        if when is None:
            seconds = (arrived_ms if arrived_ms is not None else time.time() * 1000) / 1000
            when = dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()
        row[self.timestamp_column] = when
        row["prediction"] = prediction
        row["score"] = score
        self.rows.append(row)

    def flush_due(self) -> None:
        """Write the buffer when it is old or large enough."""
        if len(self.rows) >= FLUSH_ROWS or (self.rows and time.monotonic() >= self._due):
            self.flush()

    def flush(self) -> str | None:
        """Write the buffered rows as one log part; the path written (``None``: nothing buffered)."""
        from airflow_mlpipe.monitoring.log_parts import utc_time
        from airflow_mlpipe.monitoring.prediction_log import write_log

        self._due = time.monotonic() + FLUSH_SECONDS
        if not self.rows:
            return None
        pd = require("pandas")
        frame = pd.DataFrame.from_records(self.rows)
        # Element by element: pandas reads a naive time among aware ones in the others' offset.
        frame[self.timestamp_column] = pd.to_datetime(
            [utc_time(v) for v in frame[self.timestamp_column]], utc=True
        )
        path = write_log(
            frame,
            self.uri,
            keys=self.keys,
            model_version=self.model_version,
            timestamp_column=self.timestamp_column,
            score_column="score" if frame["score"].notna().any() else None,
        )
        self.written += len(self.rows)
        self.rows = []
        return path


def _lookup(name: str, data: Any, fields: Mapping[str, str]) -> Any:
    """``name`` in the event's input (entity keys of a feature-store model), else in its own fields
    (beside ``data``: a plain model's input holds its columns only)."""
    if isinstance(data, Mapping) and data.get(name) is not None:
        return data[name]
    return fields.get(name)
