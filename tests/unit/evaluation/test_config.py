from __future__ import annotations

import pytest

from airflow_mlpipe.config.evaluation import (
    ChangeCriterion,
    GateConfig,
    KpiCriterion,
    SliceCriterion,
    ThresholdCriterion,
    criterion_from_mapping,
)
from airflow_mlpipe.exceptions import ConfigError

YAML = """
task_type: classification
label: churned
criteria:
  - roc_auc >= 0.85
  - log_loss <= 0.4
  - {kind: change, metric: accuracy, max_regression: 0.01}
  - {kind: change, metric: f1, min_improvement: 0.01, relative: true}
  - {kind: slice, column: region, metric: recall, min: 0.7, max_gap: 0.1, min_rows: 50}
  - {kind: kpi, callable: "my_pkg.kpis:profit", min: "1000"}
"""


def test_yaml_round_trip_builds_typed_criteria(tmp_path):
    path = tmp_path / "gate.yaml"
    path.write_text(YAML)
    for config in (GateConfig.from_yaml(YAML), GateConfig.from_yaml(str(path))):
        kinds = [type(c) for c in config.criteria]
        assert kinds == [
            ThresholdCriterion,
            ThresholdCriterion,
            ChangeCriterion,
            ChangeCriterion,
            SliceCriterion,
            KpiCriterion,
        ]
        auc, loss, acc, f1, sl, kpi = config.criteria
        assert (auc.min, auc.max, loss.min, loss.max) == (0.85, None, None, 0.4)
        assert (acc.min_delta, acc.relative) == (-0.01, False)
        assert (f1.min_delta, f1.relative) == (0.01, True)
        assert (sl.min_rows, sl.max_gap, sl.name) == (50, 0.1, "slice.recall.region")
        assert (kpi.function, kpi.min, kpi.name) == ("my_pkg.kpis:profit", 1000.0, "kpi.profit")
        assert GateConfig.from_mapping(config.to_dict()) == config


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"kind": "threshold", "metric": "auc", "min": 1}, ["unknown metric 'auc'"]),
        ({"kind": "threshold", "metric": "accuracy"}, ["min", "max"]),
        ({"kind": "threshold", "metric": "accuracy", "min": 0.9, "max": 0.1}, ["greater than max"]),
        ({"kind": "threshold", "metric": "accuracy", "min": "high"}, ["min must be a number"]),
        ({"kind": "change", "metric": "rmse", "max_regression": 1, "min_delta": 2}, ["only one of"]),
        ({"kind": "slice", "column": "g", "metric": "mae"}, ["min", "max_gap"]),
        ({"kind": "slice", "column": "g", "metric": "mae", "max_gap": -1}, ["max_gap must be >= 0"]),
        ({"kind": "kpi", "function": "not a path", "min": 1}, ["import path"]),
        ({"kind": "bogus"}, ["Unknown criterion kind 'bogus'"]),
        ({"kind": "threshold", "metric": "r2", "min": 0, "colour": 1}, ["unknown field", "colour"]),
        ("accuracy => 3", ["Cannot read criterion"]),
    ],
)
def test_bad_criteria_say_what_to_change(spec, words):
    with pytest.raises(ConfigError) as info:
        criterion_from_mapping(spec)
    for w in words:
        assert w in str(info.value)


def test_metric_must_exist_for_the_task_type():
    with pytest.raises(ConfigError, match="'rmse' does not exist for classification"):
        GateConfig(criteria=["rmse <= 3"], task_type="classification")
    config = GateConfig(criteria=["rmse <= 3"])  # task type known only at run time
    with pytest.raises(ConfigError, match="threshold.rmse"):
        config.check_task_type("classification")
    config.check_task_type("regression")
    with pytest.raises(ConfigError, match="Unknown task type"):
        GateConfig(criteria=["rmse <= 3"], task_type="ranking")


def test_config_level_errors():
    with pytest.raises(ConfigError, match="at least one criterion"):
        GateConfig(criteria=[])
    with pytest.raises(ConfigError, match="unique"):
        GateConfig(criteria=["accuracy >= 0.5", "accuracy >= 0.6"])
    GateConfig(criteria=["accuracy >= 0.5", {"metric": "accuracy", "min": 0.6, "name": "accuracy.strict"}])
    with pytest.raises(ConfigError, match="unknown key"):
        GateConfig.from_mapping({"criteria": ["r2 >= 0"], "treshold": 1})
    with pytest.raises(ConfigError, match="not valid YAML"):
        GateConfig.from_yaml("criteria: [\n")
