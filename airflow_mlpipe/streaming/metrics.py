"""The stream scorer's metrics in the Prometheus text format, served on ``/metrics``.

The names follow BentoML's HTTP metrics so the serving-health check and the canary analysis read a
scorer the way they read a service, with ``metric_prefix="mlpipe_stream_"``: one *request* is one
event, ``endpoint`` is the input stream, and ``http_response_code`` is ``200`` (scored), ``400``
(malformed, dead-lettered) or ``500`` (the model failed on it, dead-lettered).

- ``mlpipe_stream_request_total`` (counter) and ``mlpipe_stream_request_duration_seconds`` (histogram:
  read → result committed, per event);
- ``mlpipe_stream_event_latency_seconds`` (histogram: event appended to the stream → result committed);
- ``mlpipe_stream_events_total{outcome}`` (counter: ``scored``, ``dead_letter``, ``duplicate``,
  ``not_owned``) — its rate is the throughput;
- ``mlpipe_stream_consumer_lag`` and ``mlpipe_stream_pending`` (gauges of the consumer group).
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "mlpipe_stream_"
#: seconds; fine at the low end (a micro-batch scores in milliseconds)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STATUS = {"scored": "200", "malformed": "400", "model_error": "500"}


def _labels(labels: dict[str, str]) -> str:
    escaped = {k: str(v).replace("\\", "\\\\").replace('"', '\\"') for k, v in labels.items()}
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(escaped.items()))
    return "{" + inner + "}" if inner else ""


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, value: float, n: int = 1) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += n
        self.sum += value * n

    def render(self, name: str, labels: dict[str, str]) -> list[str]:
        lines, cumulative = [], 0
        for bound, count in zip((*BUCKETS, float("inf")), self.counts, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f"{name}_bucket{_labels({**labels, 'le': le})} {cumulative}")
        lines.append(f"{name}_sum{_labels(labels)} {self.sum}")
        lines.append(f"{name}_count{_labels(labels)} {cumulative}")
        return lines


class StreamMetrics:
    """Counters, histograms and gauges of one scorer process (thread-safe).

    :param labels: labels on every sample (``endpoint`` = input stream, ``scorer``, ``model_version``).
    """

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = dict(labels)
        self._lock = threading.Lock()
        self.requests: dict[str, int] = defaultdict(int)
        self.events: dict[str, int] = defaultdict(int)
        self.duration = _Histogram()
        self.latency = _Histogram()
        self.gauges: dict[str, float] = {}

    def record(self, status: str, n: int, seconds: float) -> None:
        """``n`` events of outcome ``status`` (a key of :data:`STATUS`), each ``seconds`` from read to commit."""
        if n:
            with self._lock:
                self.requests[STATUS[status]] += n
                if status == "scored":  # like BentoML's histogram read with a 2xx filter
                    self.duration.observe(seconds, n)

    def count(self, outcome: str, n: int) -> None:
        with self._lock:
            self.events[outcome] += n

    def observe_latency(self, seconds: list[float]) -> None:
        with self._lock:
            for s in seconds:
                self.latency.observe(s)

    def set_gauge(self, name: str, value: float | None) -> None:
        with self._lock:
            if value is None:
                self.gauges.pop(name, None)
            else:
                self.gauges[name] = float(value)

    def render(self) -> str:
        with self._lock:
            lines = [f"# TYPE {PREFIX}request_total counter"]
            for code, n in sorted(self.requests.items()):
                lines.append(
                    f"{PREFIX}request_total{_labels({**self.labels, 'http_response_code': code})} {n}"
                )
            lines.append(f"# TYPE {PREFIX}request_duration_seconds histogram")
            lines += self.duration.render(
                f"{PREFIX}request_duration_seconds", {**self.labels, "http_response_code": "200"}
            )
            lines.append(f"# TYPE {PREFIX}event_latency_seconds histogram")
            lines += self.latency.render(f"{PREFIX}event_latency_seconds", self.labels)
            lines.append(f"# TYPE {PREFIX}events_total counter")
            for outcome, n in sorted(self.events.items()):
                lines.append(f"{PREFIX}events_total{_labels({**self.labels, 'outcome': outcome})} {n}")
            for name, value in sorted(self.gauges.items()):
                lines.append(f"# TYPE {PREFIX}{name} gauge")
                lines.append(f"{PREFIX}{name}{_labels(self.labels)} {value}")
        return "\n".join(lines) + "\n"


def serve_metrics(
    render: Callable[[], str], port: int, host: str = "127.0.0.1", ready: Any = None
) -> ThreadingHTTPServer:
    """Serve ``render()`` on ``/metrics``, ``/livez`` and ``/readyz`` (``ready()`` true) from a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                body, code = render().encode(), 200
            elif self.path == "/livez":
                body, code = b"ok", 200
            elif self.path == "/readyz":
                ok = ready is None or ready()
                body, code = (b"ok", 200) if ok else (b"starting", 503)
            else:
                body, code = b"not found", 404
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # scrapes every few seconds: keep the log quiet
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="mlpipe-stream-metrics", daemon=True).start()
    return server
