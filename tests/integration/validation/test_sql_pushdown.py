"""Validation pushed down to PostgreSQL: GE's SQL engine computes the suite in the database.

The row counter below listens to every cursor of every SQLAlchemy engine in the process (GE's
too) and adds up the rows each statement returned: with pushdown the worker receives a bounded
sample and aggregates; without it, every row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pendulum
import pytest

from tests.fixtures.validation import make_frame

pytestmark = [pytest.mark.integration, pytest.mark.scale]

ROWS = 20_000
SUITE = [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "größe"}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "価格", "value_set": ["a", "b"]}},
    {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "größe", "min_value": -10, "max_value": 10},
    },
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "label", "value_set": [0, 1]}},
]


@pytest.fixture
def pg_table(postgres_dsn: str) -> Iterator[tuple[str, Any, Any]]:
    """A fresh table of ``ROWS`` rows (``größe`` shifted by 1.5 against the reference) and its engine."""
    import sqlalchemy

    table = f"mlpipe_pushdown_{uuid.uuid4().hex[:10]}"
    df = make_frame(rows=ROWS, seed=3, shift=1.5)
    df["event_time"] = pendulum.datetime(2024, 3, 1).add(minutes=1) + df.index.to_series().map(
        lambda i: pendulum.duration(minutes=int(i))
    )
    engine = sqlalchemy.create_engine(postgres_dsn.replace("postgresql://", "postgresql+psycopg://"))
    df.to_sql(table, engine, index=False)
    try:
        yield table, df, engine
    finally:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP TABLE IF EXISTS "{table}"'))
        engine.dispose()


@pytest.fixture
def rows_received() -> Iterator[list[int]]:
    """Rows returned to this process by every SQL statement, counted at the cursor."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    counts: list[int] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if (
            statement.lstrip().upper().startswith(("SELECT", "WITH"))
            and cursor.rowcount
            and cursor.rowcount > 0
        ):
            counts.append(int(cursor.rowcount))

    event.listen(Engine, "after_cursor_execute", count)
    try:
        yield counts
    finally:
        event.remove(Engine, "after_cursor_execute", count)


def _failed(summary: dict[str, Any]) -> set[tuple[str, str | None]]:
    return {(f["expectation"], f["column"]) for f in summary["failed"]}


def test_pushdown_agrees_with_pandas_and_receives_no_rows(pg_table, rows_received, postgres_dsn, write_frame):
    import pandas as pd
    import sqlalchemy

    from airflow_mlpipe.validation.dataset import shift_from_args, validate_frame, validate_sql
    from airflow_mlpipe.validation.sql import SAMPLE_ROWS, SqlData
    from airflow_mlpipe.validation.suite import load_suite

    table, df, _ = pg_table
    reference = write_frame(make_frame(rows=5_000, seed=1), "reference.parquet")
    shift = shift_from_args(reference, ["größe", "価格"], threshold=0.1, bins=10, max_categories=100)
    suite = load_suite(SUITE, name="pushdown")
    data = SqlData(url=postgres_dsn.replace("postgresql://", "postgresql+psycopg://"), table=table)

    pushed = validate_sql(data, suite, dataset_uri="sql://pg/" + table, shift=shift)
    received_pushed = sum(rows_received)
    rows_received.clear()
    in_memory = validate_frame(df, suite, dataset_uri="frame", shift=shift)

    # the same verdicts: the in-set failure (c is not allowed) and the shifted numeric column
    assert pushed["engine"] == "sql" and pushed["row_count"] == ROWS
    assert (
        _failed(pushed)
        == _failed(in_memory)
        == {
            ("expect_column_values_to_be_in_set", "価格"),
            ("expect_column_kl_divergence_to_be_less_than", "größe"),
        }
    )
    assert pushed["shift"]["columns"]["größe"]["shifted"] is True
    assert pushed["shift"]["columns"]["価格"]["shifted"] is False
    kl_sql = pushed["shift"]["columns"]["größe"]["kl_divergence"]
    kl_mem = in_memory["shift"]["columns"]["größe"]["kl_divergence"]
    assert kl_sql == pytest.approx(kl_mem, rel=0.05)
    # the database did the work: a bounded sample reached the worker, not the table
    assert received_pushed <= SAMPLE_ROWS + 200, received_pushed
    # ... and the counter would see the table if it came over (as reading it into pandas does)
    rows_received.clear()
    engine = sqlalchemy.create_engine(data.url)
    with engine.connect() as conn:
        pd.read_sql_query(sqlalchemy.text(f'SELECT * FROM "{table}"'), conn)
    engine.dispose()
    assert sum(rows_received) >= ROWS


