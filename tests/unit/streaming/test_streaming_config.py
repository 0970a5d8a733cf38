"""StreamConfig validation, metrics exposition and key routing, without Redis."""

from __future__ import annotations

import pytest

from airflow_mlpipe.config.streaming import StreamConfig
from airflow_mlpipe.exceptions import ConfigError


def _cfg(**kw):
    return StreamConfig(
        **{"redis_url": "redis://127.0.0.1:6379/0", "input_stream": "in", "output_stream": "out", **kw}
    )


def test_defaults_and_group_names():
    cfg = _cfg()
    assert cfg.dead_letter_stream == "in.dead"
    assert cfg.group("s_v1") == "mlpipe.s_v1"
    assert StreamConfig.from_mapping(cfg.as_dict()) == cfg
    logged = _cfg(prediction_log={"uri": "/tmp/log", "keys": ["id"]})
    assert StreamConfig.from_mapping(logged.as_dict()) == logged  # as the scorer process gets it


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"redis_url": "http://x"}, "redis_url"),
        ({"output_stream": "in"}, "three different keys"),
        ({"input_stream": "has space"}, "input_stream"),
        ({"batch_size": 0}, "batch_size"),
        ({"prediction_log": {"uri": "/tmp/log"}}, "'uri' and 'keys'"),
        ({"prediction_log": {"uri": "/tmp/log", "keys": "id"}}, "list of column names"),
        ({"claim_idle_ms": 0}, "claim_idle_ms"),
        ({"max_len": 0}, "max_len"),
    ],
)
def test_bad_config_says_what_to_change(kw, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(**kw)


def test_unknown_field_is_named():
    with pytest.raises(ConfigError, match="batchsize"):
        StreamConfig.from_mapping({**_cfg().as_dict(), "batchsize": 3})


def test_metrics_render_as_prometheus_text():
    from airflow_mlpipe.core.prometheus import histogram_buckets, parse
    from airflow_mlpipe.streaming.metrics import StreamMetrics

    m = StreamMetrics({"endpoint": "in", "scorer": 's"q'})
    m.record("scored", 10, 0.004)
    m.record("malformed", 2, 0.004)
    m.set_gauge("consumer_lag", 7)
    samples = parse(m.render())
    totals = {lbl["http_response_code"]: v for n, lbl, v in samples if n == "mlpipe_stream_request_total"}
    assert totals == {"200": 10, "400": 2}
    buckets = histogram_buckets(samples, "mlpipe_stream_request_duration_seconds")
    assert buckets[0.0025] == 0 and buckets[0.005] == 10  # only scored events are timed
    assert any(lbl.get("scorer") == 's"q' for _, lbl, _ in samples)


def test_buckets_are_stable_and_spread():
    from airflow_mlpipe.streaming.transport import BUCKETS, bucket

    assert bucket("customer-7") == bucket("customer-7")
    share = sum(bucket(f"k{i}") < BUCKETS * 0.3 for i in range(10_000)) / 10_000
    assert 0.27 < share < 0.33


def test_batch_operator_checks_its_bounds():
    from airflow_mlpipe.operators.streaming import ScoredStreamBatchOperator

    with pytest.raises(ConfigError, match="min_events"):
        ScoredStreamBatchOperator(
            task_id="t", stream=_cfg().as_dict(), directory="/tmp/x", min_events=5, max_events=2
        )
