"""Configuration objects of the data validation stage (Great Expectations).

Plain dataclasses, validated in ``__post_init__``; cheap to build in a DAG file (no I/O, no heavy
imports). The operator builds them from its (templated) arguments at execute time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_mlpipe.exceptions import ConfigError

ON_FAILURE = ("fail", "skip")
SHIFT_KINDS = ("auto", "numeric", "categorical")
RESULT_FORMATS = ("BOOLEAN_ONLY", "BASIC", "SUMMARY", "COMPLETE")


@dataclasses.dataclass
class ExpectationSpec:
    """One expectation in Great Expectations 1.x naming.

    :param type: snake-case expectation type, e.g. ``"expect_column_values_to_not_be_null"``.
    :param kwargs: the expectation's arguments, e.g. ``{"column": "age", "mostly": 0.99}``.
    :param meta: free-form notes rendered in Data Docs.
    """

    type: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not self.type.startswith("expect_"):
            raise ConfigError(
                f"Expectation type {self.type!r} is not a Great Expectations type; use a snake-case "
                "name such as 'expect_column_values_to_not_be_null'."
            )
        if not isinstance(self.kwargs, Mapping):
            raise ConfigError(f"kwargs of {self.type} must be a mapping, got {type(self.kwargs).__name__}.")
        self.kwargs = dict(self.kwargs)
        self.meta = dict(self.meta or {})

    @classmethod
    def from_mapping(cls, item: Mapping[str, Any]) -> ExpectationSpec:
        """Accept ``{"type", "kwargs", "meta"}``; the pre-1.0 key ``expectation_type`` is read too."""
        if not isinstance(item, Mapping):
            raise ConfigError(f"Each expectation must be a mapping with 'type' and 'kwargs', got {item!r}.")
        unknown = set(item) - {"type", "expectation_type", "kwargs", "meta", "id", "severity", "notes"}
        if unknown:
            raise ConfigError(
                f"Expectation {item.get('type')!r} has unknown key(s) {sorted(unknown)}; "
                "put arguments under 'kwargs'."
            )
        kind = item.get("type", item.get("expectation_type"))
        if kind is None:
            raise ConfigError(f"Expectation {dict(item)!r} has no 'type'.")
        return cls(type=kind, kwargs=dict(item.get("kwargs") or {}), meta=dict(item.get("meta") or {}))

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "kwargs": dict(self.kwargs), "meta": dict(self.meta)}

    def columns(self) -> list[str]:
        """The dataset columns this expectation refers to (for a clear missing-column error)."""
        cols: list[str] = []
        for key in ("column", "column_A", "column_B"):
            if isinstance(self.kwargs.get(key), str):
                cols.append(self.kwargs[key])
        value = self.kwargs.get("column_list")
        if isinstance(value, Sequence) and not isinstance(value, str):
            cols.extend(c for c in value if isinstance(c, str))
        return cols


@dataclasses.dataclass
class SuiteSpec:
    """A named list of expectations (what a Great Expectations suite file holds)."""

    name: str
    expectations: list[ExpectationSpec] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError("A suite needs a non-empty name.")
        self.expectations = [
            e if isinstance(e, ExpectationSpec) else ExpectationSpec.from_mapping(e)
            for e in self.expectations
        ]

    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.expectations:
            seen.update(dict.fromkeys(e.columns()))
        return list(seen)


@dataclasses.dataclass
class ShiftCheck:
    """Distribution-shift check of one column against the reference dataset.

    Implemented as Great Expectations' ``expect_column_kl_divergence_to_be_less_than`` with a
    partition object built from the reference: quantile bins for numeric columns, value
    frequencies for categorical ones.

    :param column: column name.
    :param threshold: largest KL divergence D(current || reference) that still passes (nats).
    :param kind: ``"numeric"``, ``"categorical"`` or ``"auto"`` (decided from the reference dtype).
    :param bins: number of quantile bins for numeric columns.
    :param tail_weight_holdout: probability mass given to values outside the reference range
        (numeric) or categories never seen in the reference (categorical); keeps the divergence
        finite so a few new values count as a measurable shift instead of an infinite one.
    """

    column: str
    threshold: float = 0.1
    kind: str = "auto"
    bins: int = 10
    tail_weight_holdout: float = 0.01

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise ConfigError(f"Shift check needs a column name, got {self.column!r}.")
        try:
            self.threshold = float(self.threshold)
        except (TypeError, ValueError):
            raise ConfigError(
                f"Shift threshold of {self.column!r} must be a number, got {self.threshold!r}."
            ) from None
        if self.threshold < 0:
            raise ConfigError(f"Shift threshold of {self.column!r} must be >= 0, got {self.threshold}.")
        if self.kind not in SHIFT_KINDS:
            raise ConfigError(
                f"Shift kind of {self.column!r} must be one of {SHIFT_KINDS}, got {self.kind!r}."
            )
        if not isinstance(self.bins, int) or self.bins < 2:
            raise ConfigError(f"Shift bins of {self.column!r} must be an integer >= 2, got {self.bins!r}.")
        if not 0 < self.tail_weight_holdout < 0.5:
            raise ConfigError(
                f"tail_weight_holdout of {self.column!r} must be in (0, 0.5), got {self.tail_weight_holdout}."
            )


@dataclasses.dataclass
class ShiftConfig:
    """Distribution shift of the dataset against a reference (historical) dataset.

    :param reference_uri: parquet/CSV URI of the reference dataset.
    :param checks: per-column checks; empty means every reference column present in the dataset,
        with the defaults below.
    :param threshold: default KL threshold for columns without their own.
    :param bins: default number of numeric bins.
    :param max_categories: ``kind="auto"`` treats a non-numeric column as categorical; one with
        more distinct reference values than this (an id, free text) is skipped with a note.
    """

    reference_uri: str
    checks: list[ShiftCheck] = dataclasses.field(default_factory=list)
    threshold: float = 0.1
    bins: int = 10
    max_categories: int = 100

    def __post_init__(self) -> None:
        if not self.reference_uri or not isinstance(self.reference_uri, str):
            raise ConfigError("ShiftConfig needs reference_uri (the historical dataset to compare with).")
        if self.max_categories < 1:
            raise ConfigError(f"max_categories must be >= 1, got {self.max_categories}.")
        # Validates the defaults through the same rules as an explicit check.
        ShiftCheck(column="_", threshold=self.threshold, bins=self.bins)

    @classmethod
    def build(
        cls,
        reference_uri: str,
        columns: Sequence[str] | Mapping[str, Any] | None = None,
        *,
        threshold: float = 0.1,
        bins: int = 10,
        max_categories: int = 100,
    ) -> ShiftConfig:
        """Build from operator arguments.

        :param columns: ``None`` (all reference columns), a list of names, or a mapping
            ``{column: threshold}`` / ``{column: {"threshold": .., "kind": .., "bins": ..}}``.
        """
        checks: list[ShiftCheck] = []
        if isinstance(columns, Mapping):
            for col, spec in columns.items():
                if isinstance(spec, Mapping):
                    options = {"threshold": threshold, "bins": bins, **spec}
                    checks.append(ShiftCheck(column=col, **options))
                else:
                    checks.append(ShiftCheck(column=col, threshold=spec, bins=bins))
        elif columns is not None:
            if isinstance(columns, str):
                raise ConfigError("shift_columns must be a list of column names or a mapping, not a string.")
            checks = [ShiftCheck(column=c, threshold=threshold, bins=bins) for c in columns]
        return cls(
            reference_uri=reference_uri,
            checks=checks,
            threshold=threshold,
            bins=bins,
            max_categories=max_categories,
        )


@dataclasses.dataclass
class ValidationOptions:
    """How the validation runs and what a failure does.

    :param on_failure: ``"fail"`` raises :class:`~airflow_mlpipe.exceptions.QualityGateFailed`;
        ``"skip"`` skips the task so only downstream tasks are skipped.
    :param result_format: Great Expectations result format (``SUMMARY`` keeps a sample of
        unexpected values; ``COMPLETE`` lists them all and is slow on big data).
    :param allow_all_null_columns: an entirely null column is a data error unless allowed.
    :param offline_docs: rewrite Data Docs to load no CSS/JS from CDNs.
    """

    on_failure: str = "fail"
    result_format: str = "SUMMARY"
    allow_all_null_columns: bool = False
    offline_docs: bool = True

    def __post_init__(self) -> None:
        if self.on_failure not in ON_FAILURE:
            raise ConfigError(f"on_failure must be one of {ON_FAILURE}, got {self.on_failure!r}.")
        if self.result_format not in RESULT_FORMATS:
            raise ConfigError(f"result_format must be one of {RESULT_FORMATS}, got {self.result_format!r}.")
