"""The stream scorer: read a micro-batch, validate its events, score the valid ones together, commit.

Delivery is **at least once** with **idempotent output**: an event is acknowledged only in the same
atomic commit that writes its result, so a scorer killed mid-batch leaves it pending and another
consumer claims it (``claim_idle_ms``); the transport writes at most one result per ``event_id``.
A malformed event (bad JSON, schema violation) or one the model fails on goes to the dead-letter
stream with the reason; neither stops the scorer.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from airflow_mlpipe.config.streaming import StreamConfig
from airflow_mlpipe.streaming.logged import StreamPredictionLog
from airflow_mlpipe.streaming.metrics import StreamMetrics
from airflow_mlpipe.streaming.transport import Committed, Event, Result, StreamTransport

log = logging.getLogger(__name__)

#: a dead letter keeps at most this much of the raw event
MAX_DEAD_PAYLOAD = 65_536

_decode = msgspec.json.Decoder().decode


class StreamModel(Protocol):
    """What the scorer needs of a served model version (see ``_serving/stream.py``)."""

    identity: dict[str, str]
    #: the output field of :meth:`predict`'s probability (``score``: a binary classifier's
    #: positive class, ``probability``: the predicted class), ``None`` when it gives none
    score_field: str | None

    def validate(self, batch: list[Any]) -> list[ValueError | None]:
        """Per input of ``batch``: ``None`` when valid, else the ``ValueError`` saying why (with
        ``problems``, a list of strings, when known) — what validating it alone would raise."""
        ...

    def predict(self, batch: list[Any]) -> list[tuple[Any, float | None]]:
        """(prediction, the probability named by :attr:`score_field` or ``None``) per valid input."""
        ...


@dataclass
class _Batch:
    """A scored micro-batch, ready to commit."""

    events: list[Event]
    results: list[Result]
    status: dict[str, str]  # position → outcome (a key of metrics.STATUS)
    common: dict[str, str]
    started: float
    #: position → (data, prediction, probability) of the scored events, when a prediction log is kept
    scored: dict[str, tuple[Any, Any, float | None]] = field(default_factory=dict)


@dataclass
class BatchOutcome:
    """Counts of one micro-batch, as committed."""

    read: int = 0
    scored: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    not_owned: int = 0


def _json(value: Any) -> str:
    """``json.dumps(value)``; an int or a finite float is its ``repr``, which is what ``json`` writes."""
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return repr(value)
    return json.dumps(value)


def parse_json(raw: str) -> Any:
    """``json.loads(raw)``, in a quarter of its time: msgspec decodes what it accepts to the same
    values; what it refuses (invalid JSON, but also ``NaN``, ``1e400``, a lone surrogate, which the
    standard library reads) gets the standard library's value or error.

    :raises ValueError: ``raw`` is not valid JSON, saying why.
    """
    try:
        return _decode(raw)
    except msgspec.MsgspecError:
        pass
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"'data' is not valid JSON: {exc}") from None


def _problems(exc: BaseException) -> list[str]:
    return [str(p) for p in getattr(exc, "problems", None) or [str(exc)]]


class StreamScorer:
    """Consume ``config.input_stream`` as consumer ``consumer`` of the group of ``name``.

    :param transport: the stream transport (:class:`~airflow_mlpipe.streaming.transport.StreamTransport`).
    :param model: the served model version.
    :param config: the stream's configuration.
    :param name: the scorer's name: its consumer group and its owner name in the routing epochs.
    :param consumer: this process's consumer name inside the group.
    :param metrics: where to count (a fresh :class:`StreamMetrics` by default).
    """

    def __init__(
        self,
        transport: StreamTransport,
        model: StreamModel,
        *,
        config: StreamConfig,
        name: str,
        consumer: str,
        metrics: StreamMetrics | None = None,
    ) -> None:
        self.transport = transport
        self.model = model
        self.config = config
        self.name = name
        self.group = config.group(name)
        self.consumer = consumer
        self.metrics = metrics or StreamMetrics(
            {
                "endpoint": config.input_stream,
                "scorer": name,
                "model_version": model.identity["model_version"],
            }
        )
        self._next_claim = 0.0
        self._next_gauges = 0.0
        self._described = False
        self.prediction_log = (
            StreamPredictionLog(config.prediction_log, model_version=model.identity["model_version"])
            if config.prediction_log
            else None
        )

    def _next_events(self, block_ms: int) -> list[Event]:
        """Stale events of dead consumers first (checked every ``claim_idle_ms / 2``), else new
        ones, waiting up to ``block_ms`` for them."""
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self.config.claim_idle_ms / 2000
            events = self.transport.claim_stale(
                self.group, self.consumer, self.config.claim_idle_ms, self.config.batch_size
            )
            if events:
                return events
        return self.transport.read(self.group, self.consumer, self.config.batch_size, block_ms)

    def _gauges_due(self) -> None:
        now = time.monotonic()
        if now >= self._next_gauges:
            self._next_gauges = now + 1.0
            self.update_gauges()

    def step(self) -> BatchOutcome:
        """Score one micro-batch (committed when this returns): stale events of dead consumers
        first, else new ones."""
        events = self._next_events(self.config.block_ms)
        outcome = self.process(events) if events else BatchOutcome()
        self._gauges_due()
        return outcome

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Score until ``should_stop()`` is true (checked between micro-batches); the batch in hand
        is committed before returning.

        Redis runs one command at a time, so a scored batch is held until the next one is read,
        then its commit is sent and the next batch is scored while Redis runs it; the outcome is
        awaited after that. The broker's work overlaps the scorer's in one thread (a second thread
        for commits measured no faster: the threads contend for the interpreter; see
        docs/benchmarks.md#streaming). At most one batch waits: a read with one in hand does not
        wait for new events (with none, the batch is committed at once). A crash leaves both
        batches pending, as it does any batch not committed.
        """
        held: _Batch | None = None
        try:
            while not should_stop():
                events = self._next_events(0 if held else self.config.block_ms)
                sent = self._send(held) if held is not None else None
                batch = self._prepare(events) if events else None
                if held is not None and sent is not None:
                    self._record(held, sent())
                held = batch
                self._gauges_due()
        finally:
            try:
                if held is not None:
                    self._record(held, self._commit(held))
            finally:
                self.close()

    def close(self) -> None:
        """Write what the prediction log holds (``run`` does when it returns)."""
        if self.prediction_log is not None:
            self.prediction_log.flush()

    def update_gauges(self) -> None:
        state = self.transport.group_state(self.group)
        self.metrics.set_gauge("consumer_lag", state["lag"])
        self.metrics.set_gauge("pending", state["pending"])

    def process(self, events: list[Event]) -> BatchOutcome:
        """Validate, score and commit one micro-batch: the events are parsed one by one (a bad one
        is dead-lettered alone), validated together, scored by one model call and committed in one
        atomic transport step; fields common to every result are sent once per batch."""
        batch = self._prepare(events)
        return self._record(batch, self._commit(batch))

    def _prepare(self, events: list[Event]) -> _Batch:
        """The results of one micro-batch, ready to commit."""
        started = time.monotonic()
        results: list[Result] = []
        status: dict[str, str] = {}
        parsed: list[tuple[Event, Any]] = []
        for event, mine in zip(events, self.transport.owned(self.name, events), strict=True):
            if not mine:
                results.append(Result(event, {}, skipped=True))
                continue
            try:
                parsed.append((event, self._parse(event)))
            except ValueError as exc:
                results.append(self._dead(event, exc, "malformed"))
                status[event.position] = "malformed"
        valid: list[tuple[Event, Any]] = []
        score_field = self.model.score_field
        errors = self.model.validate([data for _, data in parsed]) if parsed else []
        for (event, data), error in zip(parsed, errors, strict=True):
            if error is None:
                valid.append((event, data))
            else:
                results.append(self._dead(event, error, "malformed"))
                status[event.position] = "malformed"
        logged: dict[str, tuple[Any, Any, float | None]] = {}
        # The prediction log's score is the positive-class probability only (null for multiclass).
        log_score = self.prediction_log is not None and score_field == "score"
        for (event, data), scored in zip(valid, self._score([d for _, d in valid]), strict=True):
            if isinstance(scored, BaseException):
                # A ValueError is the event's fault (e.g. no online features for its key).
                kind = "malformed" if isinstance(scored, ValueError) else "model_error"
                results.append(self._dead(event, scored, kind))
                status[event.position] = kind
                continue
            prediction, probability = scored
            fields = {"prediction": _json(prediction)}
            if probability is not None and score_field:
                fields[score_field] = _json(probability)
            results.append(Result(event, fields, with_data=True))
            status[event.position] = "scored"
            if self.prediction_log is not None:
                logged[event.position] = (data, prediction, probability if log_score else None)
        common = {
            "model_version": self.model.identity["model_version"],
            "scorer": self.name,
            "scored_at": f"{time.time():.6f}",
        }
        return _Batch(events, results, status, common, started, logged)

    def _commit(self, batch: _Batch) -> Committed:
        return self._send(batch)()

    def _send(self, batch: _Batch) -> Callable[[], Committed]:
        if not self._described:
            # The model's identity once, not in every scored event (which names its version).
            self.transport.describe_model(self.model.identity)
            self._described = True
        return self.transport.send_commit(self.group, self.name, batch.results, batch.common)

    def _record(self, batch: _Batch, committed: Committed) -> BatchOutcome:
        """Count a committed micro-batch in the metrics."""
        elapsed = time.monotonic() - batch.started
        by_status: dict[str, int] = {}
        for position in committed.owned_positions:
            by_status[batch.status[position]] = by_status.get(batch.status[position], 0) + 1
        for key, n in by_status.items():
            self.metrics.record(key, n, elapsed)
        now_ms = time.time() * 1000
        arrived = {e.position: e.arrived_ms for e in batch.events}
        self.metrics.observe_latency(
            [
                max(0.0, now_ms - a) / 1000
                for p in committed.owned_positions
                if (a := arrived.get(p)) is not None
            ]
        )
        self.metrics.count("scored", committed.written)
        self.metrics.count("dead_letter", committed.dead_lettered)
        self.metrics.count("duplicate", committed.duplicates)
        self.metrics.count("not_owned", committed.not_owned)
        if self.prediction_log is not None:
            # What this commit wrote: a redelivered event that already had a result is not logged again.
            by_position = {e.position: e for e in batch.events}
            for position in committed.owned_positions:
                if (scored := batch.scored.get(position)) is not None:
                    event = by_position[position]
                    data, prediction, score = scored
                    self.prediction_log.add(data, event.fields, prediction, score, event.arrived_ms)
            self.prediction_log.flush_due()
        return BatchOutcome(
            len(batch.events),
            committed.written,
            committed.dead_lettered,
            committed.duplicates,
            committed.not_owned,
        )

    def _score(self, batch: list[Any]) -> list[Any]:
        """Predictions for ``batch``; when the batch fails, each event alone (the failing ones get
        their exception, the others their prediction)."""
        if not batch:
            return []
        try:
            return list(self.model.predict(batch))
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            log.warning("model failed on a batch of %d events; scoring them one by one", len(batch))
        out: list[Any] = []
        for data in batch:
            try:
                out.extend(self.model.predict([data]))
            except Exception as exc:
                out.append(exc)
        return out

    @staticmethod
    def _parse(event: Event) -> Any:
        raw = event.fields.get("data")
        if raw is None:
            raise ValueError(f"event has no 'data' field (fields: {sorted(event.fields)[:10]})")
        return parse_json(raw)

    @staticmethod
    def _dead(event: Event, exc: BaseException, kind: str) -> Result:
        fields = {
            "status": kind,
            "error": f"{type(exc).__name__}: {exc}"[:2000],
            "problems": json.dumps(_problems(exc)[:20]),
            "data": str(event.fields.get("data", ""))[:MAX_DEAD_PAYLOAD],
        }
        return Result(event, fields, dead=True)
