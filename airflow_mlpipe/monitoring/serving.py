"""Serving health from a Prometheus ``/metrics`` endpoint: latency quantile and error rate.

BentoML 1.4 exports, per HTTP request path and status (``instruments.py``):
``bentoml_service_request_duration_seconds`` (histogram; ``_bucket{le=…}``, ``_sum``, ``_count``) and
``bentoml_service_request_total`` (counter), both labelled ``endpoint``, ``service_name``,
``service_version``, ``http_response_code``. Counters grow from process start, so a *window* is
the difference of two scrapes; one scrape gives the totals since start.
Parsing and quantiles are :mod:`airflow_mlpipe.core.prometheus`'s (shared with the canary analysis).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from airflow_mlpipe.config.monitoring import ServingHealthConfig
from airflow_mlpipe.core.prometheus import Sample, bucket_delta, histogram_quantile, parse, scrape
from airflow_mlpipe.exceptions import DataError

_SKIPPED_PATHS = ("/metrics", "/readyz", "/livez", "/healthz", "/docs", "/schema.json")

__all__ = ["aggregate", "difference", "evaluate", "histogram_quantile", "parse", "scrape"]


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
        "buckets": bucket_delta(after["buckets"], before["buckets"]),
        "duration_sum": after["duration_sum"] - before["duration_sum"],
        "duration_count": after["duration_count"] - before["duration_count"],
    }


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
