"""Drift method directions, configs, quality maths and the Prometheus parser."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from airflow_mlpipe.config.monitoring import DriftConfig, QualityConfig, ServingHealthConfig
from airflow_mlpipe.core import drift_methods as methods
from airflow_mlpipe.exceptions import ConfigError, DataError
from airflow_mlpipe.monitoring import quality, serving


@pytest.mark.integration
def test_direction_table_agrees_with_evidently_decisions():
    """For every method in the table, our decision equals Evidently's on drifted and stable data."""
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(0)
    ref_num = pd.Series(rng.normal(size=400))
    ref_cat = pd.Series(rng.choice(["a", "b", "c"], 400, p=[0.5, 0.3, 0.2]))
    cases = {
        ColumnType.Numerical: [
            (ref_num, pd.Series(rng.normal(size=400))),
            (ref_num, pd.Series(rng.normal(1.5, 2, 400))),
        ],
        ColumnType.Categorical: [
            (ref_cat, pd.Series(rng.choice(["a", "b", "c"], 400, p=[0.5, 0.3, 0.2]))),
            (ref_cat, pd.Series(rng.choice(["a", "b", "c"], 400, p=[0.1, 0.2, 0.7]))),
        ],
    }
    checked = set()
    for name, by_type in _registered_stat_tests.items():
        assert methods.canonical(name) == name, f"method {name} missing from the direction table"
        for ftype, stattest in by_type.items():
            if ftype not in cases:
                continue
            pairs = cases[ftype]
            if name == "fisher_exact":  # defined for two categories only
                pairs = [(r.where(r != "c", "b"), c.where(c != "c", "b")) for r, c in pairs]
            for ref, cur in pairs:
                res = stattest(ref, cur, ftype, None)
                ours = methods.is_drifted(name, res.drift_score, res.actual_threshold)
                assert ours == bool(res.drifted), (name, ftype, res)
                # and at the threshold itself, the comparator's strictness matters
                at = methods.is_drifted(name, res.actual_threshold, res.actual_threshold)
                assert at in (True, False)
                checked.add(name)
    assert {"ks", "psi", "wasserstein", "chisquare", "z", "jensenshannon"} <= checked
    assert methods.METHODS["ks"][0] == _registered_stat_tests["ks"][ColumnType.Numerical].display_name


def test_direction_examples():
    assert methods.is_drifted("K-S p_value", 0.01, 0.05) is True  # display name accepted
    assert methods.is_drifted("ks", 0.05, 0.05) is True  # K-S uses <=
    assert methods.is_drifted("z", 0.05, 0.05) is False  # Z uses <
    assert methods.is_drifted("psi", 0.2, 0.1) is True
    assert methods.is_drifted("psi", 0.05, 0.1) is False
    assert methods.is_drifted("ed", 0.1, 0.1) is False  # energy distance uses >
    assert methods.is_drifted("my_custom", 1, 1) is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"drift_share": 0}, "drift_share"),
        ({"drift_share": 1.5}, "drift_share"),
        ({"method": "nope"}, "not a drift method"),
        ({"per_column_method": {"a": "nope"}}, "per_column_method"),
        ({"threshold": -1}, "threshold"),
        ({"columns": "a"}, "list of column names"),
        ({"columns": []}, "columns is empty"),
        ({"columns": ["a", "p"], "prediction_column": "p"}, "also listed"),
    ],
)
def test_drift_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DriftConfig(**kwargs)


def test_config_from_values():
    assert DriftConfig.from_mapping({"method": "K-S p_value"}).method == "K-S p_value"
    with pytest.raises(ConfigError, match="Unknown DriftConfig field"):
        DriftConfig.from_mapping({"methd": "ks"})
    q = QualityConfig(label_column="y", prediction_column="p", task_type="regression")
    assert q.metrics == ("rmse", "mae", "r2")
    with pytest.raises(ConfigError, match="do not apply"):
        QualityConfig(label_column="y", prediction_column="p", metrics=["rmse"])
    with pytest.raises(ConfigError, match="Unknown task type"):
        QualityConfig(label_column="y", prediction_column="p", task_type="ranking")
    with pytest.raises(ConfigError, match="max_error_rate"):
        ServingHealthConfig(max_error_rate=2)


