"""Checks of a served version: smoke test against local predictions, canary and watch-window
analysis from metrics.

The canary decision is a pure function of two snapshots (proxy counters + BentoML latency
histograms, taken at the start and the end of the window), so it can be reasoned about and tested
without waiting for traffic.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from airflow_mlpipe.config.deploy import CanaryConfig, SmokeTestConfig, WatchConfig
from airflow_mlpipe.core.prometheus import (
    Sample,
    bucket_delta,
    histogram_buckets,
    histogram_quantile,
    parse,
    scrape,
)
from airflow_mlpipe.core.results import jsonable
from airflow_mlpipe.exceptions import DataError, MlpipeError, QualityGateFailed


class SmokeTestFailed(QualityGateFailed):
    """A new version failed to answer, or answered differently from the registry model."""


class CanaryFailed(QualityGateFailed):
    """The canary was worse than stable (errors, latency, no traffic or down) and was rolled back."""


def post_json(url: str, body: Any, timeout: float = 30.0) -> tuple[int, Any]:
    """POST JSON; return (status, parsed body) for any HTTP status."""
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"null")
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def holdout_rows(cfg: SmokeTestConfig, features: list[str]) -> Any:
    """The first ``cfg.rows`` complete rows of the holdout dataset, feature columns only."""
    from airflow_mlpipe.core.datasets import read_table

    df = read_table(cfg.holdout_uri, columns=features)
    df = df.dropna().head(cfg.rows)
    if df.empty:
        raise DataError(f"Holdout {cfg.holdout_uri} has no row without missing values in {features}.")
    return df.reset_index(drop=True)


def smoke_test(
    url: str, model: Any, frame: Any, cfg: SmokeTestConfig, *, expect_version: str
) -> dict[str, Any]:
    """Send ``frame`` to ``url``/predict and compare with ``model.predict(frame)``.

    :raises SmokeTestFailed: non-200 answer, wrong version, wrong length or different predictions.
    """
    import numpy as np

    rows = jsonable(frame.to_dict(orient="records"))
    report: dict[str, Any] = {"url": url, "rows": len(rows), "holdout_uri": cfg.holdout_uri}
    try:
        status, body = post_json(f"{url}/predict", {"rows": rows})
    except OSError as exc:
        raise SmokeTestFailed(f"Smoke test: {url}/predict did not answer: {exc}", report) from exc
    report["status"] = status
    if status != 200 or not isinstance(body, dict):
        report["body"] = str(body)[:500]
        raise SmokeTestFailed(f"Smoke test: {url}/predict answered HTTP {status}: {str(body)[:300]}", report)
    if str(body.get("model_version")) != str(expect_version):
        raise SmokeTestFailed(
            f"Smoke test: {url} serves version {body.get('model_version')}, expected {expect_version}", report
        )
    served = np.asarray(body.get("predictions"))
    local = np.asarray(model.predict(frame))
    if served.shape != local.shape:
        raise SmokeTestFailed(f"Smoke test: {served.shape} predictions for {local.shape} expected", report)
    if local.dtype.kind in "fc":
        same = np.isclose(served.astype(float), local, rtol=cfg.rtol, atol=cfg.atol)
    else:
        same = served.astype(str) == local.astype(str)
    report["mismatches"] = int((~same).sum())
    if report["mismatches"]:
        first = int(np.argmax(~same))
        raise SmokeTestFailed(
            f"Smoke test: {report['mismatches']} of {len(rows)} predictions differ from model.predict "
            f"(row {first}: served {served[first]!r}, expected {local[first]!r})",
            report,
        )
    report["passed"] = True
    return report


# -- canary analysis -------------------------------------------------------------------------------
_DURATION = "bentoml_service_request_duration_seconds"


def warm_up(url: str, rows: list[dict[str, Any]], requests: int, budget_s: float) -> dict[str, Any]:
    """Send up to ``requests`` one-row requests to ``url``/predict, cycling through ``rows``;
    answers are not judged (the smoke test did, the canary will), failures are counted.

    Stops early after ``budget_s`` seconds: a version that answers slowly or restarts under load
    must not hold the rollout here; its canary window judges it.

    :return: ``{"requests": sent, "failed": ..., "seconds": ...}``
    """
    import time

    started, failed, sent = time.monotonic(), 0, 0
    deadline = started + budget_s
    while rows and sent < requests and time.monotonic() < deadline:
        try:
            status, _ = post_json(
                f"{url}/predict",
                {"rows": [rows[sent % len(rows)]]},
                timeout=max(1.0, deadline - time.monotonic()),
            )
        except OSError:
            status = 0
        sent += 1
        failed += status != 200
    return {"requests": sent, "failed": failed, "seconds": round(time.monotonic() - started, 3)}


def _successful(samples: list[Sample], endpoint: str) -> dict[float, float]:
    return histogram_buckets(
        samples,
        _DURATION,
        lambda labels: (
            labels.get("endpoint") == endpoint and labels.get("http_response_code", "").startswith("2")
        ),
    )


def latency_buckets(metrics_text: str, endpoint: str = "/predict") -> dict[float, float]:
    """Cumulative request-duration buckets (upper bound → count) of successful ``endpoint`` calls."""
    return _successful(parse(metrics_text), endpoint)


def scrape_latency(url: str, timeout: float = 3.0) -> dict[float, float]:
    """Latency buckets of a backend now; empty when it does not answer (a down canary)."""
    try:
        return _successful(scrape(f"{url}/metrics", timeout=timeout), "/predict")
    except DataError:
        return {}


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The ``q`` quantile (seconds) of the requests observed between two histogram snapshots,
    interpolated linearly inside a bucket as Prometheus' ``histogram_quantile`` does."""
    return histogram_quantile(q, bucket_delta(after, before))


