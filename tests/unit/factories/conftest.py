from __future__ import annotations

import copy
from typing import Any

import pytest

BASE: dict[str, Any] = {
    "name": "toy",
    "pattern": "dag",
    "schedule": "@daily",
    "start_date": "2024-01-01",
    "validation": {
        "dataset": "{{ mlpipe_env('TOY_DATA', '/tmp/toy') }}/features.parquet",
        "suite": "toy",
        "expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}}],
    },
    "features": {"feature_service": "toy_service", "entity_source": "/tmp/toy/labels.parquet", "label": "y"},
    "training": {
        "model_name": "toy_model",
        "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"max_iter": 200},
        "search": {"param_grid": {"C": [0.1, 1.0, 10.0]}, "metric": "roc_auc"},
    },
    "gate": {"criteria": ["roc_auc >= 0.6"]},
    "deployment": {"batch_score_input": "/tmp/toy/score.parquet"},
    "monitoring": {
        "reference": "/tmp/toy/reference.parquet",
        "watch_path": "/tmp/toy/incoming",
        "drift": {"drift_share": 0.4},
    },
}


@pytest.fixture
def base_config() -> dict[str, Any]:
    return copy.deepcopy(BASE)
