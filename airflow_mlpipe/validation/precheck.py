"""The checks before a suite runs, one definition for files (pandas) and tables (the database)."""

from __future__ import annotations

from collections.abc import Sequence

from airflow_mlpipe.config.validation import SuiteSpec, ValidationOptions
from airflow_mlpipe.exceptions import DataError


def refuse_unusable(
    where: str,
    *,
    rows: int,
    names: Sequence[str],
    non_null: Sequence[int],
    suite: SuiteSpec,
    options: ValidationOptions,
) -> None:
    """Reject input the suite cannot meaningfully validate, with a message naming the problem.

    :param non_null: non-null values per column of ``names``.
    :raises DataError: no rows, duplicate or missing columns, entirely null columns.
    """
    if rows == 0:
        raise DataError(f"Dataset {where} is empty (0 rows); there is nothing to validate.")
    duplicates = sorted({c for c in names if names.count(c) > 1})
    if duplicates:
        raise DataError(f"Dataset {where} has duplicate column name(s) {duplicates}.")
    missing = [c for c in suite.columns() if c not in names]
    if missing:
        raise DataError(
            f"Dataset {where} lacks column(s) {missing} that suite {suite.name!r} checks; it has {list(names)}."
        )
    if not options.allow_all_null_columns:
        all_null = [c for c, n in zip(names, non_null, strict=True) if n == 0]
        if all_null:
            raise DataError(
                f"Dataset {where} has column(s) {all_null} that are entirely null; "
                "pass allow_all_null_columns=True if that is expected."
            )