def window_stats(before: dict[str, Any], after: dict[str, Any], server: str) -> dict[str, Any]:
    """Requests, errors, error rate, p95 and proxy status of ``server`` between two snapshots."""
    b = before["proxy"].get(server, {})
    a = after["proxy"].get(server, {})
    requests = a.get("requests", 0) - b.get("requests", 0)
    visible = sum(a.get(k, 0) - b.get(k, 0) for k in ("http_5xx", "connection_errors", "response_errors"))
    # A 5xx answer that the proxy retried on another server (``retry-on``) never reaches the
    # server's 5xx counter: it shows as a retry or a redispatch of that server instead (each
    # hidden failure moves at least one of the two).
    hidden = max(a.get(k, 0) - b.get(k, 0) for k in ("retries", "redispatches"))
    errors = visible + hidden
    p95 = quantile(before["latency"].get(server, {}), after["latency"].get(server, {}), 0.95)
    return {
        "requests": requests,
        "errors": errors,
        "hidden_errors": hidden,
        "error_rate": (errors / requests) if requests else None,
        "p95_ms": None if p95 is None else round(p95 * 1000, 3),
        "status": a.get("status"),
    }


def analyse_canary(
    before: dict[str, Any],
    after: dict[str, Any],
    stable: str,
    canary: str,
    cfg: CanaryConfig,
    *,
    canary_healthy: bool = True,
) -> dict[str, Any]:
    """Compare canary with stable over a window; ``passed`` False lists every reason."""
    s, c = window_stats(before, after, stable), window_stats(before, after, canary)
    reasons: list[str] = []
    if not canary_healthy or (c["status"] or "UP").startswith("DOWN"):
        reasons.append("canary backend went down during the window")
    notes: list[str] = []
    if c["requests"] < cfg.min_requests:
        few = f"canary received {c['requests']} requests, fewer than min_requests={cfg.min_requests}"
        if cfg.no_traffic == "promote":
            notes.append(f"{few}: promoted on the smoke test (no_traffic='promote')")
        else:
            reasons.append(few)
    c_rate, s_rate = c["error_rate"] or 0.0, s["error_rate"] or 0.0
    if c["requests"] and c_rate > cfg.max_error_rate:
        reasons.append(f"canary error rate {c_rate:.4f} > max_error_rate {cfg.max_error_rate}")
    if c["requests"] and c_rate > s_rate + cfg.max_error_rate_increase:
        reasons.append(
            f"canary error rate {c_rate:.4f} exceeds stable {s_rate:.4f} by more than {cfg.max_error_rate_increase}"
        )
    if c["p95_ms"] is not None and s["p95_ms"] is not None:
        limit = s["p95_ms"] * cfg.max_p95_ratio + cfg.p95_slack_ms
        if c["p95_ms"] > limit:
            reasons.append(
                f"canary p95 {c['p95_ms']:.1f} ms > {limit:.1f} ms (stable p95 {s['p95_ms']:.1f} ms)"
            )
    elif c["requests"] >= cfg.min_requests:
        reasons.append("no latency measurements for the canary")
    return {"passed": not reasons, "reasons": reasons, "notes": notes, "stable": s, "canary": c}


def analyse_watch(
    before: dict[str, Any], after: dict[str, Any], server: str, cfg: WatchConfig, *, healthy: bool = True
) -> dict[str, Any]:
    """Judge the new stable version after the full switch; ``passed`` False lists every reason."""
    w = window_stats(before, after, server)
    reasons: list[str] = []
    if not healthy or (w["status"] or "UP").startswith("DOWN"):
        reasons.append("the new version went down during the watch window")
    if w["requests"] >= cfg.min_requests:
        rate = w["error_rate"] or 0.0
        if rate > cfg.max_error_rate:
            reasons.append(
                f"error rate {rate:.4f} ({w['errors']} of {w['requests']}) > max_error_rate {cfg.max_error_rate}"
            )
        if cfg.max_p95_ms is not None and w["p95_ms"] is not None and w["p95_ms"] > cfg.max_p95_ms:
            reasons.append(f"p95 {w['p95_ms']:.1f} ms > max_p95_ms {cfg.max_p95_ms:.1f} ms")
    return {"passed": not reasons, "reasons": reasons, "serving": w}


def snapshot(target: Any, servers: dict[str, str]) -> dict[str, Any]:
    """Proxy counters and latency histograms now; ``servers`` maps proxy server name → backend URL."""
    return {
        "proxy": target.traffic(),
        "latency": {name: scrape_latency(url) for name, url in servers.items()},
    }


class ServingError(MlpipeError):
    """A deployed backend is down and could not be brought back."""
