"""Criteria judged on hand-made predictions: direction awareness, relative change, slices, KPIs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airflow_mlpipe.config.evaluation import GateConfig
from airflow_mlpipe.core.metrics import Predictions, compute, improvement
from airflow_mlpipe.evaluation.criteria import Evidence, Scored, judge
from airflow_mlpipe.exceptions import ConfigError


def _scored(task, y, pred, version, proba=None, classes=None):
    p = Predictions(np.asarray(pred), None if proba is None else np.asarray(proba), classes)
    if proba is None and task == "classification":
        p.proba_unavailable = "no predict_proba"
    return Scored(version, p, compute(task, y, p))


def _evidence(task, y, new, old, frame=None):
    y = np.asarray(y)
    frame = frame if frame is not None else pd.DataFrame({"x": range(len(y))})
    return Evidence(
        task,
        frame,
        y,
        _scored(task, y, new, "2"),
        _scored(task, y, old, "1") if old is not None else None,
        "no champion yet",
    )


def test_change_is_direction_aware_for_lower_is_better_metrics():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    ev = _evidence("regression", y, new=y + 0.5, old=y + 1.0)  # rmse 0.5 vs 1.0
    assert improvement("regression", "rmse", 0.5, 1.0) == pytest.approx(0.5)
    assert improvement("regression", "r2", 0.5, 1.0) == pytest.approx(-0.5)
    crit = GateConfig.from_mapping(
        [
            {"kind": "change", "metric": "rmse", "min_improvement": 0.4, "relative": True},  # needs <= 0.6
            {
                "kind": "change",
                "metric": "rmse",
                "min_improvement": 0.6,
                "relative": True,
                "name": "rmse.60",
            },  # needs <= 0.4
            {"kind": "change", "metric": "mae", "min_improvement": 0.5, "name": "mae.abs"},  # needs <= 0.5
        ]
    ).criteria
    r = judge(crit, ev)
    assert [x.passed for x in r] == [True, False, True]
    assert r[0].threshold == pytest.approx(0.6) and r[0].op == "<="
    assert r[1].threshold == pytest.approx(0.4)
    assert "lower is better" in r[0].reason
    # the improvement and what it needs share a unit; the absolute bound is named as such
    assert "improvement +50.00%, needs >= +40.00% (that is rmse <= 0.6;" in r[0].reason
    assert "improvement +0.5, needs >= +0.5 (that is mae <= 0.5;" in r[2].reason


def test_no_worse_than_champion_minus_delta():
    y = np.array([0, 1] * 50)
    old = y.copy()
    new = y.copy()
    new[:2] = 1 - new[:2]  # accuracy 0.98 vs 1.0
    for delta, ok in ((0.01, False), (0.02, True)):
        crit = GateConfig.from_mapping(
            [{"kind": "change", "metric": "accuracy", "max_regression": delta}]
        ).criteria
        (res,) = judge(crit, _evidence("classification", y, new, old))
        assert res.passed is ok
        assert res.threshold == pytest.approx(1.0 - delta)


def test_no_champion_passes_and_says_why():
    y = np.array([0, 1, 1, 0])
    crit = GateConfig.from_mapping([{"kind": "change", "metric": "f1", "min_improvement": 0.5}]).criteria
    (res,) = judge(crit, _evidence("classification", y, y, None))
    assert res.passed and "no champion yet" in res.reason and res.threshold is None


def test_slices_min_gap_and_small_slices():
    rng = np.random.default_rng(1)
    groups = np.array(["a"] * 60 + ["b"] * 60 + ["c"] * 5)
    y = rng.integers(0, 2, len(groups))
    pred = y.copy()
    flip = np.where(groups == "b")[0][:18]  # slice b: accuracy 0.7, slice a: 1.0
    pred[flip] = 1 - pred[flip]
    frame = pd.DataFrame({"g": groups})
    ev = _evidence("classification", y, pred, None, frame)
    crit = GateConfig.from_mapping(
        [{"kind": "slice", "column": "g", "metric": "accuracy", "min": 0.75, "max_gap": 0.2, "min_rows": 10}]
    ).criteria
    bound, gap = judge(crit, ev)
    assert bound.details["values"] == {"a": 1.0, "b": pytest.approx(0.7)}
    assert bound.details["too_small"] == {"c": 5}
    assert not bound.passed and bound.observed == pytest.approx(0.7) and "g=b" in bound.reason
    assert not gap.passed and gap.observed == pytest.approx(0.3)
    assert "< 10 rows" in gap.reason
    crit = GateConfig.from_mapping(
        [{"kind": "slice", "column": "g", "metric": "accuracy", "min": 0.5, "min_rows": 100}]
    ).criteria
    (none,) = judge(crit, ev)
    assert not none.passed and "no slice" in none.reason
    crit = GateConfig.from_mapping(
        [{"kind": "slice", "column": "g", "metric": "accuracy", "min": 0.5, "max_slices": 2}]
    ).criteria
    with pytest.raises(ConfigError, match="3 distinct values"):
        judge(crit, ev)


def profit(y_true, y_pred, frame):
    """10 per true positive, -1 per false positive."""
    return float(10 * np.sum((y_pred == 1) & (y_true == 1)) - np.sum((y_pred == 1) & (y_true == 0)))


def test_kpi_callable_by_import_path():
    y = np.array([1, 1, 0, 0, 1])
    new = np.array([1, 1, 1, 0, 0])
    old = np.array([1, 0, 0, 0, 0])
    crit = GateConfig.from_mapping([{"kind": "kpi", "function": f"{__name__}:profit", "min": 15}]).criteria
    (res,) = judge(crit, _evidence("classification", y, new, old))
    assert res.observed == profit(y, new, None) == 19
    assert res.details["champion"] == profit(y, old, None) == 10
    assert res.passed
    crit = GateConfig.from_mapping([{"kind": "kpi", "function": "nowhere.at_all:fn", "min": 1}]).criteria
    with pytest.raises(ConfigError, match="cannot be imported"):
        judge(crit, _evidence("classification", y, new, old))


def test_probability_metrics_unavailable_without_predict_proba():
    y = np.array([0, 1, 1, 0])
    m = compute("classification", y, Predictions(y, proba_unavailable="LinearSVC has no predict_proba"))
    assert set(m.values) == {"accuracy", "precision", "recall", "f1"}
    assert "LinearSVC has no predict_proba" in m.unavailable["roc_auc"]
    (res,) = judge(
        GateConfig.from_mapping(["log_loss <= 1"]).criteria, _evidence("classification", y, y, None)
    )
    assert not res.passed and "not available" in res.reason


def test_multiclass_averages_over_classes_present():
    # A slice (or a small holdout) without class 2: a perfect model scores 1.0, not 2/3.
    y = np.array([0, 1, 1, 0, 1])
    perfect = compute("classification", y, Predictions(y, classes=[0, 1, 2]))
    assert perfect.values["recall"] == perfect.values["precision"] == perfect.values["f1"] == 1.0
    # Mistakes still count: one class-1 row predicted as the absent class 2 lowers class 1's recall.
    wrong = compute("classification", y, Predictions(np.array([0, 1, 2, 0, 1]), classes=[0, 1, 2]))
    assert wrong.values["recall"] == pytest.approx((1.0 + 2 / 3) / 2)
