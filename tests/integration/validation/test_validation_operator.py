"""DataValidationOperator run for real: ``dag.test()`` on the metadata DB, real Great Expectations."""

from __future__ import annotations

import re
from pathlib import Path

import pendulum
import pytest

from airflow_mlpipe.core.links import report_url
from tests.fixtures.validation import make_frame

pytestmark = pytest.mark.integration

START = pendulum.datetime(2024, 1, 1, tz="UTC")


def _dag(dag_id: str):
    from airflow.sdk import DAG

    return DAG(dag_id, schedule=None, start_date=START, catchup=False)


def _local(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def test_passing_suite_emits_asset_event_and_offline_docs(run_dag, write_frame):
    from airflow.sdk import Asset

    from airflow_mlpipe.core.datasets import file_digest
    from airflow_mlpipe.operators.great_expectations import DataValidationOperator
    from airflow_mlpipe.validation.docs import external_references

    data = write_frame(make_frame(seed=1), "current.parquet")
    reference = write_frame(make_frame(seed=2), "reference.parquet")
    valid = Asset(name="validated_pass", uri="mlpipe://validation/pass")
    with _dag("validation_pass") as dag:
        DataValidationOperator(
            task_id="validate",
            dataset_uri=data,
            suite="suites/quality.yaml",  # relative to this DAG file's folder
            reference_uri=reference,
            shift_columns={"größe": 0.1, "価格": {"threshold": 0.05}},
            outlets=[valid],
        )
    res = run_dag(dag)
    assert res.task_states == {"validate": "success"}
    summary = res.xcom("validate")
    assert summary["success"] is True
    assert summary["suite"] == "quality"
    assert summary["row_count"] == 400
    assert summary["failed"] == []
    # five suite expectations plus one KL-divergence expectation per shift column
    assert summary["statistics"]["evaluated_expectations"] == 7
    assert summary["statistics"]["success_percent"] == 100.0
    shift = summary["shift"]["columns"]
    assert set(shift) == {"größe", "価格"}
    assert shift["größe"]["kind"] == "numeric" and shift["価格"]["kind"] == "categorical"
    assert 0 <= shift["größe"]["kl_divergence"] < 0.1
    assert shift["価格"]["threshold"] == 0.05

    events = res.asset_events()
    assert len(events) == 1
    uri, extra = events[0]
    assert uri == "mlpipe://validation/pass"
    assert extra == {
        "suite": "quality",
        "row_count": 400,
        "success_percent": 100.0,
        "dataset_uri": data,
        "digest": file_digest(data),
    }

    # The link was pushed and points at the site that was written, which loads nothing remote.
    assert res.xcom("validate", key="mlpipe_data_docs") == report_url(summary["data_docs_uri"])
    index = _local(summary["data_docs_uri"])
    assert index.is_file()
    site = index.parent
    assert external_references(site) == []
    pages = list((site / "validations").rglob("*.html"))
    assert len(pages) == 1
    html = pages[0].read_text(encoding="utf-8")
    assert "größe" in html and "価格" in html
    assert "static/mlpipe-offline.js" in html
    prefix = re.search(r'src="([./]*)static/mlpipe-offline\.js"', html).group(1)
    assert (pages[0].parent / prefix / "static" / "mlpipe-offline.js").resolve().is_file()
    assert (pages[0].parent / prefix / "static" / "styles" / "mlpipe-offline.css").resolve().is_file()


def test_failed_expectations_fail_the_gate_and_skip_nothing_valid(run_dag, write_frame):
    from airflow.sdk import Asset, task

    from airflow_mlpipe.operators.great_expectations import DataValidationOperator

    df = make_frame(seed=3)
    df.loc[:9, "größe"] = None  # 10 missing values
    df.loc[20:24, "価格"] = "zzz"  # 5 values outside the allowed set
    data = write_frame(df)
    with _dag("validation_fail") as dag:
        gate = DataValidationOperator(
            task_id="validate",
            dataset_uri=data,
            suite=[
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "größe"}},
                {
                    "type": "expect_column_values_to_be_in_set",
                    "kwargs": {"column": "価格", "value_set": ["a", "b", "c"]},
                },
                {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
            ],
            suite_name="inline",
            outlets=[Asset(name="validated_fail", uri="mlpipe://validation/fail")],
        )

        @task
        def train() -> str:
            return "trained"

        gate >> train()
    res = run_dag(dag)
    assert res.task_states == {"validate": "failed", "train": "upstream_failed"}
    summary = res.xcom("validate")
    assert summary["success"] is False
    assert summary["statistics"]["unsuccessful_expectations"] == 2
    failed = {f["expectation"]: f for f in summary["failed"]}
    assert set(failed) == {"expect_column_values_to_not_be_null", "expect_column_values_to_be_in_set"}
    assert failed["expect_column_values_to_not_be_null"]["column"] == "größe"
    assert failed["expect_column_values_to_not_be_null"]["observed"]["unexpected_count"] == 10
    in_set = failed["expect_column_values_to_be_in_set"]
    assert in_set["observed"]["unexpected_count"] == 5
    assert in_set["observed"]["unexpected_sample"] == [{"value": "zzz", "count": 5}]
    assert res.asset_events() == []
    assert res.xcom("validate", key="mlpipe_data_docs") == report_url(summary["data_docs_uri"])
    assert _local(summary["data_docs_uri"]).is_file()  # docs exist for the failed run too


