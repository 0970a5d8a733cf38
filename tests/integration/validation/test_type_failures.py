"""Type problems are reported as such: a shift check does not hide the suite's own type failure,
and a range check on a column that holds text says so instead of "observed None"."""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_mlpipe.config.validation import ShiftConfig
from airflow_mlpipe.validation.dataset import validate_frame
from airflow_mlpipe.validation.runner import failure_message
from airflow_mlpipe.validation.suite import load_suite

pytestmark = pytest.mark.integration

SUITE = [
    {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "age", "min_value": 0, "max_value": 120},
    },
    {"type": "expect_column_values_to_be_in_type_list", "kwargs": {"column": "age", "type_list": ["int64"]}},
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "city"}},
]


def _frames():
    reference = pd.DataFrame({"age": [20, 35, 50, 65] * 10, "city": ["north", "south"] * 20})
    # ages arrive as text (an upstream export changed), cities are fine
    current = reference.assign(age=reference["age"].astype(str))
    return reference, current


def test_range_check_on_text_column_names_the_type():
    _, current = _frames()
    summary = validate_frame(current, load_suite(SUITE), dataset_uri="mem://batch")
    text = failure_message(summary)
    assert "column 'age' holds object values, not numbers: the range [0" in text
    assert "observed None" not in text


def test_shift_check_does_not_hide_the_suites_type_failure(tmp_path):
    reference, current = _frames()
    reference.to_parquet(tmp_path / "reference.parquet", index=False)
    shift = ShiftConfig.build(str(tmp_path / "reference.parquet"), None)
    summary = validate_frame(current, load_suite(SUITE), dataset_uri="mem://batch", shift=shift)
    assert summary["success"] is False
    failed = {(f["expectation"], f["column"]) for f in summary["failed"]}
    assert ("expect_column_values_to_be_in_type_list", "age") in failed  # the suite's own check
    assert ("shift check", "age") in failed
    assert summary["statistics"]["unsuccessful_expectations"] == len(summary["failed"]) == 3
    # the unchanged column is still checked for shift
    assert set(summary["shift"]["columns"]) == {"city"}
    assert "changed type: int64 in the reference, object in the dataset" in failure_message(summary)
