"""The HTTP service's prediction log: every row it scores, written a few seconds later as one log part.

Copied into a bento beside the service (as ``mlpipe_request_log``) when the deployment configures a
prediction log; the format is :mod:`airflow_mlpipe.monitoring.log_parts`' (``mlpipe_log_parts``).

**What a request carries.** An ``entities`` request's keys are its entity keys. A ``rows`` request
may carry the log's key and timestamp fields beside the model's features: they are taken out of each
row before the row is validated, so the model never sees them and every other unknown column is
still refused. A field that is also a model input stays in the row (the model gets it too). A row
without every key is scored but not logged (``skipped``: nothing to join its label to); a timestamp
that is not an ISO 8601 time, or a key that is not a plain JSON value, refuses the request (400).
Without a timestamp the event time is when the request arrived (UTC).

**When it is written.** Rows are buffered in the serving process and written as one part at the
latest :data:`~airflow_mlpipe.monitoring.log_parts.FLUSH_SECONDS` after the first of them, when
:data:`~airflow_mlpipe.monitoring.log_parts.FLUSH_ROWS` are buffered, and when the service shuts
down. Writes run on one thread of their own: a request never waits for one, and a write that fails
is logged and counted (``mlpipe_prediction_log_rows_total{outcome="failed"}``), its rows dropped —
the log serves monitoring; the answers were already given.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

try:  # in a bento: copied beside this file
    import mlpipe_log_parts as _parts  # type: ignore[import-not-found]
except ImportError:  # imported from the installed provider
    from airflow_mlpipe.monitoring import log_parts as _parts

logger = logging.getLogger("mlpipe.prediction_log")
#: JSON values a logged key may have (a list or an object cannot be joined to a label)
_KEY_TYPES = (str, int, float, bool)


class RequestLog:
    """The prediction log of one serving process.

    :param spec: ``directory``, ``keys`` and ``timestamp_column`` (the bento's configuration).
    :param inputs: the model's request schema (its columns stay in a ``rows`` row).
    :param entity_keys: the join keys of an ``entities`` row (they stay in the row).
    :param model_version: the version that scores.
    :param count: ``count(outcome, rows)`` records written/failed/skipped rows (e.g. a Prometheus
        counter); by default nothing.
    """

    def __init__(
        self,
        spec: dict[str, Any],
        inputs: list[dict[str, Any]],
        entity_keys: list[str],
        model_version: str,
        count: Any = None,
    ) -> None:
        self.keys = [str(k) for k in spec["keys"]]
        self.ts = str(spec["timestamp_column"])
        self.buffer = _parts.PredictionBuffer(str(spec["directory"]), self.keys, self.ts, model_version)
        fields = [*self.keys, self.ts]
        model_columns = {c["name"] for c in inputs}
        self.extra = {
            "rows": [f for f in fields if f not in model_columns],
            "entities": [f for f in fields if f not in entity_keys],
        }
        self.skipped = 0
        self._count = count or (lambda outcome, rows: None)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prediction-log")
        self._timer: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Future[Any]] = set()

    def take_fields(self, rows: Any, what: str) -> list[dict[str, Any]]:
        """Take the log's fields that are not model inputs (entity keys) out of each row of a
        request; the fields of each row, in order (a row that is not an object keeps its place
        with none, for validation to refuse).

        :raises ValueError: with the problems (a bad timestamp or key), to refuse the request.
        """
        extra = self.extra[what]
        taken: list[dict[str, Any]] = []
        problems: list[str] = []
        for i, row in enumerate(rows if isinstance(rows, list) else ()):
            fields = {k: row.pop(k) for k in extra if k in row} if isinstance(row, dict) else {}
            taken.append(fields)
            when = fields.get(self.ts)
            if when is not None and not _is_time(when):
                problems.append(f"{what}[{i}].{self.ts} must be an ISO 8601 time, got {when!r}")
            bad = [k for k in self.keys if k in fields and not _is_key(fields[k])]
            if bad:
                problems.append(f"{what}[{i}] has key(s) {bad} that are not strings, numbers or booleans")
        if problems:
            raise ValueError(problems)
        return taken

    def add(
        self,
        rows: list[dict[str, Any]],
        fields: list[dict[str, Any]],
        answer: dict[str, Any],
        arrived: str,
    ) -> None:
        """Buffer the scored ``rows`` (validated; ``fields`` from :meth:`take_fields`) with the
        ``predictions`` and binary ``scores`` of their ``answer``; ``arrived``: the request's time."""
        scores = answer.get("scores") or [None] * len(rows)
        skipped = 0
        for row, own, prediction, score in zip(rows, fields, answer["predictions"], scores, strict=True):
            values = [own.get(k, row.get(k)) for k in self.keys]
            if any(v is None for v in values):
                skipped += 1
                continue
            self.buffer.add((*values, own.get(self.ts) or row.get(self.ts) or arrived, prediction, score))
        if skipped:
            self.skipped += skipped
            self._count("skipped", skipped)
        if self.buffer.full():
            self.flush()
        elif self._timer is None and self.buffer.rows:
            self._timer = asyncio.get_running_loop().call_later(_parts.FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Start writing the buffered rows as one part (on the log's own thread)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rows = self.buffer.take()
        if rows:
            future = asyncio.get_running_loop().run_in_executor(self._executor, self._write, rows)
            self._writes.add(future)
            future.add_done_callback(self._writes.discard)

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        try:
            path = self.buffer.write(rows)
        except Exception:  # any failure: the requests were answered; say so and go on
            logger.exception("could not write %d rows to the prediction log", len(rows))
            self._count("failed", len(rows))
            return
        self._count("written", len(rows))
        logger.debug("wrote %d rows to %s", len(rows), path)

    async def close(self) -> None:
        """Write what is buffered and wait for every write (the service is shutting down)."""
        self.flush()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        self._executor.shutdown(wait=True)


def _is_time(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_key(value: Any) -> bool:
    return value is None or isinstance(value, _KEY_TYPES)
