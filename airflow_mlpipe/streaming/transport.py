"""The stream transport interface the scorer and the rollout drive.

A transport delivers events to the consumers of a group, and commits results: it writes each
scored or dead-lettered event **and** acknowledges its input in one atomic step, skipping an event
whose ``event_id`` already has a result (idempotent output) or that another scorer owns under the
current routing epoch (canary share, hand-over). Nothing else in the scorer knows the broker, so a
Kafka transport (consumer group offsets, transactional producer, a compacted topic of results keyed by
event id) plugs in by implementing this protocol; Redis Streams is :mod:`airflow_mlpipe.streaming.redis_streams`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

#: routing shares are expressed in buckets of the event key's hash
BUCKETS = 10_000


def bucket(key: str) -> int:
    """The routing bucket of an event key (stable across processes and versions)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % BUCKETS


@dataclass
class Event:
    """One input event as read from the stream.

    :param position: the transport's position of the event (Redis entry id, Kafka partition:offset).
    :param fields: the raw fields of the event.
    :param arrived_ms: when the broker received it (epoch milliseconds), if it says.
    """

    position: str
    fields: dict[str, str]
    arrived_ms: float | None = None

    @property
    def event_id(self) -> str:
        """The idempotency key of the event: its ``event_id`` field, else its position."""
        return self.fields.get("event_id") or self.position

    @property
    def key(self) -> str:
        """The routing key (canary share): its ``key`` field, else the event id."""
        return self.fields.get("key") or self.event_id

    @functools.cached_property
    def bucket(self) -> int:
        """The routing bucket of :attr:`key` (computed once: the ownership check and the commit
        both need it)."""
        return bucket(self.key)


@dataclass
class Result:
    """What became of one event: a scored record or a dead letter.

    :param fields: the record's own fields; the transport writes ``event_id`` and
        ``input_position`` of ``event`` before them and the batch's common fields after them.
    :param dead: ``True`` sends ``fields`` to the dead-letter stream instead of the output stream.
    :param skipped: not scored because another scorer owns it (:meth:`StreamTransport.owned`): it is
        acknowledged when the commit confirms that, else left pending to be read again.
    :param with_data: the record also holds the event's ``data`` field, as it is in the input
        stream (a transport may copy it there rather than send it back).
    """

    event: Event
    fields: dict[str, str]
    dead: bool = False
    skipped: bool = False
    with_data: bool = False


@dataclass
class Committed:
    """Outcome of :meth:`StreamTransport.commit`."""

    written: int = 0
    dead_lettered: int = 0
    duplicates: int = 0  # already had a result (a redelivery after a crash)
    not_owned: int = 0  # another scorer owns them in the routing epoch
    owned_positions: list[str] = field(default_factory=list)


@runtime_checkable
class StreamTransport(Protocol):
    """Consumer-group access to one input stream and atomic commits of results."""

    def ensure_group(self, group: str, start: str) -> None:
        """Create ``group`` reading from ``start`` (a position, ``"0"`` or ``"$"``) if it is missing."""
        ...

    def read(self, group: str, consumer: str, count: int, block_ms: int) -> list[Event]:
        """New events for ``consumer``; its own unacknowledged ones first after a restart. Waits up
        to ``block_ms`` for new events when there are none (``0``: does not wait)."""
        ...

    def claim_stale(self, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Event]:
        """Take over events delivered to consumers that stopped acknowledging them (crashed)."""
        ...

    def owned(self, owner: str, events: list[Event]) -> list[bool]:
        """Whether ``owner`` may own each event (``False`` only when another scorer certainly
        does), so a scorer skips scoring events that the commit would discard."""
        ...

    def commit(
        self,
        group: str,
        owner: str,
        results: list[Result],
        common: dict[str, str] | None = None,
    ) -> Committed:
        """Write results not written before and owned by ``owner``; acknowledge every input.

        :param common: fields written in every record of this commit (model version, scorer, time),
            sent once per batch rather than once per event.
        """
        ...

    def send_commit(
        self,
        group: str,
        owner: str,
        results: list[Result],
        common: dict[str, str] | None = None,
    ) -> Callable[[], Committed]:
        """:meth:`commit` without waiting for it: the returned function waits and gives its
        outcome (called once). The scorer scores the next micro-batch meanwhile."""
        ...

    def describe_model(self, identity: dict[str, str]) -> None:
        """Keep the identity of a served model version (``model_name``, ``model_version``,
        ``fingerprint``) beside the output, once per version: scored events name the version only."""
        ...

    def set_route(self, owners: dict[str, tuple[int, int]]) -> str:
        """Start a routing epoch: events after the returned position go to ``owners``
        (scorer → bucket range ``[lo, hi)``); earlier events keep their epoch."""
        ...

    def group_state(self, group: str) -> dict[str, Any]:
        """``lag`` (not yet delivered), ``pending`` (delivered, unacknowledged) and ``last_delivered``."""
        ...

    def drained(self, group: str, upto: str) -> bool:
        """Every event at or before ``upto`` was delivered to ``group`` and acknowledged."""
        ...

    def remove_group(self, group: str) -> None: ...
