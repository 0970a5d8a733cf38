"""The validation stage's plain functions: config objects, suite loading, shift partitions, offline docs."""

from __future__ import annotations

import json

import pytest

from airflow_mlpipe.config.validation import (
    ExpectationSpec,
    ShiftCheck,
    ShiftConfig,
    SuiteSpec,
    ValidationOptions,
)
from airflow_mlpipe.exceptions import ConfigError, DataError
from airflow_mlpipe.validation.suite import load_suite
from tests.fixtures.validation import make_frame


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: ExpectationSpec(type="not_an_expectation"), "snake-case"),
        (
            lambda: ExpectationSpec.from_mapping({"type": "expect_x", "column": "a"}),
            "put arguments under 'kwargs'",
        ),
        (lambda: ExpectationSpec.from_mapping({"kwargs": {}}), "has no 'type'"),
        (lambda: ShiftCheck(column="a", threshold=-1), "must be >= 0"),
        (lambda: ShiftCheck(column="a", threshold="high"), "must be a number"),
        (lambda: ShiftCheck(column="a", bins=1), "integer >= 2"),
        (lambda: ShiftCheck(column="a", kind="text"), "must be one of"),
        (lambda: ShiftConfig(reference_uri=""), "needs reference_uri"),
        (lambda: ShiftConfig.build("r.parquet", "a"), "not a string"),
        (lambda: ValidationOptions(on_failure="warn"), "on_failure"),
        (lambda: ValidationOptions(result_format="FULL"), "result_format"),
    ],
)
def test_config_errors_say_what_to_change(build, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        build()
    assert fragment in str(info.value)


def test_shift_config_from_mapping_and_list():
    cfg = ShiftConfig.build("r.parquet", {"a": 0.2, "b": {"threshold": 0.3, "kind": "categorical"}}, bins=7)
    assert [(c.column, c.threshold, c.kind, c.bins) for c in cfg.checks] == [
        ("a", 0.2, "auto", 7),
        ("b", 0.3, "categorical", 7),
    ]
    assert [c.column for c in ShiftConfig.build("r.parquet", ["x", "y"]).checks] == ["x", "y"]
    assert ShiftConfig.build("r.parquet", None).checks == []


def test_load_suite_from_json_yaml_inline_and_search_paths(tmp_path):
    exps = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "größe"}}]
    (tmp_path / "s.json").write_text(
        json.dumps({"name": "from_json", "expectations": exps}), encoding="utf-8"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "plain.yaml").write_text(
        "- type: expect_column_values_to_be_between\n  kwargs: {column: 価格, min_value: 0}\n",
        encoding="utf-8",
    )
    assert load_suite(str(tmp_path / "s.json")).name == "from_json"
    found = load_suite("sub/plain.yaml", search_paths=["/nonexistent", tmp_path])
    assert found.name == "plain" and found.columns() == ["価格"]
    inline = load_suite(exps, name="inline")
    assert inline.expectations[0].as_dict()["kwargs"] == {"column": "größe"}
    legacy = load_suite([{"expectation_type": "expect_column_to_exist", "kwargs": {"column": "a"}}])
    assert legacy.expectations[0].type == "expect_column_to_exist"
    with pytest.raises(ConfigError, match="not found; looked in"):
        load_suite("missing.yaml", search_paths=[tmp_path])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="Could not parse"):
        load_suite(str(tmp_path / "bad.json"))
    with pytest.raises(ConfigError, match="'expectations' list"):
        load_suite({"name": "x"})


def test_suite_columns_cover_pairs_and_lists():
    suite = SuiteSpec(
        name="s",
        expectations=[
            {"type": "expect_column_pair_values_to_be_equal", "kwargs": {"column_A": "a", "column_B": "b"}},
            {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["c", "a"]}},
        ],
    )
    assert suite.columns() == ["a", "b", "c"]


def test_shift_partitions_are_valid_ge_partition_objects():
    import numpy as np

    from airflow_mlpipe.validation.shift import shift_expectations

    ref = make_frame(rows=1000, seed=0)
    ref["const"] = 3.0
    ref["ident"] = [f"id{i}" for i in range(len(ref))]
    specs, skipped = shift_expectations(ref, ref, ShiftConfig.build("ref", None, max_categories=10))
    by_col = {s.kwargs["column"]: s.kwargs for s in specs}
    assert set(by_col) == {"größe", "価格", "label", "const"}
    assert skipped == [{"column": "ident", "reason": "more than 10 distinct values (id or free text)"}]
    num = by_col["größe"]["partition_object"]
    assert len(num["bins"]) == len(num["weights"]) + 1 == 11
    assert np.all(np.diff(num["bins"]) > 0) and np.isclose(sum(num["weights"]), 1.0)
    cat = by_col["価格"]["partition_object"]
    assert cat["values"] == ["a", "b", "c"] and np.isclose(sum(cat["weights"]), 1.0)
    const = by_col["const"]["partition_object"]
    assert const["weights"] == [1.0] and const["bins"][0] < 3.0 < const["bins"][1]
    json.dumps([s.as_dict() for s in specs])  # stored in the suite and rendered: must be JSON


