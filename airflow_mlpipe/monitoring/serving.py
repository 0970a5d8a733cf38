"""Serving health from a Prometheus ``/metrics`` endpoint: latency quantile and error rate.

BentoML 1.4 exports, per HTTP request path and status (``instruments.py``):
``bentoml_service_request_duration_seconds`` (histogram; ``_bucket{le=…}``, ``_sum``, ``_count``) and
``bentoml_service_request_total`` (counter), both labelled ``endpoint``, ``service_name``,
``service_version``, ``http_response_code``. Counters grow from process start, so a *window* is
the difference of two scrapes; one scrape gives the totals since start.
"""

from __future__ import annotations

import math
import re
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from airflow_mlpipe.config.monitoring import ServingHealthConfig
from airflow_mlpipe.exceptions import DataError

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_SKIPPED_PATHS = ("/metrics", "/readyz", "/livez", "/healthz", "/docs", "/schema.json")

Sample = tuple[str, dict[str, str], float]


def parse(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition: ``(name, labels, value)``."""
    samples: list[Sample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise DataError(f"Not Prometheus text format: {line[:200]!r}")
        name, _, labels, value, _ts = match.groups()
        parsed = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(labels or "")}
        try:
            number = float(value)
        except ValueError:
            raise DataError(f"Bad sample value in {line[:200]!r}") from None
        samples.append((name, parsed, number))
    return samples


def scrape(url: str, timeout: float = 10.0) -> list[Sample]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode("utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"Could not scrape metrics from {url}: {exc}") from exc
    return parse(text)


def _wanted(labels: dict[str, str], cfg: ServingHealthConfig) -> bool:
    endpoint = labels.get("endpoint", "")
    if cfg.endpoints is not None:
        return endpoint in cfg.endpoints
    return not endpoint.startswith(_SKIPPED_PATHS)


def aggregate(samples: Iterable[Sample], cfg: ServingHealthConfig) -> dict[str, Any]:
    """Totals over the wanted endpoints: requests, errors (5xx), histogram buckets."""
    duration = f"{cfg.metric_prefix}request_duration_seconds"
    total = f"{cfg.metric_prefix}request_total"
    buckets: dict[float, float] = defaultdict(float)
    requests = errors = 0.0
    duration_sum = duration_count = 0.0
    seen_total = False
    for name, labels, value in samples:
        if not _wanted(labels, cfg):
            continue
        if name == total:
            seen_total = True
            requests += value
            if labels.get("http_response_code", "").startswith("5"):
                errors += value
        elif name == f"{duration}_bucket":
            buckets[float(labels["le"])] += value
        elif name == f"{duration}_sum":
            duration_sum += value
        elif name == f"{duration}_count":
            duration_count += value
    return {
        "found": seen_total or bool(buckets),
        "requests": requests,
        "errors": errors,
        "buckets": dict(buckets),
        "duration_sum": duration_sum,
        "duration_count": duration_count,
    }


def difference(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The window between two aggregates (a restart in between resets counters: use ``after``)."""
    if after["requests"] < before["requests"]:
        return after
    return {
        "found": after["found"],
        "requests": after["requests"] - before["requests"],
        "errors": after["errors"] - before["errors"],
        "buckets": {le: n - before["buckets"].get(le, 0.0) for le, n in after["buckets"].items()},
        "duration_sum": after["duration_sum"] - before["duration_sum"],
        "duration_count": after["duration_count"] - before["duration_count"],
    }


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket holding rank q·n."""
    if not buckets:
        return None
    ordered = sorted(buckets.items())
    count = ordered[-1][1]
    if count <= 0:
        return None
    rank = q * count
    lower_bound, lower_count = 0.0, 0.0
    for bound, cumulative in ordered:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower_bound  # above the largest finite bucket: its bound is all we know
            if cumulative == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (cumulative - lower_count)
        lower_bound, lower_count = bound, cumulative
    return ordered[-1][0]


def evaluate(window: dict[str, Any], cfg: ServingHealthConfig) -> dict[str, Any]:
    """Latency quantile and error rate of ``window`` against the thresholds."""
    if not window["found"]:
        raise DataError(
            f"No {cfg.metric_prefix}request_* metrics for the selected endpoints; "
            "is this a BentoML service, and has metric_prefix/endpoints the right value?"
        )
    requests = window["requests"] or window["duration_count"]
    latency = histogram_quantile(cfg.latency_quantile, window["buckets"])
    error_rate = (window["errors"] / requests) if requests else None
    judged = requests >= cfg.min_requests and requests > 0
    breaches = []
    if judged and latency is not None and latency > cfg.max_latency_seconds:
        breaches.append("latency")
    if judged and error_rate is not None and error_rate > cfg.max_error_rate:
        breaches.append("error_rate")
    return {
        "healthy": not breaches,
        "judged": judged,
        "breaches": breaches,
        "requests": requests,
        "errors": window["errors"],
        "error_rate": error_rate,
        "latency_quantile": cfg.latency_quantile,
        "latency_seconds": latency,
        "mean_latency_seconds": (window["duration_sum"] / window["duration_count"])
        if window["duration_count"]
        else None,
        "thresholds": {"max_latency_seconds": cfg.max_latency_seconds, "max_error_rate": cfg.max_error_rate},
    }