def test_quality_is_direction_aware():
    cfg = QualityConfig(
        label_column="y",
        prediction_column="p",
        task_type="regression",
        metrics=["rmse", "r2"],
        max_degradation=0.1,
        min_labelled_rows=5,
    )
    rng = np.random.default_rng(0)
    y = rng.normal(10, 2, 200)
    frame = pd.DataFrame({"y": y, "p": y + rng.normal(0, 1.0, 200)})
    frame.loc[:50, "y"] = None  # labels not arrived yet for these rows
    res = quality.check_quality(frame, cfg, {"test_rmse": 0.5, "r2": 0.95})
    assert res["labelled_rows"] == 149
    assert res["metrics"]["rmse"]["higher_is_better"] is False
    assert res["metrics"]["rmse"]["degradation"] > 0.1 and res["metrics"]["rmse"]["degraded"]
    assert res["degraded"] is True
    ok = quality.check_quality(frame, cfg, {"rmse": 5.0, "r2": 0.5})
    assert ok["degraded"] is False and ok["metrics"]["rmse"]["degradation"] < 0
    few = quality.check_quality(frame.iloc[:53], cfg, {"rmse": 5.0})
    assert few["judged"] is False and "labelled rows" in few["reason"]
    with pytest.raises(ConfigError, match="No baseline"):
        quality.check_quality(frame, cfg, {"accuracy": 0.9})
    with pytest.raises(DataError, match="'p'"):
        quality.check_quality(frame.drop(columns=["p"]), cfg, {"rmse": 1})
    assert quality.degradation(0.9, 0.0, True, True) == pytest.approx(-0.9)  # zero base: absolute


BENTO_METRICS = """\
# HELP bentoml_service_request_duration_seconds API HTTP request duration in seconds
# TYPE bentoml_service_request_duration_seconds histogram
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="0.005",service_name="svc",service_version="v1"} 2.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="0.1",service_name="svc",service_version="v1"} 8.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="1.0",service_name="svc",service_version="v1"} 10.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="+Inf",service_name="svc",service_version="v1"} 10.0
bentoml_service_request_duration_seconds_count{endpoint="/predict",http_response_code="200",service_name="svc",service_version="v1"} 10.0
bentoml_service_request_duration_seconds_sum{endpoint="/predict",http_response_code="200",service_name="svc",service_version="v1"} 1.5
bentoml_service_request_total{endpoint="/predict",http_response_code="200",service_name="svc",service_version="v1"} 10.0
bentoml_service_request_total{endpoint="/predict",http_response_code="500",service_name="svc",service_version="v1"} 2.0
bentoml_service_request_total{endpoint="/readyz",http_response_code="200",service_name="svc",service_version="v1"} 50.0
"""


def test_prometheus_parse_and_quantile():
    samples = serving.parse(BENTO_METRICS)
    assert (
        "bentoml_service_request_total",
        {"endpoint": "/readyz", "http_response_code": "200", "service_name": "svc", "service_version": "v1"},
        50.0,
    ) in samples
    agg = serving.aggregate(samples, ServingHealthConfig())
    assert agg["requests"] == 12 and agg["errors"] == 2  # /readyz excluded
    # p50: rank 5 of 10 lies in (0.005, 0.1] with 6 observations: 0.005 + 0.095 * 3/6
    assert serving.histogram_quantile(0.5, agg["buckets"]) == pytest.approx(0.0525)
    assert serving.histogram_quantile(0.95, {1.0: 0.0, math.inf: 4.0}) == 1.0
    health = serving.evaluate(agg, ServingHealthConfig(max_latency_seconds=0.8, max_error_rate=0.1))
    assert health["latency_seconds"] == pytest.approx(0.1 + 0.9 * 1.5 / 2)  # p95 inside (0.1, 1]
    assert health["breaches"] == ["error_rate"] and health["healthy"] is False
    slow = serving.evaluate(agg, ServingHealthConfig(max_latency_seconds=0.5, max_error_rate=0.5))
    assert slow["breaches"] == ["latency"]
    assert health["error_rate"] == pytest.approx(2 / 12)
    with pytest.raises(DataError, match="Not Prometheus"):
        serving.parse("<html>oops</html>")
    with pytest.raises(DataError, match="No bentoml_service_request"):
        serving.evaluate(serving.aggregate([], ServingHealthConfig()), ServingHealthConfig())