def test_shift_against_reference_and_on_failure_skip(run_dag, write_frame):
    from airflow.sdk import task

    from airflow_mlpipe.operators.great_expectations import DataValidationOperator

    reference = write_frame(make_frame(seed=4), "reference.parquet")
    shifted = write_frame(make_frame(seed=5, shift=1.5), "shifted.parquet")
    with _dag("validation_shift") as dag:
        gate = DataValidationOperator(
            task_id="shift_skip",
            dataset_uri=shifted,
            suite=[{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "größe"}}],
            reference_uri=reference,
            shift_columns=["größe", "価格"],
            on_failure="skip",
        )
        # A per-column threshold large enough to accept the same shift.
        DataValidationOperator(
            task_id="shift_tolerated",
            dataset_uri=shifted,
            suite=[],
            reference_uri=reference,
            shift_columns={"größe": 5.0},
        )

        @task
        def downstream() -> str:
            return "ran"

        gate >> downstream()
    res = run_dag(dag)
    assert res.task_states == {"shift_skip": "skipped", "downstream": "skipped", "shift_tolerated": "success"}
    summary = res.xcom("shift_skip")
    assert summary["success"] is False
    [failed] = summary["failed"]
    assert failed["expectation"] == "expect_column_kl_divergence_to_be_less_than"
    assert failed["column"] == "größe"
    assert failed["observed"] > 0.1
    assert failed["details"]["threshold"] == 0.1
    assert summary["shift"]["columns"]["価格"]["shifted"] is False
    tolerated = res.xcom("shift_tolerated")
    assert tolerated["success"] is True
    assert tolerated["shift"]["columns"]["größe"]["kl_divergence"] == pytest.approx(
        failed["observed"], rel=0.5
    )


@pytest.fixture
def bad_inputs(tmp_path, write_frame):
    """One file per kind of bad input, with the error type and message fragment each must give."""
    import pandas as pd

    good = make_frame(seed=6)
    truncated = tmp_path / "truncated.parquet"
    full = Path(write_frame(good, "full.parquet")).read_bytes()
    truncated.write_bytes(full[: len(full) // 2])
    not_parquet = tmp_path / "text.parquet"
    not_parquet.write_text("this is not parquet\n")
    wrong_dtype = good.assign(größe=good["größe"].round(2).astype(str))
    all_null = good.assign(label=pd.Series([None] * len(good), dtype="float64"))
    suite = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "größe"}}]
    typed = [
        {
            "type": "expect_column_values_to_be_in_type_list",
            "kwargs": {"column": "größe", "type_list": ["float64"]},
        }
    ]
    return {
        "missing_file": (str(tmp_path / "nope.parquet"), suite, "DataError", "Dataset not found"),
        "truncated": (str(truncated), suite, "DataError", "truncated"),
        "not_parquet": (str(not_parquet), suite, "DataError", "Could not read parquet"),
        "empty": (write_frame(good.iloc[:0], "empty.parquet"), suite, "DataError", "is empty (0 rows)"),
        "missing_column": (
            write_frame(good.drop(columns=["größe"]), "nocol.parquet"),
            suite,
            "DataError",
            "lacks column(s) ['größe']",
        ),
        "all_null": (
            write_frame(all_null, "allnull.parquet"),
            suite,
            "DataError",
            "['label'] that are entirely null",
        ),
        "wrong_dtype": (
            write_frame(wrong_dtype, "dtype.parquet"),
            typed,
            "QualityGateFailed",
            "(column dtype object)",
        ),
        "unknown_expectation": (
            write_frame(good, "ok.parquet"),
            [{"type": "expect_the_moon", "kwargs": {}}],
            "ConfigError",
            "Invalid expectation expect_the_moon",
        ),
        "csv_empty": (str(tmp_path / "empty.csv"), suite, "DataError", "is empty"),
    }