def test_shift_skips_type_changes_for_the_caller_and_rejects_null_references():
    from airflow_mlpipe.validation.shift import shift_expectations

    ref = make_frame(rows=50)
    cur = ref.assign(größe=ref["größe"].astype(str))
    specs, skipped = shift_expectations(ref, cur, ShiftConfig.build("ref", ["größe"]))
    assert specs == []
    assert skipped[0]["column"] == "größe" and skipped[0]["type_changed"] is True
    assert "changed type: float64 in the reference, object in the dataset" in skipped[0]["reason"]
    with pytest.raises(DataError, match="missing from the dataset"):
        shift_expectations(ref, ref.drop(columns=["label"]), ShiftConfig.build("ref", ["label"]))
    with pytest.raises(DataError, match="entirely null"):
        shift_expectations(ref.assign(label=None), ref, ShiftConfig.build("ref", ["label"]))


def test_make_offline_removes_cdn_links_and_adds_local_shims(tmp_path):
    from airflow_mlpipe.validation.docs import external_references, make_offline

    page = tmp_path / "validations" / "s" / "p.html"
    page.parent.mkdir(parents=True)
    page.write_text(
        '<html><head><link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/b.css"/>\n'
        '<script src="https://code.jquery.com/jquery.js" crossorigin="anonymous"></script>\n'
        '</head><body><img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1">'
        '<a href="https://greatexpectations.io">GX</a></body></html>',
        encoding="utf-8",
    )
    assert external_references(tmp_path)  # the check itself sees remote loads
    assert make_offline(tmp_path) == 1
    html = page.read_text(encoding="utf-8")
    assert external_references(tmp_path) == []
    assert '<link rel="stylesheet" href="../../static/styles/mlpipe-offline.css">' in html
    assert '<script src="../../static/mlpipe-offline.js"></script>' in html
    assert 'src="../../static/images/logo-long.png"' in html
    assert 'href="https://greatexpectations.io"' in html  # plain hyperlinks stay
    assert (tmp_path / "static" / "mlpipe-offline.js").is_file()


def test_failure_message_names_expectations_and_observed_values():
    from airflow_mlpipe.validation.runner import failure_message

    summary = {
        "suite": "s",
        "dataset_uri": "file:///d.parquet",
        "statistics": {"evaluated_expectations": 3, "unsuccessful_expectations": 2},
        "failed": [
            {
                "expectation": "expect_column_mean_to_be_between",
                "column": "a",
                "observed": 7.5,
                "details": {},
            },
            {
                "expectation": "expect_column_kl_divergence_to_be_less_than",
                "column": "b",
                "observed": 0.4,
                "details": {"threshold": 0.1},
            },
        ],
        "data_docs_uri": "file:///docs/index.html",
    }
    text = failure_message(summary)
    assert "2 of 3 expectations failed" in text
    assert "expect_column_mean_to_be_between column='a': observed 7.5" in text
    assert "observed 0.4 (threshold 0.1)" in text
    assert text.endswith("Data Docs: file:///docs/index.html")


def test_operator_arguments_checked_without_io():
    from airflow_mlpipe.operators.great_expectations import DataDocsLink, DataValidationOperator

    with pytest.raises(ConfigError, match="exactly one of dataset_uri"):
        DataValidationOperator(task_id="v", suite=[])
    with pytest.raises(ConfigError, match="exactly one of dataset_uri"):
        DataValidationOperator(task_id="v", dataset_uri="a.parquet", sql="SELECT 1", conn_id="c", suite=[])
    with pytest.raises(ConfigError, match="sql needs conn_id"):
        DataValidationOperator(task_id="v", sql="SELECT 1", suite=[])
    with pytest.raises(ConfigError, match="on_failure"):
        DataValidationOperator(task_id="v", dataset_uri="a.parquet", suite=[], on_failure="warn")
    # A suite file that does not exist is only looked up when the task runs.
    op = DataValidationOperator(task_id="v", dataset_uri="{{ var.value.path }}", suite="nowhere.yaml")
    assert {"dataset_uri", "sql", "conn_id", "suite", "reference_uri", "shift_columns"} <= set(
        op.template_fields
    )
    assert [link.name for link in op.operator_extra_links] == ["Data Docs"]
    assert DataDocsLink.key == "mlpipe_data_docs"
