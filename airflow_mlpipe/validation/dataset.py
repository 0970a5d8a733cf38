"""Validate a dataset end to end: load it, add shift checks, run the suite, publish Data Docs.

Plain functions, usable without a running Airflow task (the benchmark and unit tests call them
directly); :class:`~airflow_mlpipe.operators.great_expectations.DataValidationOperator` wraps them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.validation import ShiftConfig, SuiteSpec, ValidationOptions
from airflow_mlpipe.core.datasets import read_table
from airflow_mlpipe.exceptions import ConfigError, DataError
from airflow_mlpipe.validation.docs import make_offline, publish
from airflow_mlpipe.validation.runner import check_frame, run_suite, summarize
from airflow_mlpipe.validation.shift import shift_expectations
from airflow_mlpipe.validation.sql import SqlData

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import ObjectStoragePath


def _string_columns(df: pd.DataFrame) -> pd.DataFrame:
    # GE addresses columns by name in JSON; integer names (headerless CSV, numpy frames) become text.
    if not all(isinstance(c, str) for c in df.columns):
        df.columns = [str(c) for c in df.columns]
    return df


def load_dataset(uri: str | os.PathLike[str], *, fmt: str | None = None) -> pd.DataFrame:
    """Read a parquet/CSV dataset (any ``read_table`` URI); empty tables are a DataError."""
    return _string_columns(read_table(uri, fmt=fmt, allow_empty=False))


def load_query(conn_id: str, sql: str, parameters: Any = None) -> pd.DataFrame:
    """Run ``sql`` through the Airflow connection ``conn_id`` (any DbApiHook) into a DataFrame."""
    from airflow.sdk import BaseHook

    hook = BaseHook.get_connection(conn_id).get_hook()
    if hasattr(hook, "get_df"):
        df = hook.get_df(sql, parameters, df_type="pandas")
    elif hasattr(hook, "get_pandas_df"):
        df = hook.get_pandas_df(sql, parameters)
    else:
        raise ConfigError(
            f"Connection {conn_id!r} gives a {type(hook).__name__}, which cannot run SQL queries; "
            "use a database connection (a DbApiHook such as postgres or sqlite)."
        )
    if len(df) == 0:
        raise DataError(f"Query on connection {conn_id!r} returned no rows: {sql}")
    return _string_columns(df)


def validate_frame(
    df: pd.DataFrame,
    suite: SuiteSpec,
    *,
    dataset_uri: str,
    shift: ShiftConfig | None = None,
    options: ValidationOptions | None = None,
    docs_target: ObjectStoragePath | None = None,
) -> dict[str, Any]:
    """Validate ``df`` with ``suite`` (plus shift checks) and return the XCom summary.

    :param dataset_uri: what the summary and Data Docs call the dataset.
    :param shift: distribution-shift checks against a reference dataset.
    :param docs_target: folder for the Data Docs site (local or object storage); none when omitted.
    :raises DataError: the data cannot be validated (empty, missing/all-null columns, type change).
    :raises ConfigError: an expectation is unknown or has invalid arguments.
    """
    options = options or ValidationOptions()
    check_frame(df, suite, where=dataset_uri, options=options)
    return _validate(
        df, df, len(df), suite, dataset_uri=dataset_uri, shift=shift, options=options, docs_target=docs_target
    )


def validate_sql(
    data: SqlData,
    suite: SuiteSpec,
    *,
    dataset_uri: str,
    shift: ShiftConfig | None = None,
    options: ValidationOptions | None = None,
    docs_target: ObjectStoragePath | None = None,
) -> dict[str, Any]:
    """Validate a table or query in its database (GE's SQL engine); as :func:`validate_frame`.

    The summary also holds ``"engine": "sql"`` and the database-computed ``"digest"``.
    """
    from airflow_mlpipe.validation import sql

    options = options or ValidationOptions()
    found = sql.profile(data, suite, where=dataset_uri, options=options)
    summary = _validate(
        data,
        found.sample,
        found.rows,
        suite,
        dataset_uri=dataset_uri,
        shift=shift,
        options=options,
        docs_target=docs_target,
    )
    summary["engine"] = "sql"
    summary["digest"] = found.digest
    return summary


def _validate(
    data: pd.DataFrame | SqlData,
    sample: pd.DataFrame,
    row_count: int,
    suite: SuiteSpec,
    *,
    dataset_uri: str,
    shift: ShiftConfig | None,
    options: ValidationOptions,
    docs_target: ObjectStoragePath | None,
) -> dict[str, Any]:
    """Run the suite on ``data``; ``sample`` (the frame itself, or rows of it) gives column types."""
    full = suite
    skipped: list[dict[str, Any]] = []
    if shift is not None:
        reference = load_dataset(shift.reference_uri)
        extra, skipped = shift_expectations(reference, sample, shift)
        del reference
        full = SuiteSpec(name=suite.name, expectations=[*suite.expectations, *extra])
    if not full.expectations:
        raise ConfigError(
            f"Suite {suite.name!r} has no expectations and no shift checks: nothing to validate."
        )

    docs_uri = None
    if docs_target is None:
        validation, _ = run_suite(data, full, docs_dir=None, result_format=options.result_format)
    else:
        from airflow_mlpipe.core.storage import local_path

        docs_uri = str(docs_target / "index.html")
        local = local_path(docs_target)
        with tempfile.TemporaryDirectory(prefix="mlpipe-docs-") as tmp:
            build_dir = local if local is not None else tmp
            validation, _ = run_suite(data, full, docs_dir=build_dir, result_format=options.result_format)
            if options.offline_docs:
                make_offline(build_dir)
            publish(build_dir, docs_target)

    summary = summarize(validation, suite=suite.name, dataset_uri=dataset_uri, row_count=row_count)
    summary["data_docs_uri"] = docs_uri
    for item in summary["failed"]:
        # The pandas dtype makes type failures readable (GE reports per-value types for object).
        if item["column"] in sample.columns:
            item["details"]["column_dtype"] = str(sample[item["column"]].dtype)
            _explain_range_on_wrong_type(item, sample[item["column"]])
    _fail_type_changes(summary, [s for s in skipped if s.get("type_changed")])
    if shift is not None:
        summary["shift"] = {
            "reference_uri": shift.reference_uri,
            "columns": summary.get("shift") or {},
            "skipped": skipped,
        }
    return summary


def _explain_range_on_wrong_type(item: dict[str, Any], column: pd.Series) -> None:
    """A range check on a column that does not hold numbers (or dates) observes nothing: say why."""
    import pandas as pd

    details = item["details"]
    if item.get("observed") is not None or not ({"min_value", "max_value"} & set(details)):
        return
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_datetime64_any_dtype(column):
        return
    details["type_error"] = (
        f"column {item['column']!r} holds {column.dtype} values, not numbers: the range "
        f"[{details.get('min_value')}, {details.get('max_value')}] cannot be checked"
    )


def _fail_type_changes(summary: dict[str, Any], changes: list[dict[str, Any]]) -> None:
    """Count each column whose type changed since the reference as a failed shift check."""
    if not changes:
        return
    for change in changes:
        summary["failed"].append(
            {
                "expectation": "shift check",
                "column": change["column"],
                "observed": change["reason"],
                "details": {"column": change["column"]},
            }
        )
    stats = summary["statistics"]
    stats["evaluated_expectations"] = (stats.get("evaluated_expectations") or 0) + len(changes)
    stats["unsuccessful_expectations"] = (stats.get("unsuccessful_expectations") or 0) + len(changes)
    good = stats.get("successful_expectations") or 0
    stats["success_percent"] = 100.0 * good / stats["evaluated_expectations"]
    summary["success"] = False


def error_summary(
    exc: Exception, *, suite: str, dataset_uri: str, data_docs_uri: str | None
) -> dict[str, Any]:
    """The summary pushed when the data could not be validated at all (so XCom is never missing)."""
    return {
        "success": False,
        "dataset_uri": dataset_uri,
        "suite": suite,
        "row_count": None,
        "statistics": {
            "evaluated_expectations": 0,
            "successful_expectations": 0,
            "unsuccessful_expectations": 0,
            "success_percent": None,
        },
        "failed": [],
        "data_docs_uri": data_docs_uri,
        "error": f"{type(exc).__name__}: {exc}",
    }


def shift_from_args(
    reference_uri: str | None,
    columns: Any,
    *,
    threshold: float,
    bins: int,
    max_categories: int,
) -> ShiftConfig | None:
    """A :class:`ShiftConfig` from operator arguments, or ``None`` without a reference."""
    if not reference_uri:
        if columns:
            raise ConfigError("shift_columns needs reference_uri (the dataset to compare with).")
        return None
    if columns is not None and not isinstance(columns, (list, tuple, Mapping)):
        raise ConfigError(f"shift_columns must be a list or a mapping, got {type(columns).__name__}.")
    return ShiftConfig.build(
        reference_uri, columns, threshold=threshold, bins=bins, max_categories=max_categories
    )
