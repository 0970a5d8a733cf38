"""A bounded load loop against a loopback endpoint (tests, demo and benchmarks only).

It refuses any host but loopback, stops after ``max_requests`` or ``max_seconds``, and records
every outcome, so "zero failed requests during a switch" is something a test can assert.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_mlpipe.exceptions import ConfigError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class LoadStats:
    """Outcomes of a load run."""

    statuses: Counter[Any] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: each failed request's error type and when it was sent (``time.time()``)
    failures: list[tuple[str, float]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        return self.total - self.statuses.get(200, 0)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(q: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 3) if lat else None

        return {
            "total": self.total,
            "failed": self.failed,
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "versions": dict(self.versions),
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "errors": self.errors[:5],
        }


class LoadLoop:
    """Send ``{"rows": rows}`` to ``<url>/predict`` from ``concurrency`` threads until stopped.

    Each request uses a new connection, as independent clients would; use as a context manager or
    call :meth:`start` / :meth:`stop`. ``interval`` paces each thread (seconds between requests), for
    steady background traffic instead of a saturating load.
    """

    def __init__(
        self,
        url: str,
        rows: list[dict[str, Any]],
        *,
        concurrency: int = 2,
        max_requests: int = 100_000,
        max_seconds: float = 300.0,
        path: str = "/predict",
        timeout: float = 10.0,
        interval: float = 0.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.hostname not in LOOPBACK:
            raise ConfigError(f"The load loop only targets loopback addresses, not {parts.hostname!r}.")
        self.host, self.port = parts.hostname or "127.0.0.1", int(parts.port or 80)
        self.path = path
        self.body = json.dumps({"rows": rows}).encode()
        self.concurrency = concurrency
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.timeout = timeout
        self.interval = interval
        self.stats = LoadStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sent = 0

    def _take(self) -> bool:
        with self._lock:
            if self._sent >= self.max_requests:
                return False
            self._sent += 1
            return True

    def _worker(self, deadline: float) -> None:
        headers = {"Content-Type": "application/json"}
        while not self._stop.is_set() and time.monotonic() < deadline and self._take():
            t0 = time.perf_counter()
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                conn.request("POST", self.path, body=self.body, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                status: Any = resp.status
                version = None
                if status == 200:
                    version = str(json.loads(payload).get("model_version"))
            except Exception as exc:  # connection refused/reset: exactly what we count
                status, version = type(exc).__name__, None
                with self._lock:
                    # when it was sent (UTC), to line it up with the logs of a rollout
                    sent_at = time.time() - (time.perf_counter() - t0)
                    sent = dt.datetime.fromtimestamp(sent_at, dt.UTC)
                    self.stats.errors.append(f"{type(exc).__name__}: {exc} (sent {sent:%H:%M:%S.%f})")
                    self.stats.failures.append((type(exc).__name__, sent_at))
            finally:
                conn.close()
            elapsed = time.perf_counter() - t0
            with self._lock:
                self.stats.statuses[status] += 1
                if version is not None:
                    self.stats.versions[version] += 1
                if status == 200:
                    self.stats.latencies.append(elapsed)
            if self.interval:
                self._stop.wait(self.interval)

    def start(self) -> LoadLoop:
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.concurrency):
            t = threading.Thread(target=self._worker, args=(deadline,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def wait(self) -> LoadStats:
        for t in self._threads:
            t.join()
        return self.stats

    def stop(self) -> LoadStats:
        self._stop.set()
        return self.wait()

    def __enter__(self) -> LoadLoop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
