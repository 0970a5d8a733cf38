"""The prediction log's on-disk format: the one definition every writer uses.

:func:`~airflow_mlpipe.monitoring.prediction_log.write_log` (batch scoring, the stream scorer) and
the HTTP service inside a bento both write through :func:`write_part`; the bento has no provider
installed, so this module is copied into it (as ``mlpipe_log_parts``) and depends on nothing but
pandas and pyarrow. :class:`PredictionBuffer` collects the rows of a serving process between writes.

A part is ``<directory>/<YYYY-MM-DD>/<HHMMSSffffff>-<random>.parquet`` with the entity keys, the
event time (UTC), ``prediction``, ``score``, ``model_version`` and ``logged_at``; it is written under
a temporary name and renamed, so a reader never sees half a part and writers never share a file.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from typing import Any

PREDICTION, SCORE, MODEL_VERSION, LOGGED_AT = "prediction", "score", "model_version", "logged_at"
#: a serving process writes a part at least this often while it logs rows …
FLUSH_SECONDS = 5.0
#: … and at the latest when this many rows are buffered
FLUSH_ROWS = 10_000


def write_part(out: Any, directory: str, now: dt.datetime) -> str:
    """Write ``out`` (a DataFrame with the keys, the event time, ``prediction``, ``score`` and
    ``model_version``) as one part under ``directory``, stamped ``logged_at=now``; the path written."""
    import pandas as pd

    out[LOGGED_AT] = pd.Timestamp(now)
    day = os.path.join(directory, now.strftime("%Y-%m-%d"))
    os.makedirs(day, exist_ok=True)
    final = os.path.join(day, f"{now.strftime('%H%M%S%f')}-{uuid.uuid4().hex[:12]}.parquet")
    tmp = os.path.join(day, f".{os.path.basename(final)}.tmp")
    try:
        out.to_parquet(tmp, index=False)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return final


def utc_time(value: Any) -> dt.datetime:
    """An ISO 8601 string or a datetime as an aware UTC datetime (a naive one is taken as UTC)."""
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


class PredictionBuffer:
    """Rows of scored predictions waiting for their part.

    :param directory: the log's local directory.
    :param keys: entity key columns.
    :param timestamp_column: the event time column.
    :param model_version: the version that made the predictions.
    """

    def __init__(self, directory: str, keys: list[str], timestamp_column: str, model_version: str) -> None:
        self.directory = directory
        self.keys = list(keys)
        self.timestamp_column = timestamp_column
        self.model_version = str(model_version)
        self.rows: list[tuple[Any, ...]] = []  # (*keys, event time, prediction, score)
        self.written = 0
        self.failed = 0  # rows of parts that could not be written (dropped: the log is for monitoring)
        self.due = time.monotonic() + FLUSH_SECONDS

    def add(self, row: tuple[Any, ...]) -> None:
        """Buffer ``(*keys, event time (ISO 8601 or datetime; naive is UTC), prediction, score or None)``."""
        self.rows.append(row)

    def full(self) -> bool:
        return len(self.rows) >= FLUSH_ROWS

    def take(self) -> list[tuple[Any, ...]]:
        """The buffered rows, leaving the buffer empty (the next part is due in ``FLUSH_SECONDS``)."""
        rows, self.rows = self.rows, []
        self.due = time.monotonic() + FLUSH_SECONDS
        return rows

    def write(self, rows: list[tuple[Any, ...]], now: dt.datetime | None = None) -> str | None:
        """Write ``rows`` (from :meth:`take`) as one part; the path (``None``: no rows).

        Blocking file I/O: a server calls it off its event loop. On failure the rows are counted
        in ``failed`` and the error is raised.
        """
        if not rows:
            return None
        import pandas as pd

        ts = self.timestamp_column
        try:
            out = pd.DataFrame.from_records(rows, columns=[*self.keys, ts, PREDICTION, SCORE])
            # Element by element: pandas reads a naive time among aware ones in the others' offset.
            out[ts] = pd.to_datetime([utc_time(v) for v in out[ts]], utc=True)
            out[SCORE] = out[SCORE].astype(float)
            out[MODEL_VERSION] = self.model_version
            path = write_part(out, self.directory, now or dt.datetime.now(dt.UTC))
        except Exception:
            self.failed += len(rows)
            raise
        self.written += len(rows)
        return path
