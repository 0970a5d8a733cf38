"""Distribution shift against a reference dataset, as real Great Expectations expectations.

Each checked column becomes ``expect_column_kl_divergence_to_be_less_than`` with a *partition
object* computed here from the reference data:

* numeric columns: ``bins`` quantile edges of the reference and the reference's share of rows per
  bin; values outside the reference range fall into two tails that get ``tail_weight_holdout`` of
  the expected mass (so the divergence stays finite and grows with the share of out-of-range values);
* categorical columns: the reference's value frequencies; categories never seen in the reference
  share ``tail_weight_holdout``.

Great Expectations then computes D_KL(current || reference) over those bins and compares it with
the per-column threshold. Rule of thumb: 0.1 nats is a moderate shift (roughly PSI 0.2).
pandas/numpy are imported inside the functions only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.validation import ExpectationSpec, ShiftCheck, ShiftConfig
from airflow_mlpipe.exceptions import DataError

if TYPE_CHECKING:
    import pandas as pd

KL_TYPE = "expect_column_kl_divergence_to_be_less_than"
META_KEY = "mlpipe_shift"


def _is_numeric(series: pd.Series) -> bool:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return bool(is_numeric_dtype(series.dtype) and not is_bool_dtype(series.dtype))


def numeric_partition(values: pd.Series, bins: int) -> dict[str, Any]:
    """Quantile bins of ``values`` (non-null) and the share of values in each bin."""
    import numpy as np

    data = values.dropna().to_numpy(dtype="float64")
    data = data[np.isfinite(data)]
    edges = np.unique(np.quantile(data, np.linspace(0.0, 1.0, bins + 1)))
    if len(edges) < 2:  # constant column: one narrow bin around the value
        v = float(edges[0])
        eps = max(abs(v) * 1e-9, 1e-12)
        edges = np.array([v - eps, v + eps])
    counts, _ = np.histogram(data, bins=edges)
    weights = counts / counts.sum()
    return {"bins": [float(e) for e in edges], "weights": [float(w) for w in weights]}


def categorical_partition(values: pd.Series) -> dict[str, Any]:
    """The reference's categories and their frequencies (nulls ignored)."""
    freq = values.dropna().value_counts(normalize=True, sort=True)
    return {
        "values": [v.item() if hasattr(v, "item") else v for v in freq.index],
        "weights": [float(w) for w in freq.to_numpy()],
    }


def _checks_for(reference: pd.DataFrame, current: pd.DataFrame, config: ShiftConfig) -> list[ShiftCheck]:
    if config.checks:
        for check in config.checks:
            if check.column not in reference.columns:
                raise DataError(
                    f"Shift check column {check.column!r} is not in the reference dataset "
                    f"{config.reference_uri}; it has {list(reference.columns)}."
                )
            if check.column not in current.columns:
                raise DataError(
                    f"Shift check column {check.column!r} is missing from the dataset; "
                    f"it has {list(current.columns)}."
                )
        return list(config.checks)
    return [
        ShiftCheck(column=str(c), threshold=config.threshold, bins=config.bins)
        for c in reference.columns
        if c in current.columns
    ]


def shift_expectations(
    reference: pd.DataFrame, current: pd.DataFrame, config: ShiftConfig
) -> tuple[list[ExpectationSpec], list[dict[str, Any]]]:
    """KL-divergence expectations for the configured columns.

    :returns: the expectations and the columns that were skipped (with the reason); a column whose
        type changed (numeric in one dataset and not in the other) is skipped with
        ``"type_changed": True``, for the caller to report as a failure.
    :raises DataError: a column is missing or entirely null in the reference.
    """
    specs: list[ExpectationSpec] = []
    skipped: list[dict[str, Any]] = []
    for check in _checks_for(reference, current, config):
        ref, cur = reference[check.column], current[check.column]
        if ref.notna().sum() == 0:
            raise DataError(
                f"Reference column {check.column!r} of {config.reference_uri} is entirely null; "
                "it cannot serve as the distribution to compare with."
            )
        kind = check.kind
        if kind == "auto":
            kind = "numeric" if _is_numeric(ref) else "categorical"
        numeric_unfit = kind == "numeric" and not (_is_numeric(ref) and _is_numeric(cur))
        if numeric_unfit or (
            kind == "categorical" and _is_numeric(ref) != _is_numeric(cur) and check.kind == "auto"
        ):
            # Not a reason to stop: the suite still runs (and reports its own type checks); the
            # change is reported as a failed shift check by the caller.
            skipped.append(
                {
                    "column": check.column,
                    "reason": f"changed type: {ref.dtype} in the reference, {cur.dtype} in the dataset"
                    + (" (a numeric shift check needs numbers)" if numeric_unfit else ""),
                    "type_changed": True,
                }
            )
            continue
        kwargs: dict[str, Any] = {
            "column": check.column,
            "threshold": check.threshold,
            "tail_weight_holdout": check.tail_weight_holdout,
        }
        if kind == "numeric":
            partition = numeric_partition(ref, check.bins)
            if 0.0 in partition["weights"]:
                # An empty reference bin would make any current value there an infinite divergence.
                kwargs["internal_weight_holdout"] = check.tail_weight_holdout
        else:
            if check.kind == "auto" and ref.nunique(dropna=True) > config.max_categories:
                skipped.append(
                    {
                        "column": check.column,
                        "reason": f"more than {config.max_categories} distinct values (id or free text)",
                    }
                )
                continue
            partition = categorical_partition(ref)
        kwargs["partition_object"] = partition
        meta = {META_KEY: {"kind": kind, "reference_uri": config.reference_uri}}
        specs.append(ExpectationSpec(type=KL_TYPE, kwargs=kwargs, meta=meta))
    return specs, skipped
