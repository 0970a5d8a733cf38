"""Triggers that wait for new data without holding a worker slot.

* :class:`NewDataTrigger` — for the deferrable :class:`~airflow_mlpipe.sensors.monitoring.NewDataSensor`:
  one event, new files or a timeout at an absolute deadline.
* :class:`NewBatchEventTrigger` — for ``AssetWatcher``: runs for as long as the DAG is deployed and
  emits one event per new batch, so a batch landing starts the monitoring DAG without a cron
  schedule. Its watermark (identities already announced) is persisted in the watched asset's state
  store in the metadata DB, so a triggerer restart neither re-announces old files nor misses files
  that landed while it was down.

Both store primitives only, ``serialize()`` mirrors ``__init__``, and file listing runs in a thread.
"""

from __future__ import annotations

import asyncio
import enum
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

from airflow_mlpipe.monitoring.files import batch_key, list_files


class TriggerStatus(enum.StrEnum):
    """Status of a monitoring trigger event; shared with the sensor's ``execute_complete``."""

    NEW_DATA = "new_data"
    TIMEOUT = "timeout"
    ERROR = "error"


class NewDataTrigger(BaseTrigger):
    """Fire once when at least ``min_files`` settled files newer than ``since`` exist under ``uri``.

    :param uri: directory new batch files land in.
    :param pattern: file name glob (``*.parquet``).
    :param since: watermark, epoch seconds: only files modified after it count.
    :param deadline: absolute epoch seconds after which a ``timeout`` event is sent.
    :param poll_interval: seconds between listings.
    :param min_age_seconds: a file younger than this may still be being written.
    :param min_files: how many new files make the event.
    """

    def __init__(
        self,
        uri: str,
        pattern: str = "*",
        since: float = 0.0,
        deadline: float | None = None,
        poll_interval: float = 10.0,
        min_age_seconds: float = 2.0,
        min_files: int = 1,
    ) -> None:
        super().__init__()
        self.uri = uri
        self.pattern = pattern
        self.since = float(since)
        self.deadline = None if deadline is None else float(deadline)
        self.poll_interval = float(poll_interval)
        self.min_age_seconds = float(min_age_seconds)
        self.min_files = int(min_files)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "uri": self.uri,
                "pattern": self.pattern,
                "since": self.since,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "min_age_seconds": self.min_age_seconds,
                "min_files": self.min_files,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            while True:
                files = await asyncio.to_thread(
                    list_files, self.uri, self.pattern, min_age_seconds=self.min_age_seconds
                )
                new = [f for f in files if f["mtime"] > self.since]
                if len(new) >= self.min_files:
                    yield TriggerEvent(
                        {
                            "status": TriggerStatus.NEW_DATA.value,
                            "uri": self.uri,
                            "files": new,
                            "batch_key": batch_key(new),
                            "watermark": max(f["mtime"] for f in new),
                        }
                    )
                    return
                now = time.time()
                if self.deadline is not None and now >= self.deadline:
                    yield TriggerEvent(
                        {
                            "status": TriggerStatus.TIMEOUT.value,
                            "uri": self.uri,
                            "message": f"no {self.min_files} new file(s) under {self.uri} by the deadline",
                        }
                    )
                    return
                wait = self.poll_interval
                if self.deadline is not None:
                    wait = max(0.0, min(wait, self.deadline - now))
                await asyncio.sleep(wait)
        except Exception as exc:  # report, so the sensor fails with the reason instead of hanging
            yield TriggerEvent(
                {
                    "status": TriggerStatus.ERROR.value,
                    "uri": self.uri,
                    "message": f"{type(exc).__name__}: {exc}",
                }
            )