def test_bad_inputs_give_specific_errors_and_no_valid_event(run_dag, bad_inputs, tmp_path):
    from airflow.sdk import Asset, task

    from airflow_mlpipe.operators.great_expectations import DataValidationOperator

    (tmp_path / "empty.csv").write_text("")

    def probe(name: str, uri: str, suite: list) -> None:
        @task(task_id=name)
        def run(**context) -> dict:
            op = DataValidationOperator(task_id=f"inner_{name}", dataset_uri=uri, suite=suite)
            try:
                op.execute(context)
            except Exception as exc:
                context["ti"].xcom_push(
                    key="outcome", value={"type": type(exc).__name__, "message": str(exc)}
                )
                raise
            return {"type": None}

        run.override(outlets=[Asset(name=f"bad_{name}", uri=f"mlpipe://validation/bad/{name}")])()

    with _dag("validation_bad_inputs") as dag:
        for name, (uri, suite, _, _) in bad_inputs.items():
            probe(name, uri, suite)
    res = run_dag(dag)
    for name, (_, _, error_type, fragment) in bad_inputs.items():
        assert res.task_states[name] == "failed", name
        outcome = res.xcom(name, key="outcome")
        assert outcome["type"] == error_type, (name, outcome)
        assert fragment in outcome["message"], (name, outcome)
        if error_type != "ConfigError":  # the summary says why nothing was marked valid
            summary = res.xcom(name)
            assert summary["success"] is False, name
    assert "error" in res.xcom("missing_column")
    assert res.asset_events() == []


def test_sql_query_through_postgres_connection(run_dag, postgres_dsn, monkeypatch):
    import uuid

    import sqlalchemy
    from airflow.sdk import Asset

    from airflow_mlpipe.core.datasets import frame_digest
    from airflow_mlpipe.operators.great_expectations import DataValidationOperator

    table = f"mlpipe_validation_{uuid.uuid4().hex[:10]}"
    df = make_frame(rows=200, seed=7)
    engine = sqlalchemy.create_engine(postgres_dsn.replace("postgresql://", "postgresql+psycopg2://"))
    df.to_sql(table, engine, index=False)
    conn_id = f"pg_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", postgres_dsn)
    try:
        with _dag("validation_sql") as dag:
            DataValidationOperator(
                task_id="validate_sql",
                sql=f'SELECT "größe", "価格", label FROM {table} WHERE label >= {{{{ params.min_label }}}}',
                conn_id=conn_id,
                suite=[
                    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "größe"}},
                    {
                        "type": "expect_column_values_to_be_in_set",
                        "kwargs": {"column": "価格", "value_set": ["a", "b", "c"]},
                    },
                ],
                params={"min_label": 0},
                outlets=[Asset(name="validated_sql", uri="mlpipe://validation/sql")],
            )
            DataValidationOperator(
                task_id="validate_sql_loaded",
                sql=f"SELECT * FROM {table}",
                conn_id=conn_id,
                pushdown=False,  # read into the worker, validated with pandas
                suite=[{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "größe"}}],
                outlets=[Asset(name="validated_sql_loaded", uri="mlpipe://validation/sql_loaded")],
            )
            DataValidationOperator(
                task_id="validate_sql_empty",
                sql=f"SELECT * FROM {table} WHERE label > 99",
                conn_id=conn_id,
                suite=[{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "größe"}}],
            )
        res = run_dag(dag)
    finally:
        with engine.begin() as c:
            c.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()
    assert res.task_states == {
        "validate_sql": "success",
        "validate_sql_loaded": "success",
        "validate_sql_empty": "failed",
    }
    summary = res.xcom("validate_sql")
    assert summary["success"] is True and summary["row_count"] == 200 and summary["engine"] == "sql"
    assert summary["dataset_uri"] == f"sql://{conn_id}"
    assert "WHERE label >= 0" in summary["query"]  # the query was templated
    assert "engine" not in res.xcom("validate_sql_loaded")
    events = dict(res.asset_events())
    assert events["mlpipe://validation/sql"]["digest"].startswith("pgrow:")  # computed by PostgreSQL
    assert events["mlpipe://validation/sql_loaded"]["digest"] == frame_digest(df)
    assert "is empty (0 rows)" in res.xcom("validate_sql_empty")["error"]
