"""Typed configuration of a stream scorer: where events come from and go to, and how it batches."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from airflow_mlpipe.config.base import MappingConfig
from airflow_mlpipe.config.monitoring import PredictionLogWriterConfig
from airflow_mlpipe.exceptions import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9_.:{}\-]+$")


@dataclass
class StreamConfig(MappingConfig):
    """One scored stream: input, output and dead-letter streams on one Redis.

    :param redis_url: ``redis://host:port/db`` of the Redis holding the streams.
    :param input_stream: stream the events arrive on (fields ``data``: a JSON object of the model's
        columns, or of entity keys when online features are configured; optional ``event_id`` and
        ``key``).
    :param output_stream: stream the scored events are written to.
    :param dead_letter_stream: stream malformed or unscorable events go to, with the reason
        (default: ``<input_stream>.dead``).
    :param group_prefix: consumer groups are ``<group_prefix>.<scorer name>`` (one per served version).
    :param batch_size: events read and scored together (micro-batch).
    :param block_ms: how long one read waits for new events.
    :param claim_idle_ms: pending events idle this long (their consumer died) are claimed by another.
    :param max_len: approximate cap of the output and dead-letter streams (``None``: no trimming).
    :param probabilities: also write a class probability (classifiers): ``score``, the positive
        class's for two classes (as the HTTP service's ``scores``), else ``probability``, the
        predicted class's.
    :param prediction_log: also log each scored event to the prediction log, so live quality
        monitoring judges the stream: ``uri`` (the log directory, as ``monitoring.prediction_log.uri``),
        ``keys`` (entity key columns) and optionally ``timestamp_column`` (the event time, ISO 8601;
        default ``event_timestamp``, else when the event arrived), read from the event's ``data``,
        else from its own fields beside ``data``.
    """

    redis_url: str
    input_stream: str
    output_stream: str
    dead_letter_stream: str | None = None
    group_prefix: str = "mlpipe"
    batch_size: int = 100
    block_ms: int = 200
    claim_idle_ms: int = 5_000
    max_len: int | None = 1_000_000
    probabilities: bool = True
    prediction_log: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not str(self.redis_url).startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"StreamConfig.redis_url must be a redis://, rediss:// or unix:// URL, got {self.redis_url!r}."
            )
        if self.dead_letter_stream in (None, ""):
            self.dead_letter_stream = f"{self.input_stream}.dead"
        names = {
            "input_stream": self.input_stream,
            "output_stream": self.output_stream,
            "dead_letter_stream": self.dead_letter_stream,
            "group_prefix": self.group_prefix,
        }
        for field, value in names.items():
            if not isinstance(value, str) or not _NAME.match(value):
                raise ConfigError(
                    f"StreamConfig.{field} must be a non-empty key name of letters, digits and "
                    f"'_.:{{}}-', got {value!r}."
                )
        if len(set(names.values()) - {self.group_prefix}) != 3:
            raise ConfigError(
                "StreamConfig input, output and dead-letter streams must be three different keys."
            )
        if not 1 <= self.batch_size <= 10_000:
            raise ConfigError(f"StreamConfig.batch_size must be in 1..10000, got {self.batch_size}.")
        if self.block_ms < 1 or self.claim_idle_ms < 1:
            raise ConfigError("StreamConfig.block_ms and claim_idle_ms must be >= 1 (milliseconds).")
        if self.prediction_log is not None:
            PredictionLogWriterConfig.of(self.prediction_log, "StreamConfig.prediction_log")
        if self.max_len is not None and self.max_len < 1:
            raise ConfigError(f"StreamConfig.max_len must be >= 1 or None, got {self.max_len}.")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def group(self, scorer: str) -> str:
        """The consumer group of the scorer named ``scorer``."""
        return f"{self.group_prefix}.{scorer}"
