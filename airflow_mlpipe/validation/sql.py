"""Validation where the data lives: a table or query on a database connection, run by the database.

Great Expectations' SQL execution engine turns each expectation into SQL, so the database computes
them and only results come back to the worker: no row of the table is loaded into the worker's
memory. What the worker still reads:

* one aggregate query for the pre-checks (row count, non-null count per column), so an empty
  table, a missing or an entirely null column is refused with the same clear error as for a file;
* a sample of ``SAMPLE_ROWS`` rows, only for the column *types* the shift checks and the failure
  messages need (numeric or not); the checks themselves are computed in the database;
* a content fingerprint for lineage, computed in the database (PostgreSQL: an order-independent sum
  of per-row 64-bit hashes, ``hash_record_extended`` — or ``hashtextextended`` of the row's text for
  a column type without a hash function; other databases: the query and its row count).

The distribution-shift checks compare with a reference file as for files: their partitions come
from the (small) reference; the histogram of the current data is computed by the database.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.validation import SuiteSpec, ValidationOptions
from airflow_mlpipe.exceptions import ConfigError, DataError
from airflow_mlpipe.validation.precheck import refuse_unusable

if TYPE_CHECKING:
    import pandas as pd

#: rows read for column types only (see the module docstring)
SAMPLE_ROWS = 1000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


@dataclass(frozen=True)
class SqlData:
    """A table or a query on a database, as Great Expectations' SQL engine reads it.

    :param url: SQLAlchemy URL of the database (from the Airflow connection).
    :param table: table name, optionally ``schema.table``; or
    :param query: a ``SELECT`` whose rows are the dataset.
    """

    url: str
    table: str | None = None
    query: str | None = None

    def __post_init__(self) -> None:
        if (self.table is None) == (self.query is None):
            raise ConfigError("Give exactly one of table or query for a database dataset.")
        if self.table is not None and not _NAME.match(self.table):
            raise ConfigError(
                f"Table name {self.table!r} must be an identifier or schema.identifier "
                "(use sql=... for anything else)."
            )
        if self.query is not None and not self.query.strip():
            raise ConfigError("The query of a database dataset is empty.")

    @property
    def schema_and_table(self) -> tuple[str | None, str]:
        assert self.table is not None
        schema, _, name = self.table.rpartition(".")
        return schema or None, name

    def from_clause(self, alias: str = "d") -> str:
        """SQL after ``FROM``: the table, or the query as a derived table, named ``alias``."""
        if self.table is not None:
            return ".".join(_quote(part) for part in self.table.split(".")) + f" AS {alias}"
        return f"({self.query.rstrip().rstrip(';')}) AS {alias}"  # type: ignore[union-attr]


def table_select(table: str) -> str:
    """``SELECT *`` of a table name checked like :class:`SqlData` checks it (no SQL in a name)."""
    return f"SELECT * FROM {SqlData(url='', table=table).from_clause()}"


def from_connection(conn_id: str, *, table: str | None = None, query: str | None = None) -> SqlData:
    """The SqlData of ``table`` or ``query`` on the Airflow connection ``conn_id``."""
    from airflow_mlpipe.hooks.database import sqlalchemy_url

    url = sqlalchemy_url(conn_id)
    return SqlData(url=url, table=table, query=query)


def _engine(data: SqlData) -> Any:
    import sqlalchemy

    return sqlalchemy.create_engine(data.url, pool_pre_ping=True)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Profile:
    """What one scan of the dataset told: row count, a type sample and the content digest."""

    rows: int
    sample: pd.DataFrame
    digest: str


#: PostgreSQL: order-independent content sums of each row's 64-bit hash (the sum is numeric, so it
#: cannot overflow), by digest prefix. ``pgrow``: ``hash_record_extended`` (PostgreSQL 14+) hashes
#: each column with its type's own extended hash function — the one hash partitioning relies on, so
#: stable across versions — about 4 times faster than ``pgsum``, which hashes the row's text form
#: (``hashtextextended``) and serves column types without a hash function (``json``, ``point`` …).
#: Like any lineage fingerprint they tell changed data apart; neither is a cryptographic commitment.
_PG_SUMS = {
    "pgrow": "coalesce(sum(hash_record_extended(d, 0)), 0)",
    "pgsum": "coalesce(sum(hashtextextended(d::text, 0)), 0)",
}


def _digest(data: SqlData, rows: int, pg_sum: Any, method: str) -> str:
    if pg_sum is not None:
        return f"{method}:" + hashlib.sha256(f"{rows}:{pg_sum}".encode()).hexdigest()
    return "query:" + hashlib.sha256(f"{data.table or data.query}\n{rows}".encode()).hexdigest()


def _aggregate(conn: Any, data: SqlData, aggregates: list[str], pg: bool) -> tuple[Any, str]:
    """One scan computing ``aggregates`` and (PostgreSQL) the content sum last; the row and the
    digest method. A column type without an extended hash function falls back to the text hash."""
    import sqlalchemy

    def scan(*content: str) -> Any:
        columns = ", ".join([*aggregates, *content])
        return conn.execute(sqlalchemy.text(f"SELECT {columns} FROM {data.from_clause()}")).one()

    if not pg:
        return scan(), "query"
    try:
        with conn.begin_nested():  # a failed statement is rolled back to here, not the connection
            return scan(_PG_SUMS["pgrow"]), "pgrow"
    except sqlalchemy.exc.ProgrammingError as exc:
        if "hash function" not in str(exc):
            raise
    return scan(_PG_SUMS["pgsum"]), "pgsum"


def profile(data: SqlData, suite: SuiteSpec, *, where: str, options: ValidationOptions) -> Profile:
    """Pre-check the dataset in the database in one scan: row count, non-null count per column
    and (PostgreSQL) the content digest; plus a sample of ``SAMPLE_ROWS`` rows for column types.

    :raises DataError: no rows, duplicate or missing columns, entirely null columns (as for files),
        or a dataset the database cannot read.
    """
    import pandas as pd
    import sqlalchemy

    engine = _engine(data)
    try:
        with engine.connect() as conn:
            sample = pd.read_sql_query(
                sqlalchemy.text(f"SELECT * FROM {data.from_clause()} LIMIT {SAMPLE_ROWS}"), conn
            )
            names = [str(c) for c in sample.columns]
            pg = engine.dialect.name == "postgresql"
            aggregates = ["count(*)", *(f"count({_quote(c)})" for c in names)]
            row, method = _aggregate(conn, data, aggregates, pg)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise DataError(f"Dataset {where} cannot be read: {type(exc).__name__}: {exc}") from exc
    finally:
        engine.dispose()
    rows = int(row[0])
    non_null = [int(v) for v in row[1 : 1 + len(names)]]
    refuse_unusable(where, rows=rows, names=names, non_null=non_null, suite=suite, options=options)
    return Profile(rows=rows, sample=sample, digest=_digest(data, rows, row[-1] if pg else None, method))


def fingerprint(data: SqlData) -> str:
    """The content digest alone (as :func:`profile` computes it): PostgreSQL sums each row's hash,
    so the digest does not depend on row order; other databases digest the query and its row
    count."""

    engine = _engine(data)
    try:
        pg = engine.dialect.name == "postgresql"
        with engine.connect() as conn:
            row, method = _aggregate(conn, data, ["count(*)"], pg)
    finally:
        engine.dispose()
    return _digest(data, int(row[0]), row[1] if pg else None, method)


def add_batch(context: Any, data: SqlData) -> Any:
    """The whole-table batch definition of ``data`` in a GE context (SQL execution engine)."""
    source = context.data_sources.add_sql("mlpipe", connection_string=data.url)
    if data.table is not None:
        schema, name = data.schema_and_table
        asset = source.add_table_asset("dataset", table_name=name, schema_name=schema)
    else:
        asset = source.add_query_asset("dataset", query=data.query.rstrip().rstrip(";"))  # type: ignore[union-attr]
    return asset.add_batch_definition_whole_table("whole")


def bounds(data: SqlData, column: str) -> pd.DataFrame:
    """The minimum and maximum of ``column``, computed by the database, as a two-row frame."""
    import pandas as pd
    import sqlalchemy

    engine = _engine(data)
    try:
        with engine.connect() as conn:
            sql = f"SELECT min({_quote(column)}) AS lo, max({_quote(column)}) AS hi FROM {data.from_clause()}"
            lo, hi = conn.execute(sqlalchemy.text(sql)).one()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise DataError(f"Timestamp column {column!r} cannot be read: {type(exc).__name__}: {exc}") from exc
    finally:
        engine.dispose()
    return pd.DataFrame({column: [lo, hi]}).dropna()
