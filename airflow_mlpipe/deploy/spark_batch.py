"""Batch scoring on Spark: the dataset read by Spark and scored on its executors by a pandas UDF
(``DataFrame.mapInPandas``) that runs the in-process mode's own :func:`~.batch.score_chunk` on every
Arrow batch, so both engines check, score and shape rows identically.

The executors' part files are merged, row group by row group, into the very file the in-process
mode writes (``ParquetOutput``: same columns and types of the scored columns, same metadata,
temporary name renamed when complete). Rows come in Spark's partition order: keep an id column to
join the predictions back. Before the job, the first rows are scored on the driver: that fixes the
output schema and reports a bad column at once, with the in-process mode's message.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airflow_mlpipe.config.deploy import BatchScoringConfig
from airflow_mlpipe.core.datasets import detect_format
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.core.storage import local_path, resolve
from airflow_mlpipe.deploy.batch import ParquetOutput, check_columns, chunk_arguments, score_chunk
from airflow_mlpipe.exceptions import DataError, MissingDependencyError
from airflow_mlpipe.hooks.spark import is_local, spark_master

#: rows scored on the driver before the job (output schema, first checks)
SAMPLE_ROWS = 1_000

#: session settings scoring relies on, set for the job on whichever session runs it: Arrow for
#: the driver's sample, UTC so timestamps keep their instants, timestamps written as parquet's own
#: type (not the legacy INT96, which pyarrow reads without a time zone)
_JOB_CONF = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}

#: the message of a DataError raised by the UDF, as it appears in Spark's report of a failed task
_WORKER_DATA_ERROR = re.compile(r"(?:airflow_mlpipe\.exceptions\.)?DataError: (.+)")


def score_dataset_spark(
    model: Any,
    *,
    input_uri: str,
    features: list[str],
    output_path: Any,
    model_name: str,
    model_version: str,
    config: BatchScoringConfig,
    keep_columns: list[str] | None = None,
    prediction_column: str = "prediction",
    inputs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """:func:`~.batch.score_dataset` as a Spark job on ``config``'s master (same arguments, same file,
    same errors); ``config.batch_size`` rows per Arrow batch of the UDF.

    With a cluster, the executors need ``airflow-mlpipe[spark]`` and the model's libraries, and the
    output's directory must be on storage the executors and this process share.

    :returns: ``{"predictions_uri", "row_count", "batches", "classes", "engine"}``.
    """
    columns, chunk = chunk_arguments(
        input_uri, features, keep_columns, prediction_column, model_version, inputs
    )
    keep = chunk["keep"]
    output = ParquetOutput(output_path, model_name, model_version)
    with spark_session(config) as spark, _job_conf(spark, config.batch_size):
        frame = _read(spark, input_uri, columns)
        sample = frame.limit(min(config.batch_size, SAMPLE_ROWS)).toPandas()
        if sample.empty:
            raise DataError(f"Dataset {input_uri} is empty (0 rows).")
        first, classes = score_chunk(model, sample, where="the first rows read", **chunk)
        chunks = spark.sparkContext.accumulator(0)
        scored = frame.mapInPandas(_scorer(model, chunks, chunk), _spark_schema(frame.schema, keep, first))
        parts = f"{output.local}.spark-{os.getpid()}"
        rows = 0
        try:
            try:
                scored.write.mode("overwrite").parquet(parts)
            except Exception as exc:
                found = _WORKER_DATA_ERROR.findall(str(exc))
                if found:
                    raise DataError(found[-1].strip()) from None
                raise
            with output:
                for table in _row_groups(parts):
                    output.write(_conform(table, first.schema, keep), classes)
                    rows += table.num_rows
        finally:
            shutil.rmtree(parts, ignore_errors=True)
    return {
        "predictions_uri": str(output_path),
        "row_count": rows,
        "batches": chunks.value,
        "classes": output.classes,
        "engine": "spark",
    }


@contextlib.contextmanager
def spark_session(config: BatchScoringConfig) -> Iterator[Any]:
    """The active SparkSession (left running), else a new one on ``config``'s master, stopped after.

    Local mode keeps to loopback (driver host and bind address 127.0.0.1), without the web UI, and
    runs its Python workers with this interpreter, so they import the packages installed here.
    """
    sql = require("pyspark.sql")
    # py4j logs every connection it opens and closes at INFO: noise in a task's log
    logging.getLogger("py4j").setLevel(logging.WARNING)
    active = sql.SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    master = spark_master(config.spark_conn_id)
    _find_java()
    if is_local(master):
        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # the block manager too, not the host's address
    builder = sql.SparkSession.builder.master(master).appName("mlpipe-batch-scoring")
    for key, value in session_conf(master, config).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    try:
        yield session
    finally:
        session.stop()


def session_conf(master: str, config: BatchScoringConfig) -> dict[str, str]:
    """The Spark properties of a new session: the provider's defaults under ``config.spark_conf``."""
    conf = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",  # progress bars in a task log are noise
        "spark.driver.memory": "1g",
        **_JOB_CONF,
    }
    if is_local(master):
        conf.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    for key, value in config.spark_conf.items():
        conf[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return conf


def _find_java() -> None:
    """Point ``JAVA_HOME`` at the ``java`` on ``PATH`` when it is not set (Spark's launcher needs one)."""
    if os.environ.get("JAVA_HOME"):
        return
    java = shutil.which("java")
    if java is None:
        raise MissingDependencyError(
            "Batch scoring with engine 'spark' needs a Java runtime (17 or later) on PATH or in "
            "JAVA_HOME; on Debian: apt-get install default-jre-headless (make system-deps)."
        )
    os.environ["JAVA_HOME"] = str(Path(os.path.realpath(java)).parent.parent)


@contextlib.contextmanager
def _job_conf(spark: Any, batch_size: int) -> Iterator[None]:
    """The settings scoring relies on, for the job only (a shared session gets its own back)."""
    wanted = {**_JOB_CONF, "spark.sql.execution.arrow.maxRecordsPerBatch": str(batch_size)}
    before = {key: spark.conf.get(key, None) for key in wanted}
    for key, value in wanted.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            spark.conf.unset(key) if value is None else spark.conf.set(key, value)


def _read(spark: Any, uri: str, columns: list[str]) -> Any:
    """``columns`` of the dataset at ``uri`` as a Spark DataFrame (the in-process mode's errors)."""
    path = resolve(uri)
    if not path.exists():
        raise DataError(f"Dataset not found: {uri}")
    source = local_path(path) or uri
    fmt = detect_format(uri)
    try:
        if fmt == "csv":
            frame = spark.read.csv(source, header=True, inferSchema=True)
        else:
            frame = spark.read.parquet(source)
    except Exception as exc:
        hint = ""
        if "TIMESTAMP(NANOS" in str(exc):
            hint = (
                " Spark reads timestamps of at most microsecond precision: write the dataset with "
                "pyarrow's coerce_timestamps='us', or score it with engine 'in_process'."
            )
        raise DataError(f"Could not read {fmt} dataset {uri}: {type(exc).__name__}: {exc}{hint}") from exc
    check_columns(uri, columns, list(frame.columns))
    selected = [frame[f"`{c}`"] for c in columns]
    if fmt == "csv":  # integers as pandas reads them from CSV: 64-bit (Spark infers 32 when they fit)
        types = require("pyspark.sql.types")
        integer = {f.name for f in frame.schema if isinstance(f.dataType, types.IntegerType)}
        selected = [
            col.cast("bigint").alias(c) if c in integer else col
            for c, col in zip(columns, selected, strict=True)
        ]
    return frame.select(*selected)


def _spark_schema(source: Any, keep: list[str], first: Any) -> Any:
    """The UDF's output schema: the kept columns as read, the scored columns as ``first`` has them."""
    types = require("pyspark.sql.types")
    arrow_types = require("pyspark.sql.pandas.types")
    fields = [source[c] for c in keep]
    for field in first.schema:
        if field.name in keep:
            continue
        kind = (
            types.StringType() if field.name == "model_version" else arrow_types.from_arrow_type(field.type)
        )
        fields.append(types.StructField(field.name, kind, True))
    return types.StructType(fields)


def _scorer(model: Any, chunks: Any, chunk: dict[str, Any]) -> Any:
    """The ``mapInPandas`` function: each Arrow batch of a partition through ``score_chunk``."""

    def score(frames: Iterator[Any]) -> Iterator[Any]:
        from pyspark import TaskContext

        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        start = 0
        for frame in frames:
            if frame.empty:
                continue
            where = f"partition {partition}, the chunk from its row {start}"
            table, _ = score_chunk(model, frame, where=where, **chunk)
            out = table.to_pandas()
            out["model_version"] = str(chunk["model_version"])  # dictionary-encoded again on merge
            chunks.add(1)
            start += len(frame)
            yield out

    return score


def _row_groups(directory: str) -> Iterator[Any]:
    """The row groups of Spark's part files, in partition order, one at a time."""
    pq = require("pyarrow.parquet")
    for part in sorted(glob.glob(os.path.join(directory, "part-*.parquet"))):
        source = pq.ParquetFile(part)
        for index in range(source.num_row_groups):
            yield source.read_row_group(index)


def _conform(table: Any, scored: Any, keep: list[str]) -> Any:
    """``table`` (as Spark wrote it) with the scored columns cast to the in-process mode's types
    (``scored``: a schema from ``score_chunk``); the kept columns stay as Spark read them."""
    for index, field in enumerate(table.schema):
        if field.name not in keep:
            table = table.set_column(
                index, field.name, table.column(index).cast(scored.field(field.name).type)
            )
    return table.replace_schema_metadata(None)
