from __future__ import annotations

import pytest

from airflow_mlpipe.config.training import EstimatorConfig, RegistryConfig, SearchConfig, TrainingConfig
from airflow_mlpipe.core.conventions import TaskType
from airflow_mlpipe.exceptions import ConfigError, DataError
from airflow_mlpipe.training.search import expand_candidates, select_best


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: EstimatorConfig("RandomForest"), "import path"),
        (lambda: EstimatorConfig("sklearn.svm.SVC", {"C": object()}), "JSON"),
        (lambda: TrainingConfig(test_size=1.5), "test_size"),
        (lambda: TrainingConfig(cv_folds=1), "cv_folds"),
        (lambda: TrainingConfig(label="y", features=["y"]), "cannot also be a feature"),
        (lambda: TrainingConfig(task_type="clustering"), "Unknown task type"),
        (lambda: RegistryConfig("bad name!"), "model_name"),
        (lambda: RegistryConfig("m", serialization_format="joblib"), "serialization_format"),
        (lambda: SearchConfig(), "exactly one"),
        (lambda: SearchConfig(param_grid={"a": []}), "non-empty lists"),
        (lambda: SearchConfig(param_grid={"a": [1]}, metric="auc"), "Unknown metric"),
    ],
)
def test_invalid_configuration_says_what_to_change(factory, message):
    with pytest.raises(ConfigError, match=message):
        factory()


def test_callable_estimator_becomes_its_import_path():
    from sklearn.linear_model import Ridge

    assert EstimatorConfig(Ridge).estimator == "sklearn.linear_model._ridge.Ridge"


def test_grid_and_seeded_random_search_are_deterministic():
    grid = SearchConfig(param_grid={"max_depth": [2, 4], "n_estimators": [10, 20]})
    assert expand_candidates(grid) == [
        {"max_depth": 2, "n_estimators": 10},
        {"max_depth": 2, "n_estimators": 20},
        {"max_depth": 4, "n_estimators": 10},
        {"max_depth": 4, "n_estimators": 20},
    ]
    space = {"alpha": {"dist": "loguniform", "low": 1e-3, "high": 10}, "fit_intercept": [True, False]}
    first = expand_candidates(SearchConfig(param_distributions=space, n_candidates=5, seed=7))
    assert first == expand_candidates(SearchConfig(param_distributions=space, n_candidates=5, seed=7))
    assert first != expand_candidates(SearchConfig(param_distributions=space, n_candidates=5, seed=8))
    assert len(first) == 5 and all(1e-3 <= c["alpha"] <= 10 for c in first)
    with pytest.raises(ConfigError, match="max_candidates"):
        expand_candidates(SearchConfig(param_grid={"a": list(range(10))}, max_candidates=5))


def test_select_best_is_direction_aware():
    results = [
        {"metrics": {"accuracy": 0.8, "rmse": 3.0}},
        {"metrics": {"accuracy": 0.9, "rmse": 1.0}},
        {"metrics": {"accuracy": 0.9, "rmse": 2.0}},
    ]
    assert select_best(results, "accuracy", "maximize") is results[1]  # ties: the earliest
    assert select_best(results, "rmse", "minimize") is results[1]
    assert SearchConfig(param_grid={"a": [1]}).resolve_metric(TaskType.REGRESSION) == ("rmse", "minimize")
    with pytest.raises(DataError, match="No candidate reported metric 'r2'"):
        select_best(results, "r2", "maximize")
