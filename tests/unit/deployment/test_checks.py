"""Pure parts of the deployment stage: canary decision, histogram quantiles, config, load loop, proxy config."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from airflow_mlpipe.config.deploy import CanaryConfig, SmokeTestConfig, WatchConfig
from airflow_mlpipe.deploy.checks import analyse_canary, analyse_watch, latency_buckets, quantile, warm_up
from airflow_mlpipe.exceptions import ConfigError


def _snap(stable_req, stable_err, canary_req, canary_err, stable_lat, canary_lat, canary_status="UP"):
    return {
        "proxy": {
            "s": {"requests": stable_req, "http_5xx": stable_err, "status": "UP"},
            "c": {"requests": canary_req, "connection_errors": canary_err, "status": canary_status},
        },
        "latency": {"s": stable_lat, "c": canary_lat},
    }


FAST = {0.005: 90.0, 0.01: 100.0, math.inf: 100.0}
SLOW = {0.005: 0.0, 0.01: 0.0, 0.5: 95.0, 1.0: 100.0, math.inf: 100.0}
ZERO = {0.005: 0.0, 0.01: 0.0, math.inf: 0.0}


def test_quantile_interpolates_inside_the_bucket():
    assert quantile(ZERO, FAST, 0.5) == pytest.approx(0.005 * 50 / 90)
    assert quantile(ZERO, FAST, 0.95) == pytest.approx(0.0075)
    assert quantile(FAST, FAST, 0.95) is None  # no request in the window


@pytest.mark.parametrize(
    ("after", "passed", "reason"),
    [
        (_snap(900, 0, 100, 0, FAST, FAST), True, None),
        (_snap(900, 0, 100, 10, FAST, FAST), False, "error rate"),
        (_snap(900, 0, 100, 0, FAST, SLOW), False, "p95"),
        (_snap(900, 0, 3, 0, FAST, FAST), False, "min_requests"),
        (_snap(900, 0, 100, 0, FAST, FAST, canary_status="DOWN"), False, "went down"),
    ],
)
def test_canary_decision(after, passed, reason):
    before = _snap(0, 0, 0, 0, ZERO, ZERO)
    decision = analyse_canary(before, after, "s", "c", CanaryConfig(min_requests=20))
    assert decision["passed"] is passed
    if reason:
        assert any(reason in r for r in decision["reasons"]), decision["reasons"]


@pytest.mark.parametrize(
    ("after", "passed"),
    [
        (_snap(0, 0, 0, 0, ZERO, ZERO), True),  # nobody uses the endpoint yet
        (_snap(5, 0, 1, 0, FAST, FAST), True),
        (_snap(5, 0, 2, 2, FAST, FAST), False),  # few requests, but they failed
        (_snap(0, 0, 0, 0, ZERO, ZERO, canary_status="DOWN"), False),
    ],
)
def test_canary_without_traffic_promotes_only_when_chosen(after, passed):
    before = _snap(0, 0, 0, 0, ZERO, ZERO)
    chosen = analyse_canary(before, after, "s", "c", CanaryConfig(min_requests=20, no_traffic="promote"))
    assert chosen["passed"] is passed, chosen["reasons"]
    if passed:
        assert "promoted on the smoke test" in chosen["notes"][0]
    default = analyse_canary(before, after, "s", "c", CanaryConfig(min_requests=20))
    assert not default["passed"] and any("min_requests" in r for r in default["reasons"])
    with pytest.raises(ConfigError, match="no_traffic must be"):
        CanaryConfig(no_traffic="ignore")


def test_latency_buckets_keep_successful_predict_only():
    text = "\n".join(
        [
            'bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="0.01"} 4.0',
            'bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="+Inf"} 5.0',
            'bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="0.01"} 7.0',
            'bentoml_service_request_duration_seconds_bucket{endpoint="/readyz",http_response_code="200",le="0.01"} 9.0',
        ]
    )
    assert latency_buckets(text) == {0.01: 4.0, math.inf: 5.0}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"share": 0},
        {"share": 1.5},
        {"window_seconds": 0},
        {"min_requests": 0},
        {"max_p95_ratio": 0.5},
        {"warmup_requests": -1},
    ],
)
def test_canary_config_rejects_bad_values(kwargs):
    with pytest.raises(ConfigError):
        CanaryConfig(**kwargs)


def test_config_parsing():
    assert CanaryConfig.from_mapping(None).enabled is False
    assert CanaryConfig.from_mapping({"share": 0.3}).share == 0.3
    with pytest.raises(ConfigError, match="Invalid canary"):
        CanaryConfig.from_mapping({"shares": 0.3})
    with pytest.raises(ConfigError):
        SmokeTestConfig("", rows=5)


def test_failures_the_proxy_retried_elsewhere_count_as_canary_errors():
    """Measured on HAProxy: a 5xx retried on stable leaves the canary's 5xx counter at 0 and
    moves its retry counter."""
    before = _snap(0, 0, 0, 0, ZERO, ZERO)
    after = _snap(900, 0, 100, 0, FAST, FAST)
    after["proxy"]["c"]["retries"] = 30
    decision = analyse_canary(before, after, "s", "c", CanaryConfig(min_requests=20))
    assert decision["canary"]["errors"] == 30 and decision["canary"]["hidden_errors"] == 30
    assert any("error rate 0.3000" in r for r in decision["reasons"]), decision["reasons"]


@pytest.mark.parametrize(
    ("after", "cfg", "healthy", "reason"),
    [
        (_snap(0, 0, 100, 0, ZERO, FAST), WatchConfig(), True, None),
        (_snap(0, 0, 100, 5, ZERO, FAST), WatchConfig(), True, "error rate 0.0500 (5 of 100)"),
        (_snap(0, 0, 100, 0, ZERO, SLOW), WatchConfig(max_p95_ms=100), True, "p95"),
        (_snap(0, 0, 100, 0, ZERO, SLOW), WatchConfig(), True, None),  # no latency limit set
        (_snap(0, 0, 100, 0, ZERO, FAST), WatchConfig(), False, "went down"),
        (_snap(0, 0, 100, 0, ZERO, FAST, canary_status="DOWN 1/2"), WatchConfig(), True, "went down"),
        # too few requests for a rate: only health counts
        (_snap(0, 0, 2, 2, ZERO, FAST), WatchConfig(min_requests=10), True, None),
    ],
)
def test_watch_decision(after, cfg, healthy, reason):
    before = _snap(0, 0, 0, 0, ZERO, ZERO)
    decision = analyse_watch(before, after, "c", cfg, healthy=healthy)
    assert decision["passed"] is (reason is None), decision
    if reason:
        assert any(reason in r for r in decision["reasons"]), decision["reasons"]


@pytest.mark.parametrize(
    "kwargs", [{"window_seconds": 0}, {"max_error_rate": 2}, {"max_p95_ms": 0}, {"min_requests": 0}]
)
def test_watch_config_rejects_bad_values(kwargs):
    with pytest.raises(ConfigError, match="WatchConfig"):
        WatchConfig(**kwargs)
    assert WatchConfig.from_mapping(None).enabled is False
    with pytest.raises(ConfigError, match="Invalid watch"):
        WatchConfig.from_mapping({"window": 3})


def test_load_loop_refuses_non_loopback():
    from mlpipe_dev.loadgen import LoadLoop

    with pytest.raises(ConfigError, match="loopback"):
        LoadLoop("http://10.0.0.1:80", [{}])


def test_generated_haproxy_config_is_valid(tmp_path):
    from airflow_mlpipe.deploy.targets.local.proxy import HAProxy, ServerEntry, haproxy_binary

    proxy = HAProxy(tmp_path, name="m_1", port=18080)
    text = proxy.render([ServerEntry("b_v1", 18081, 90), ServerEntry("b_v2", 18082, 10)])
    assert "server b_v1 127.0.0.1:18081 weight 90 check" in text
    assert "bind 127.0.0.1:18080" in text
    cfg = tmp_path / "h.cfg"
    cfg.write_text(text)
    out = subprocess.run([haproxy_binary(), "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with pytest.raises(ConfigError):
        proxy.render([])
    assert shutil.which("haproxy") or haproxy_binary()


def test_warm_up_sends_one_row_requests_and_counts_failures():
    """Each warm-up request carries one row, cycling through the rows; non-200 answers are counted."""
    seen: list[list[dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body["rows"])
            status = 500 if len(seen) % 4 == 0 else 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rows = [{"x": 1}, {"x": 2}, {"x": 3}]
        report = warm_up(f"http://127.0.0.1:{server.server_address[1]}", rows, 8, budget_s=60)
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [[rows[i % 3]] for i in range(8)]
    assert report["requests"] == 8 and report["failed"] == 2
    assert warm_up("http://127.0.0.1:9", [], 5, budget_s=60)["requests"] == 0


def test_warm_up_stops_at_its_budget_when_the_version_hangs():
    """A version that does not answer (a model process restarting) holds the rollout for the
    budget, not for ``requests`` × the HTTP timeout; the unanswered request counts as failed."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            release.wait(30)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        report = warm_up(f"http://127.0.0.1:{server.server_address[1]}", [{"x": 1}], 50, budget_s=1.5)
        took = time.monotonic() - started
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    assert report["requests"] == 1 and report["failed"] == 1, report
    assert took < 10, took  # the 30 s the handler would hold it, or 50 such requests, were not waited