class NewBatchEventTrigger(BaseEventTrigger):
    """Emit one event per new batch of files under ``uri``, forever (for ``AssetWatcher``).

    Files that keep arriving within ``quiet_seconds`` of each other form one batch (one event, one
    DAG run) — a burst does not start a run per file.

    :param uri: directory new batch files land in.
    :param pattern: file name glob.
    :param poll_interval: seconds between listings.
    :param min_age_seconds: a file younger than this may still be being written.
    :param quiet_seconds: wait until no new file appeared for this long before announcing a batch.
    :param include_existing: announce files already present when the watcher first starts.
    :param state_key: key of the watermark in the watched asset's state store.
    :param state_path: JSON file for the watermark when no asset state store is available.
    """

    def __init__(
        self,
        uri: str,
        pattern: str = "*",
        poll_interval: float = 10.0,
        min_age_seconds: float = 2.0,
        quiet_seconds: float = 0.0,
        include_existing: bool = False,
        state_key: str = "mlpipe.batch_watermark",
        state_path: str | None = None,
    ) -> None:
        super().__init__()
        self.uri = uri
        self.pattern = pattern
        self.poll_interval = float(poll_interval)
        self.min_age_seconds = float(min_age_seconds)
        self.quiet_seconds = float(quiet_seconds)
        self.include_existing = bool(include_existing)
        self.state_key = state_key
        self.state_path = state_path

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "uri": self.uri,
                "pattern": self.pattern,
                "poll_interval": self.poll_interval,
                "min_age_seconds": self.min_age_seconds,
                "quiet_seconds": self.quiet_seconds,
                "include_existing": self.include_existing,
                "state_key": self.state_key,
                "state_path": self.state_path,
            },
        )

    # -- watermark persistence ------------------------------------------------------------------
    async def _load(self) -> list[str] | None:
        store = self.asset_state_store
        if store is not None:
            value = await store.aget(self.state_key)
            return None if not isinstance(value, list) else [str(v) for v in value]
        if self.state_path:
            return await asyncio.to_thread(_read_json, self.state_path)
        return getattr(self, "_memory", None)

    async def _save(self, seen: list[str]) -> None:
        store = self.asset_state_store
        if store is not None:
            await store.aset(self.state_key, list[Any](seen))
        elif self.state_path:
            await asyncio.to_thread(_write_json, self.state_path, seen)
        else:
            self._memory = seen

    async def _list(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(
            list_files, self.uri, self.pattern, min_age_seconds=self.min_age_seconds
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        stored = await self._load()
        self.log.info(
            "Watching %s/%s; %s known file(s)",
            self.uri,
            self.pattern,
            "no" if stored is None else len(stored),
        )
        if stored is None:
            current = [] if self.include_existing else [f["key"] for f in await self._list()]
            await self._save(current)
            stored = current
        seen = set(stored)
        while True:
            listing = await self._list()
            new = [f for f in listing if f["key"] not in seen]
            if new and self.quiet_seconds > 0:
                # Let a burst finish: keep listing until a quiet period brings nothing more.
                while True:
                    await asyncio.sleep(self.quiet_seconds)
                    listing = await self._list()
                    more = [f for f in listing if f["key"] not in seen]
                    if len(more) == len(new):
                        break
                    new = more
            if new:
                self.log.info("New batch of %d file(s) under %s", len(new), self.uri)
                yield TriggerEvent(
                    {
                        "status": TriggerStatus.NEW_DATA.value,
                        "uri": self.uri,
                        "files": new,
                        "batch_key": batch_key(new),
                    }
                )
                # Persisted after the event is handed over: a crash in between can announce a
                # batch twice (consumers claim files, see monitoring.files.claim) but never lose it.
                # Identities of files that disappeared are dropped so the watermark stays small.
                seen = {f["key"] for f in listing}
                await self._save(sorted(seen))
            await asyncio.sleep(self.poll_interval)


def _read_json(path: str) -> list[str] | None:
    from airflow_mlpipe.core.storage import resolve

    target = resolve(path)
    if not target.exists():
        return None
    return list(json.loads(target.read_text()))


def _write_json(path: str, value: list[str]) -> None:
    import os

    from airflow_mlpipe.core.storage import local_path, resolve

    target = resolve(path)
    local = local_path(target)
    if local is None:
        target.write_text(json.dumps(value))
        return
    os.makedirs(os.path.dirname(local), exist_ok=True)
    tmp = f"{local}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(value, fh)
    os.replace(tmp, local)
