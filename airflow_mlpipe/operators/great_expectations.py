"""Data validation with Great Expectations: the pipeline's quality gate.

The operator is thin: it resolves its (templated) arguments into config objects, pushes the Data
Docs link, and calls :func:`airflow_mlpipe.validation.dataset.validate_frame`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_mlpipe.config.validation import ShiftConfig, SuiteSpec, ValidationOptions
from airflow_mlpipe.core.links import report_url
from airflow_mlpipe.exceptions import ConfigError, DataError, QualityGateFailed
from airflow_mlpipe.operators._context import XComLink, push_link
from airflow_mlpipe.operators._results import push_then_raise

if TYPE_CHECKING:
    from airflow.sdk import Context


class DataDocsLink(XComLink):
    """Link to the Great Expectations Data Docs site the validation task wrote."""

    link_name = "Data Docs"
    key = "mlpipe_data_docs"


class DataValidationOperator(BaseOperator):
    """Validate a dataset with a Great Expectations suite and stop the pipeline when it fails.

    The XCom ``return_value`` is the summary ``{"success", "dataset_uri", "suite", "row_count",
    "statistics", "failed", "data_docs_uri", "shift"}``; it is pushed *before* the task fails. On
    success every outlet asset event gets ``{"suite", "row_count", "success_percent",
    "dataset_uri", "digest"}``, plus ``"time_range"`` with ``timestamp_column``; a failed or
    skipped task emits no asset event.

    :param dataset_uri: parquet/CSV dataset (``file://``, local path or object storage URI).
    :param sql: a query to validate instead of a file, run through ``conn_id``.
    :param table: a table (``name`` or ``schema.name``) to validate instead of a file, on ``conn_id``.
    :param conn_id: Airflow connection of a database (any DbApiHook) for ``sql`` or ``table``.
    :param pushdown: run a ``sql``/``table`` dataset where it lives, through Great Expectations'
        SQL execution engine (the database computes every expectation, including the shift
        checks' histograms; the worker reads a 1,000-row sample for column types and a
        database-computed digest). ``False`` loads the rows into the worker and validates them
        with pandas (needed for expectations the SQL engine does not implement).
    :param suite: suite file (JSON/YAML; relative paths are looked up next to the DAG file and in
        the DAG's ``template_searchpath``), a list of ``{"type", "kwargs"}`` dicts, or a mapping
        ``{"name", "expectations"}``.
    :param suite_name: overrides the suite's name.
    :param reference_uri: reference (historical) dataset for distribution-shift checks.
    :param shift_columns: columns to check for shift: ``None`` (every reference column), a list, or
        ``{column: threshold}`` / ``{column: {"threshold", "kind", "bins"}}``.
    :param shift_threshold: default KL-divergence threshold (nats).
    :param shift_bins: default number of quantile bins for numeric columns.
    :param shift_max_categories: skip non-numeric columns with more distinct values than this.
    :param on_failure: ``"fail"`` (raise QualityGateFailed) or ``"skip"`` (skip, so downstream skips).
    :param result_format: Great Expectations result format.
    :param allow_all_null_columns: accept columns that are entirely null.
    :param offline_docs: make Data Docs load nothing from CDNs.
    :param dataset_format: ``"parquet"`` or ``"csv"`` when the suffix does not tell.
    :param timestamp_column: event-time column of the batch: its range ``{"column", "start",
        "end"}`` is recorded as ``time_range`` in the result and on the asset events, so a run the
        batch triggers materializes just that time (see ``FeastMaterializeOperator``).
    """

    template_fields: Sequence[str] = (
        "dataset_uri",
        "sql",
        "table",
        "conn_id",
        "suite",
        "suite_name",
        "reference_uri",
        "shift_columns",
        "shift_threshold",
        "shift_bins",
        "shift_max_categories",
        "on_failure",
        "result_format",
        "dataset_format",
        "timestamp_column",
    )
    template_fields_renderers = {"sql": "sql", "suite": "json", "shift_columns": "json"}
    operator_extra_links = (DataDocsLink(),)
    ui_color = "#ff6f61"

    def __init__(
        self,
        *,
        dataset_uri: str | None = None,
        sql: str | None = None,
        table: str | None = None,
        conn_id: str | None = None,
        pushdown: bool = True,
        suite: str | os.PathLike[str] | Sequence[Mapping[str, Any]] | Mapping[str, Any],
        suite_name: str | None = None,
        reference_uri: str | None = None,
        shift_columns: Sequence[str] | Mapping[str, Any] | None = None,
        shift_threshold: float = 0.1,
        shift_bins: int = 10,
        shift_max_categories: int = 100,
        on_failure: str = "fail",
        result_format: str = "SUMMARY",
        allow_all_null_columns: bool = False,
        offline_docs: bool = True,
        dataset_format: str | None = None,
        timestamp_column: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Only argument *shape* is checked here (cheap, no I/O); values may still be templates.
        given = [
            name for name, value in (("dataset_uri", dataset_uri), ("sql", sql), ("table", table)) if value
        ]
        if len(given) != 1:
            raise ConfigError(
                "Give exactly one of dataset_uri (a file/URI), sql (a query) or table (a table name) "
                f"— got {given or 'none'}."
            )
        if (sql is not None or table is not None) and not conn_id:
            raise ConfigError(f"{given[0]} needs conn_id, the Airflow connection of the database.")
        if table is not None and "{{" not in table:
            from airflow_mlpipe.validation.sql import table_select

            table_select(table)  # a name, not SQL: refused when the DAG is parsed
        if on_failure not in ("fail", "skip") and "{{" not in str(on_failure):
            raise ConfigError(f"on_failure must be 'fail' or 'skip', got {on_failure!r}.")
        self.dataset_uri = None if dataset_uri is None else os.fspath(dataset_uri)
        self.sql = sql
        self.table = table
        self.conn_id = conn_id
        self.pushdown = pushdown
        self.suite = os.fspath(suite) if isinstance(suite, os.PathLike) else suite
        self.suite_name = suite_name
        self.reference_uri = reference_uri
        self.shift_columns = shift_columns
        self.shift_threshold = shift_threshold
        self.shift_bins = shift_bins
        self.shift_max_categories = shift_max_categories
        self.on_failure = on_failure
        self.result_format = result_format
        self.allow_all_null_columns = allow_all_null_columns
        self.offline_docs = offline_docs
        self.dataset_format = dataset_format
        self.timestamp_column = timestamp_column

    # -- resolution of arguments (execute time) ------------------------------------------------

    def _suite(self, context: Context) -> SuiteSpec:
        from airflow_mlpipe.operators._context import dag_search_paths
        from airflow_mlpipe.validation.suite import load_suite

        return load_suite(self.suite, name=self.suite_name, search_paths=dag_search_paths(context, self))

    def _shift(self) -> ShiftConfig | None:
        from airflow_mlpipe.validation.dataset import shift_from_args

        return shift_from_args(
            self.reference_uri,
            self.shift_columns,
            threshold=float(self.shift_threshold),
            bins=int(self.shift_bins),
            max_categories=int(self.shift_max_categories),
        )

    # -- execution ------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlpipe.core.datasets import file_digest, frame_digest
        from airflow_mlpipe.operators._context import emit_asset_metadata, task_dir
        from airflow_mlpipe.validation import dataset as ds
        from airflow_mlpipe.validation.runner import failure_message

        options = ValidationOptions(
            on_failure=self.on_failure,
            result_format=self.result_format,
            allow_all_null_columns=self.allow_all_null_columns,
            offline_docs=self.offline_docs,
        )
        suite = self._suite(context)
        shift = self._shift()
        docs_target = task_dir(context) / "data_docs"
        docs_uri = str(docs_target / "index.html")
        push_link(
            context, DataDocsLink, report_url(docs_uri)
        )  # before the long work: the link works on failure
        label = self.dataset_uri if self.dataset_uri is not None else f"sql://{self.conn_id}"
        if self.table is not None:
            label = f"{label}/{self.table}"

        try:
            if self.dataset_uri is None and self.pushdown:
                from airflow_mlpipe.validation import sql

                data = sql.from_connection(str(self.conn_id), table=self.table, query=self.sql)
                summary = ds.validate_sql(
                    data, suite, dataset_uri=label, shift=shift, options=options, docs_target=docs_target
                )
                bounds = sql.bounds(data, self.timestamp_column) if self.timestamp_column else None
            else:
                if self.dataset_uri is not None:
                    df = ds.load_dataset(self.dataset_uri, fmt=self.dataset_format)
                else:
                    from airflow_mlpipe.validation.sql import table_select

                    query = self.sql if self.sql is not None else table_select(str(self.table))
                    df = ds.load_query(str(self.conn_id), str(query))
                summary = ds.validate_frame(
                    df, suite, dataset_uri=label, shift=shift, options=options, docs_target=docs_target
                )
                bounds = df
            if self.timestamp_column and summary["success"]:
                from airflow_mlpipe.features.training_set import time_range

                summary["time_range"] = time_range(bounds, self.timestamp_column)
        except DataError as exc:
            # The XCom always says why nothing was marked valid, even when no suite could run.
            push_then_raise(
                context, ds.error_summary(exc, suite=suite.name, dataset_uri=label, data_docs_uri=None), exc
            )
        if self.sql is not None:
            summary["query"] = self.sql
        if not summary["success"]:
            message = failure_message(summary)
            self.log.error("%s", message)
            if options.on_failure == "skip":
                from airflow.sdk.exceptions import AirflowSkipException

                push_then_raise(context, summary, AirflowSkipException(message))
            push_then_raise(context, summary, QualityGateFailed(message, summary))
        context["ti"].xcom_push(key="return_value", value=summary)

        if self.dataset_uri is not None:
            digest = file_digest(self.dataset_uri)
        else:
            digest = summary.pop("digest", None) or frame_digest(df)
        emit_asset_metadata(
            context,
            self.outlets,
            {
                "suite": summary["suite"],
                "row_count": summary["row_count"],
                "success_percent": summary["statistics"]["success_percent"],
                "dataset_uri": label,
                "digest": digest,
                **({"time_range": summary["time_range"]} if summary.get("time_range") else {}),
            },
        )
        self.log.info(
            "Suite %r passed on %s (%s rows, %s expectations). Data Docs: %s",
            suite.name,
            label,
            summary["row_count"],
            summary["statistics"]["evaluated_expectations"],
            docs_uri,
        )
        return summary
