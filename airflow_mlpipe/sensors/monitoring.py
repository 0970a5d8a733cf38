"""Deferrable sensor waiting for new batch files: one poke in the worker, then the triggerer waits."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.sensor import BaseSensorOperator

from airflow_mlpipe.exceptions import ConfigError, MlpipeError
from airflow_mlpipe.triggers.monitoring import NewDataTrigger, TriggerStatus

if TYPE_CHECKING:
    from airflow.sdk import Context


def _watermark(value: Any) -> float:
    """Epoch seconds from a number, an ISO timestamp string or a datetime; ``None``/"" → 0."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.timestamp()
    text = str(value)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"since={value!r} is neither epoch seconds nor an ISO timestamp.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


class NewDataSensor(BaseSensorOperator):
    """Wait until new files land under ``uri`` (modified after ``since``), holding no worker slot.

    Checks once in the worker; if nothing is there yet it defers to :class:`NewDataTrigger` until
    files arrive or ``timeout`` passes (then it fails, or is skipped with ``soft_fail``). Returns
    ``{"uri", "files": [{"path", "size", "mtime", "key"}], "batch_key", "watermark"}``.

    :param uri: directory new batches land in.
    :param pattern: file name glob.
    :param since: watermark — epoch seconds, ISO timestamp or datetime (templated, e.g.
        ``"{{ data_interval_start }}"``); default 0 (any file).
    :param min_files: number of new files to wait for.
    :param min_age_seconds: ignore files modified more recently than this (still being written).
    """

    template_fields: Sequence[str] = ("uri", "pattern", "since", "min_files")
    ui_color = "#e8f0ff"

    def __init__(
        self,
        *,
        uri: str,
        pattern: str = "*",
        since: Any = None,
        min_files: int = 1,
        min_age_seconds: float = 2.0,
        poke_interval: float = 10.0,
        timeout: float = 60 * 60 * 24,
        **kwargs: Any,
    ) -> None:
        # Always deferrable (execute() defers): waiting for data must not occupy a worker slot.
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.uri = uri
        self.pattern = pattern
        self.since = since
        self.min_files = min_files
        self.min_age_seconds = min_age_seconds

    def _trigger(self, deadline: float | None) -> NewDataTrigger:
        return NewDataTrigger(
            uri=self.uri,
            pattern=self.pattern,
            since=_watermark(self.since),
            deadline=deadline,
            poll_interval=float(self.poke_interval),
            min_age_seconds=self.min_age_seconds,
            min_files=int(self.min_files),
        )

    def poke(self, context: Context) -> bool:  # pragma: no cover - execute() is overridden
        return bool(self._find())

    def _find(self) -> list[dict[str, Any]]:
        from airflow_mlpipe.monitoring.files import list_files

        since = _watermark(self.since)
        new = [
            f
            for f in list_files(self.uri, self.pattern, min_age_seconds=self.min_age_seconds)
            if f["mtime"] > since
        ]
        return new if len(new) >= int(self.min_files) else []

    def execute(self, context: Context) -> Any:
        from airflow_mlpipe.monitoring.files import batch_key

        if int(self.min_files) < 1:
            raise ConfigError(f"min_files must be >= 1, got {self.min_files!r}.")
        new = self._find()
        if new:
            return {
                "uri": self.uri,
                "files": new,
                "batch_key": batch_key(new),
                "watermark": max(f["mtime"] for f in new),
            }
        self.defer(
            trigger=self._trigger(deadline=time.time() + float(self.timeout)),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=float(self.timeout) + 60),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from airflow.exceptions import AirflowSensorTimeout, AirflowSkipException

        try:
            status = TriggerStatus(str(event.get("status")))
        except ValueError:
            raise MlpipeError(f"Unexpected trigger event {event!r}") from None
        if status is TriggerStatus.NEW_DATA:
            return {k: event[k] for k in ("uri", "files", "batch_key", "watermark")}
        if status is TriggerStatus.TIMEOUT:
            if self.soft_fail:
                raise AirflowSkipException(event.get("message", "timed out"))
            raise AirflowSensorTimeout(event.get("message", "timed out"))
        raise MlpipeError(f"Waiting for new data under {self.uri} failed: {event.get('message')}")