def test_digest_is_computed_in_the_database_and_tracks_content(pg_table, postgres_dsn):
    import sqlalchemy

    from airflow_mlpipe.validation.sql import SqlData, fingerprint

    table, _, engine = pg_table
    url = postgres_dsn.replace("postgresql://", "postgresql+psycopg://")
    by_table = fingerprint(SqlData(url=url, table=table))
    reordered = fingerprint(SqlData(url=url, query=f'SELECT * FROM "{table}" ORDER BY "größe" DESC'))
    assert by_table.startswith("pgrow:") and by_table == reordered  # order does not matter
    with engine.begin() as conn:
        conn.execute(
            sqlalchemy.text(
                f'UPDATE "{table}" SET label = 1 - label WHERE ctid = (SELECT min(ctid) FROM "{table}")'
            )
        )
    assert fingerprint(SqlData(url=url, table=table)) != by_table  # one changed value does


def test_a_column_type_without_a_hash_function_falls_back_to_the_text_hash(postgres_dsn):
    import sqlalchemy

    from airflow_mlpipe.validation.sql import SqlData, fingerprint

    table = f"mlpipe_digest_{uuid.uuid4().hex[:10]}"
    url = postgres_dsn.replace("postgresql://", "postgresql+psycopg://")
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f'CREATE TABLE "{table}" (id int, doc json)'))
            conn.execute(sqlalchemy.text(f"""INSERT INTO "{table}" VALUES (1, '{{"a": 1}}'), (2, '[2]')"""))
        found = fingerprint(SqlData(url=url, table=table))  # json has no hash function
        assert found.startswith("pgsum:")
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"""UPDATE "{table}" SET doc = '[3]' WHERE id = 2"""))
        assert fingerprint(SqlData(url=url, table=table)) not in (found, "")
        ints = fingerprint(SqlData(url=url, query=f'SELECT id FROM "{table}"'))
        assert ints.startswith("pgrow:")
    finally:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP TABLE IF EXISTS "{table}"'))
        engine.dispose()


def test_operator_pushes_down_a_table_and_refuses_bad_input(run_dag, pg_table, postgres_dsn, monkeypatch):
    from airflow.sdk import DAG, Asset

    from airflow_mlpipe.exceptions import ConfigError
    from airflow_mlpipe.operators.great_expectations import DataValidationOperator

    table, _, _ = pg_table
    conn_id = f"pg_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", postgres_dsn)
    good_suite = [s for s in SUITE if s["kwargs"].get("value_set") != ["a", "b"]]
    with pytest.raises(ConfigError, match="identifier"):
        DataValidationOperator(task_id="x", table=f"{table}; DROP TABLE x", conn_id=conn_id, suite=good_suite)
    with pytest.raises(ConfigError, match="exactly one"):
        DataValidationOperator(task_id="y", table=table, sql="SELECT 1", conn_id=conn_id, suite=good_suite)
    with DAG(
        "validation_pushdown", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False
    ) as dag:
        DataValidationOperator(
            task_id="table",
            table=f"public.{table}",
            conn_id=conn_id,
            suite=good_suite,
            timestamp_column="event_time",
            outlets=[Asset(name="validated_pushdown", uri="mlpipe://validation/pushdown")],
        )
        DataValidationOperator(
            task_id="missing_column",
            sql=f'SELECT "größe" FROM "{table}"',
            conn_id=conn_id,
            suite=good_suite,
        )
        DataValidationOperator(
            task_id="no_table", table="mlpipe_no_such_table", conn_id=conn_id, suite=good_suite
        )
    res = run_dag(dag)
    assert res.task_states == {"table": "success", "missing_column": "failed", "no_table": "failed"}
    summary = res.xcom("table")
    assert summary["engine"] == "sql" and summary["row_count"] == ROWS
    assert summary["time_range"]["start"].startswith("2024-03-01T00:01:00")
    [(_, extra)] = res.asset_events()
    assert extra["digest"].startswith("pgrow:") and extra["dataset_uri"] == f"sql://{conn_id}/public.{table}"
    assert "lacks column(s) ['label']" in res.xcom("missing_column")["error"]
    assert "cannot be read" in res.xcom("no_table")["error"]
