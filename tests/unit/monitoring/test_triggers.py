"""Monitoring triggers run directly under asyncio: one event, deadlines, bursts, persisted watermark."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time

import pytest

from airflow_mlpipe.monitoring.files import claim
from airflow_mlpipe.triggers.monitoring import NewBatchEventTrigger, NewDataTrigger, TriggerStatus


def _touch(path, age: float = 10.0, data: bytes = b"x") -> None:
    path.write_bytes(data)
    t = time.time() - age
    os.utime(path, (t, t))


async def _first(trigger, timeout: float = 10.0):
    gen = trigger.run()
    try:
        return await asyncio.wait_for(gen.__anext__(), timeout)
    finally:
        await gen.aclose()


def test_serialize_mirrors_init(tmp_path):
    for cls, kwargs in [
        (NewDataTrigger, {"uri": str(tmp_path), "pattern": "*.pq", "since": 5.0, "deadline": 99.0}),
        (NewBatchEventTrigger, {"uri": str(tmp_path), "quiet_seconds": 1.0, "state_path": "/x.json"}),
    ]:
        trigger = cls(**kwargs)
        classpath, saved = trigger.serialize()
        assert classpath == f"airflow_mlpipe.triggers.monitoring.{cls.__name__}"
        rebuilt = cls(**saved)
        assert rebuilt.serialize() == (classpath, saved)
        assert all(isinstance(v, (str, int, float, bool, type(None))) for v in saved.values())


def test_new_data_trigger_fires_once_for_settled_new_files(tmp_path):
    _touch(tmp_path / "old.parquet", age=1000)
    since = time.time() - 100
    trigger = NewDataTrigger(uri=str(tmp_path), pattern="*.parquet", since=since, poll_interval=0.05)

    def land():
        time.sleep(0.2)
        _touch(tmp_path / "b1.parquet.tmp-1", age=10)  # temporary name: ignored
        _touch(tmp_path / "b1.parquet", age=10)

    threading.Thread(target=land).start()
    event = asyncio.run(_first(trigger))
    assert event.payload["status"] == TriggerStatus.NEW_DATA
    assert [os.path.basename(f["path"]) for f in event.payload["files"]] == ["b1.parquet"]


def test_new_data_trigger_times_out_at_absolute_deadline_and_never_blocks(tmp_path):
    trigger = NewDataTrigger(uri=str(tmp_path / "none"), deadline=time.time() + 0.3, poll_interval=5)

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        event = await _first(trigger)
        task.cancel()
        return event, time.monotonic() - started, ticks

    event, elapsed, ticks = asyncio.run(main())
    assert event.payload["status"] == TriggerStatus.TIMEOUT
    assert 0.2 < elapsed < 2.0  # the deadline cut the 5 s poll short
    assert ticks > 10  # the event loop kept running while the trigger waited


def test_new_data_trigger_reports_errors_as_error_events(tmp_path):
    (tmp_path / "file").write_text("x")
    event = asyncio.run(_first(NewDataTrigger(uri=str(tmp_path / "file"))))
    assert event.payload["status"] == TriggerStatus.ERROR
    assert "not a directory" in event.payload["message"]


def test_batch_watcher_burst_is_one_event_and_restart_neither_repeats_nor_loses(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    _touch(landing / "history.parquet", age=1000)
    state = str(tmp_path / "state" / "watermark.json")

    def make():
        return NewBatchEventTrigger(
            uri=str(landing),
            pattern="*.parquet",
            poll_interval=0.05,
            min_age_seconds=0.0,
            quiet_seconds=0.3,
            state_path=state,
        )

    async def collect(trigger, n_events: int, during=None, timeout: float = 10.0, settle: bool = True):
        events = []
        gen = trigger.run()

        async def consume():
            async for ev in gen:
                events.append(ev.payload)
                if len(events) == n_events:
                    break
            if settle:  # let the trigger carry on past the hand-over, as the triggerer does
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gen.__anext__(), 0.3)

        task = asyncio.create_task(consume())
        if during is not None:
            await asyncio.sleep(0.2)
            await asyncio.to_thread(during)
        try:
            await asyncio.wait_for(task, timeout)
        finally:
            await gen.aclose()
        return events

    def burst():
        for i in range(5):  # five files within the quiet period: one batch
            _touch(landing / f"b{i}.parquet", age=0)
            time.sleep(0.05)

    events = asyncio.run(collect(make(), 1, during=burst))
    assert len(events) == 1
    assert sorted(os.path.basename(f["path"]) for f in events[0]["files"]) == [
        f"b{i}.parquet" for i in range(5)
    ]

    # "Restart": a new trigger instance with the same kwargs; a file landed while it was down.
    _touch(landing / "while_down.parquet", age=0)
    events = asyncio.run(collect(make(), 1))
    assert [os.path.basename(f["path"]) for f in events[0]["files"]] == ["while_down.parquet"]

    # Nothing new: no event at all within several polls.
    with pytest.raises(TimeoutError):
        asyncio.run(collect(make(), 1, timeout=0.6))

    # A crash right at the hand-over (before the watermark is saved) re-announces the batch on
    # restart — at least once, never lost — and the claim ledger lets only one run process it.
    _touch(landing / "late.parquet", age=0)
    first = asyncio.run(collect(make(), 1, settle=False))
    again = asyncio.run(collect(make(), 1))
    assert first[0]["batch_key"] == again[0]["batch_key"]
    ledger = str(tmp_path / "ledger")
    keys = [f["key"] for f in first[0]["files"]]
    assert claim(keys, ledger) == keys
    assert claim([f["key"] for f in again[0]["files"]], ledger) == []
