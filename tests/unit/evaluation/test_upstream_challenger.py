"""Which version the gate evaluates when its upstream tasks registered one."""

from __future__ import annotations

import pytest

from airflow_mlpipe.evaluation.gate import upstream_challenger
from airflow_mlpipe.exceptions import ConfigError


def test_the_one_registered_version_is_found_others_are_passed_over():
    results = {
        "features.training_set": {"training_set_uri": "file:///t.parquet", "row_count": 10},
        "train.search.register_best": {"model_name": "churn", "version": "7", "search": {}},
        "train.other_model": {"model_name": "fraud", "version": "2"},
        "train.search.candidate": [{"model_name": "churn", "version": None}] * 2,  # unregistered
    }
    assert upstream_challenger("churn", results) == ("7", "train.search.register_best")
    assert upstream_challenger("churn", {"validate": {"success": True}}) is None


def test_two_registered_versions_are_ambiguous():
    results = {
        "train_a": {"model_name": "churn", "version": "3"},
        "train_b": {"model_name": "churn", "version": "4"},
    }
    with pytest.raises(ConfigError, match=r"v3 from train_a, v4 from train_b.*challenger_version"):
        upstream_challenger("churn", results)
    same = {
        "train_a": {"model_name": "churn", "version": "3"},
        "log": {"model_name": "churn", "version": "3"},
    }
    assert upstream_challenger("churn", same) == ("3", "train_a")
