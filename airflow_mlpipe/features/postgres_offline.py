"""Training sets joined in PostgreSQL (Feast's ``postgres`` offline store), streamed to parquet.

What runs where:

* the worker checks the entity table (:func:`~airflow_mlpipe.features.training_set.prepare_entities`)
  and copies its join keys, timestamp and row number (``COPY``, no other column) into a scratch
  table in the offline store's schema;
* the database runs Feast's point-in-time join (per view: the latest feature row at or before the
  row's timestamp and within the TTL, left-joined, so a row without a valid value gets nulls),
  keeps one result per row number and sorts by it;
* the worker reads the result through a server-side (named) cursor, ``chunk_rows`` rows at a
  time, and writes each chunk, next to the entity rows it belongs to, as one parquet row group.

Only one chunk of feature values is in the worker at a time; the entity table itself is (it was
read from a file and windowed there). Row *i* of the output is row *i* of the input, duplicates
included, with the entity table's columns and then the service's features — as with the file store.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.features import TrainingSetConfig
from airflow_mlpipe.core.datasets import ChunkedFrameDigest
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.core.storage import local_path
from airflow_mlpipe.exceptions import ConfigError, DataError
from airflow_mlpipe.features.definitions import check_sources
from airflow_mlpipe.features.registry import ServiceInfo, feature_service
from airflow_mlpipe.features.training_set import ROW_ID, prepare_entities

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath
    from feast import FeatureStore

#: name prefix of the scratch tables holding an entity table's keys while its set is built
SCRATCH_PREFIX = "mlpipe_entities_"
#: the timestamp column's name in the scratch table (the name Feast looks for first)
_TS = "event_timestamp"
_TIMESTAMPTZ_OID = 1184


@dataclass
class WrittenSet:
    """A written parquet file: URI, rows, row groups (``None``: not counted) and content digest."""

    uri: str
    rows: int
    row_groups: int | None
    digest: str


def _pg_column_type(dtype: Any) -> str:
    ptypes = require("pandas").api.types
    if ptypes.is_bool_dtype(dtype):
        return "boolean"
    if ptypes.is_integer_dtype(dtype):
        return "bigint"
    if ptypes.is_float_dtype(dtype):
        return "double precision"
    if ptypes.is_datetime64_any_dtype(dtype):
        return "timestamptz"
    return "text"


def upload_keys(conn: Any, table: tuple[str, str], entities: pd.DataFrame, keys: list[str], ts: str) -> None:
    """Create ``table`` (schema, name) with the join keys, ``event_timestamp`` and row numbers; COPY them in."""
    from psycopg import sql

    if _TS in keys:
        raise ConfigError(
            f"A join key is called {_TS!r}, the name the postgres offline store reserves for the "
            "entity timestamp; rename the key."
        )
    np = require("numpy")
    types = {**{k: _pg_column_type(entities[k].dtype) for k in keys}, _TS: "timestamptz", ROW_ID: "bigint"}
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in types.items()
    )
    utc = entities[ts].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(*table), columns))
        copy = sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(sql.Identifier(*table))
        with cur.copy(copy) as pipe:
            step = 200_000  # CSV text of one slice at a time: bounded memory for any table size
            for start in range(0, len(entities), step):
                part = entities[keys].iloc[start : start + step].copy()
                # ISO-8601 text made by numpy (pandas' datetime formatting is ten times slower);
                # PostgreSQL keeps microseconds, so that is the precision the join compares at.
                stamps = np.datetime_as_string(utc[start : start + step], unit="us")
                part[_TS] = np.char.add(stamps, "Z")
                part[ROW_ID] = np.arange(start, start + len(part))
                pipe.write(part.to_csv(index=False, header=False).encode())
        cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(*table)))  # row counts for the planner
    conn.commit()


def _arrow_type(column: Any) -> pa.DataType:
    pa = require("pyarrow")
    from feast.type_map import pg_type_code_to_arrow

    if column.type_code == _TIMESTAMPTZ_OID:
        return pa.timestamp("us", tz="UTC")
    try:
        arrow_type: Any = pg_type_code_to_arrow(column.type_code)
    except (KeyError, ValueError, TypeError):
        raise DataError(
            f"Feature column {column.name!r} has PostgreSQL type code {column.type_code}, which has no "
            "Arrow equivalent; cast it in the source's query."
        ) from None
    return arrow_type


class ParquetSink:
    """One parquet file written a row group at a time, atomically when local, with its digest.

    :param path: where the file goes (``ObjectStoragePath``).
    :param entities: the whole entity table (the rows the written row groups are taken from).
    :param schema: Arrow schema of entity columns + feature columns.
    """

    def __init__(self, path: ObjectStoragePath, entities: pd.DataFrame, schema: pa.Schema) -> None:
        self.path = path
        self.entities = entities
        self.schema = schema
        self.rows = 0
        self._positions: list[Any] = []
        self._digest = ChunkedFrameDigest()
        local = local_path(path)
        self._target = local
        self._tmp = f"{local}.tmp-{os.getpid()}" if local is not None else None
        self._stack = contextlib.ExitStack()
        pq = require("pyarrow.parquet")
        if self._tmp is not None:
            os.makedirs(os.path.dirname(self._tmp), exist_ok=True)
            sink: Any = self._tmp
        else:
            sink = self._stack.enter_context(path.open("wb"))
        self._writer = pq.ParquetWriter(sink, schema)

    def write(self, positions: Any, features: pa.Table) -> None:
        """Write the entity rows at ``positions`` (numpy indices) with their ``features`` as one row group."""
        if len(positions) == 0:
            return
        pa = require("pyarrow")
        rows = self.entities.iloc[positions].reset_index(drop=True)
        left = pa.Table.from_pandas(rows, schema=self._entity_schema(), preserve_index=False)
        table = pa.Table.from_arrays([*left.columns, *features.columns], schema=self.schema)
        self._writer.write_table(table, row_group_size=len(positions))
        self._digest.add(self._frame(rows, features))
        self._positions.append(positions)
        self.rows += len(positions)

    def _entity_schema(self) -> pa.Schema:
        pa = require("pyarrow")
        n = len(self.entities.columns)
        return pa.schema(list(self.schema)[:n], metadata=self.schema.metadata)

    @staticmethod
    def _frame(rows: pd.DataFrame, features: pa.Table) -> pd.DataFrame:
        pd = require("pandas")
        return pd.concat([rows, features.to_pandas()], axis=1)

    def close(self) -> WrittenSet:
        """Finish the file (an empty one still has the schema) and return what was written."""
        if not self._positions:
            empty = self.schema.empty_table()
            self._writer.write_table(empty)
            self._digest.add(self._frame(self.entities.iloc[:0], empty.select(self._feature_names())))
        self._writer.close()
        self._stack.close()
        if self._tmp is not None:
            os.replace(self._tmp, str(self._target))
        digest = self._digest.result(self._reread)
        return WrittenSet(str(self.path), self.rows, len(self._positions), digest)

    def abort(self) -> None:
        """Close and remove a partly written local file."""
        with contextlib.suppress(Exception):
            self._writer.close()
        self._stack.close()
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._tmp)

    def _feature_names(self) -> list[str]:
        return list(self.schema.names)[len(self.entities.columns) :]

    def _reread(self, i: int, dtypes: dict[str, Any]) -> pd.DataFrame:
        # Row group i of the finished file holds exactly the rows at self._positions[i].
        pq = require("pyarrow.parquet")
        with self.path.open("rb") as fh:
            features = pq.ParquetFile(fh).read_row_group(i, columns=self._feature_names())
        rows = self.entities.iloc[self._positions[i]].reset_index(drop=True)
        return self._frame(rows, features)


@contextlib.contextmanager
def _embedded_entities(offline: Any) -> Iterator[None]:
    """Feast's ``embed_query`` entity mode while the job is built and its SQL generated: the scratch
    table is already in the database; the ``temp_table`` mode would copy it once more, unanalysed."""
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres import EntitySelectMode

    before = offline.entity_select_mode
    offline.entity_select_mode = EntitySelectMode.embed_query
    try:
        yield
    finally:
        offline.entity_select_mode = before


@contextlib.contextmanager
def _scratch_table(conn: Any, schema: str) -> Iterator[tuple[str, str]]:
    from psycopg import sql

    table = (schema, f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:16]}")

    def drop() -> None:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(*table)))
        conn.commit()

    try:
        yield table
    except BaseException:
        with contextlib.suppress(Exception):  # the error that got here is the one to report
            drop()
        raise
    drop()


@dataclass
class StreamedSets:
    """The training set (and the holdout, when rows were held out) written from one query."""

    info: ServiceInfo
    training: WrittenSet
    holdout: WrittenSet | None = None
    chunks: int = 0


def stream_training_set(
    store: FeatureStore,
    cfg: TrainingSetConfig,
    frame: pd.DataFrame,
    path: ObjectStoragePath,
    *,
    held: Any = None,
    holdout_path: ObjectStoragePath | None = None,
) -> StreamedSets:
    """Join ``frame`` with the feature service in PostgreSQL and stream the result to ``path``.

    :param held: boolean mask over ``frame``'s rows: those rows go to ``holdout_path`` instead.
    :raises ConfigError: the store's offline store is not ``postgres``, or a view's source is not
        a ``PostgreSQLSource``.
    :raises DataError: bad entity table (see ``prepare_entities``).
    """
    np = require("numpy")
    pa = require("pyarrow")
    from feast.infra.utils.postgres.connection_utils import _get_conn
    from psycopg import sql

    offline = store.config.offline_store
    if getattr(offline, "type", None) != "postgres":
        raise ConfigError("stream_training_set needs the postgres offline store.")
    service, info = feature_service(store, cfg.feature_service, full_feature_names=cfg.full_feature_names)
    check_sources(_batch_views(store, service), "postgres")
    entities = prepare_entities(frame, cfg, info)
    keys = list(cfg.entity_columns or info.entity_keys)
    mask = None if held is None else np.asarray(held, dtype=bool)
    if mask is not None and len(mask) != len(entities):
        raise DataError(f"The holdout mask has {len(mask)} values for {len(entities)} entity rows.")
    entity_schema = pa.Schema.from_pandas(entities, preserve_index=False)
    if mask is not None and holdout_path is None:
        raise ConfigError("A holdout mask needs holdout_path.")
    paths = [path] if mask is None else [path, holdout_path]
    with contextlib.closing(_get_conn(offline)) as conn, _scratch_table(conn, offline.db_schema) as table:
        upload_keys(conn, table, entities, keys, cfg.timestamp_column)
        entity_sql = sql.SQL("SELECT * FROM {}").format(sql.Identifier(*table)).as_string(conn)
        # The job's query generator yields the SQL; RetrievalJob.to_sql() would end it before
        # the query runs. Feast reads the entity mode both when the job is built and in the generator.
        with _embedded_entities(offline):
            job: Any = store.get_historical_features(  # a PostgreSQLRetrievalJob
                entity_df=entity_sql, features=service, full_feature_names=cfg.full_feature_names
            )
            with job._query_generator() as pit_sql:
                try:
                    written, chunks = _write(conn, pit_sql, cfg, info, entities, entity_schema, mask, paths)
                finally:
                    # End the read transaction before the generator exits (in the temp_table mode
                    # Feast drops its entity copy there, on its own connection: that DROP would
                    # wait for this transaction's locks forever).
                    conn.rollback()
    return StreamedSets(
        info=info,
        training=written[0],
        holdout=written[1] if len(written) > 1 else None,
        chunks=chunks,
    )


def _write(
    conn: Any,
    pit_sql: str,
    cfg: TrainingSetConfig,
    info: ServiceInfo,
    entities: pd.DataFrame,
    entity_schema: pa.Schema,
    mask: Any,
    paths: list[Any],
) -> tuple[list[WrittenSet], int]:
    """Run ``pit_sql`` (one row per row number, in order) on a named cursor into one sink per path."""
    pa = require("pyarrow")
    from psycopg import sql

    wanted = sql.SQL(", ").join(sql.Identifier(f) for f in info.features)
    query = sql.SQL("SELECT DISTINCT ON ({rid}) {rid}, {wanted} FROM ({pit}) AS pit ORDER BY {rid}").format(
        rid=sql.Identifier(ROW_ID),
        wanted=wanted,
        pit=sql.SQL(pit_sql),  # type: ignore[arg-type]  # Feast's generated SQL
    )
    sinks: list[ParquetSink] = []
    with conn.cursor(name=f"mlpipe_{uuid.uuid4().hex[:12]}") as cur:
        cur.itersize = cfg.chunk_rows
        cur.execute(query)
        types = [_arrow_type(c) for c in cur.description[1:]]
        fields = [pa.field(n, t) for n, t in zip(info.features, types, strict=True)]
        schema = pa.schema([*entity_schema, *fields], metadata=entity_schema.metadata)
        try:
            sinks = [ParquetSink(p, entities, schema) for p in paths]
            chunks = _stream(cur, cfg.chunk_rows, len(entities), info.features, types, sinks, mask)
            return [s.close() for s in sinks], chunks
        except BaseException:
            for s in sinks:
                s.abort()
            raise


def _batch_views(store: FeatureStore, service: Any) -> list[Any]:
    from feast.errors import FeastObjectNotFoundException

    views = []
    for projection in service.feature_view_projections:
        try:
            views.append(store.get_feature_view(projection.name))
        except FeastObjectNotFoundException:
            raise ConfigError(
                f"Feature service {service.name!r} uses {projection.name!r}, which is not a batch "
                "feature view (an on-demand view?); training sets streamed from the postgres offline "
                "store take batch feature views only."
            ) from None
    return views


def _stream(
    cur: Any,
    chunk_rows: int,
    total: int,
    names: list[str],
    types: list[Any],
    sinks: list[ParquetSink],
    mask: Any,
) -> int:
    """Fetch ``chunk_rows`` at a time and hand each chunk to the sinks; returns the number of chunks."""
    np = require("numpy")
    pa = require("pyarrow")
    done = chunks = 0
    while rows := cur.fetchmany(chunk_rows):
        columns = list(zip(*rows, strict=True))
        ids = np.asarray(columns[0], dtype="int64")
        stop = done + len(rows)
        if ids[0] != done or ids[-1] != stop - 1:
            raise DataError(
                f"The point-in-time join returned rows {int(ids[0])}..{int(ids[-1])} where rows "
                f"{done}..{stop - 1} were due; the entity rows were changed while the set was built."
            )
        arrays = [pa.array(c, from_pandas=True).cast(t) for c, t in zip(columns[1:], types, strict=True)]
        features = pa.Table.from_arrays(arrays, names=names)
        positions = np.arange(done, stop)
        if mask is None:
            sinks[0].write(positions, features)
        else:
            part = mask[done:stop]
            sinks[0].write(positions[~part], features.filter(pa.array(~part)))
            sinks[1].write(positions[part], features.filter(pa.array(part)))
        done, chunks = stop, chunks + 1
    if done != total:
        raise DataError(f"The point-in-time join returned {done} of {total} entity rows.")
    return chunks
