"""Judging criteria: every criterion becomes one or more :class:`CriterionResult` rows.

A result always carries the observed value, the threshold it was held against and a sentence
saying why it passed or failed, so the blessing can be read without re-running anything.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.evaluation import (
    ChangeCriterion,
    Criterion,
    KpiCriterion,
    SliceCriterion,
    ThresholdCriterion,
)
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.core.metrics import HIGHER, MetricValues, Predictions, compute, direction
from airflow_mlpipe.exceptions import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclasses.dataclass
class CriterionResult:
    name: str
    kind: str
    metric: str | None
    observed: float | None
    threshold: float | list[float] | None
    op: str
    passed: bool
    reason: str
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Scored:
    """One model's predictions and metrics on the holdout."""

    version: str
    preds: Predictions
    metrics: MetricValues


@dataclasses.dataclass
class Evidence:
    """Everything criteria are judged on."""

    task_type: str
    frame: pd.DataFrame
    y_true: np.ndarray
    challenger: Scored
    champion: Scored | None
    champion_note: str  # why there is no champion to compare with (when there is none)
    positive_label: Any = None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _bound(value: float, lo: float | None, hi: float | None) -> bool:
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def _bound_repr(lo: float | None, hi: float | None) -> tuple[float | list[float] | None, str]:
    if lo is not None and hi is not None:
        return [lo, hi], "between"
    return (lo, ">=") if lo is not None else (hi, "<=")


def judge_threshold(c: ThresholdCriterion, ev: Evidence) -> list[CriterionResult]:
    value = ev.challenger.metrics.get(c.metric)
    threshold, op = _bound_repr(c.min, c.max)
    if value is None:
        why = ev.challenger.metrics.unavailable.get(c.metric, f"{c.metric} was not computed")
        return [CriterionResult(c.name, c.kind, c.metric, None, threshold, op, False, why)]
    ok = _bound(value, c.min, c.max)
    reason = f"{c.metric} = {_fmt(value)} {'meets' if ok else 'violates'} {op} {threshold}"
    return [CriterionResult(c.name, c.kind, c.metric, value, threshold, op, ok, reason)]


def judge_change(c: ChangeCriterion, ev: Evidence) -> list[CriterionResult]:
    better = direction(ev.task_type, c.metric)
    op = ">=" if better == HIGHER else "<="
    new = ev.challenger.metrics.get(c.metric)
    if ev.champion is None:
        return [CriterionResult(c.name, c.kind, c.metric, new, None, op, True, f"passes: {ev.champion_note}")]
    old = ev.champion.metrics.get(c.metric)
    details = {
        "champion": old,
        "champion_version": ev.champion.version,
        "min_delta": c.min_delta,
        "relative": c.relative,
    }
    if new is None:
        why = ev.challenger.metrics.unavailable.get(c.metric, f"{c.metric} was not computed")
        return [CriterionResult(c.name, c.kind, c.metric, None, None, op, False, why, details)]
    if old is None:
        why = ev.champion.metrics.unavailable.get(c.metric, "not computed")
        reason = f"passes: the champion (v{ev.champion.version}) has no {c.metric} to compare with ({why})"
        return [CriterionResult(c.name, c.kind, c.metric, new, None, op, True, reason, details)]
    # The value the challenger must reach: champion moved by min_delta in the "better" direction.
    step = c.min_delta * (abs(old) if c.relative else 1.0)
    required = old + step if better == HIGHER else old - step
    ok = new >= required - 1e-12 if better == HIGHER else new <= required + 1e-12
    delta = new - old if better == HIGHER else old - new
    change = f"{delta / abs(old):+.2%}" if c.relative and old else f"{delta:+.4g}"
    reason = (
        f"{c.metric} {_fmt(new)} vs champion v{ev.champion.version} {_fmt(old)} "
        f"(improvement {change}; needs {op} {_fmt(required)}, {better} is better)"
    )
    details["improvement"] = delta
    return [CriterionResult(c.name, c.kind, c.metric, new, required, op, ok, reason, details)]


def judge_slice(c: SliceCriterion, ev: Evidence) -> list[CriterionResult]:
    pd = require("pandas")
    column = ev.frame[c.column]
    keys = column.astype(object).where(column.notna(), "<missing>").astype(str).to_numpy()
    groups = pd.unique(keys)
    if len(groups) > c.max_slices:
        raise ConfigError(
            f"Slice column {c.column!r} has {len(groups)} distinct values (max_slices={c.max_slices}); "
            "slice by a coarser column or raise max_slices."
        )
    values: dict[str, float] = {}
    rows: dict[str, int] = {}
    too_small: dict[str, int] = {}
    unavailable: dict[str, str] = {}
    for g in sorted(groups):
        mask = keys == g
        n = int(mask.sum())
        if n < c.min_rows:
            too_small[g] = n
            continue
        m = compute(
            ev.task_type,
            ev.y_true[mask],
            ev.challenger.preds.subset(mask),
            only=[c.metric],
            positive_label=ev.positive_label,
        )
        if c.metric in m.values:
            values[g], rows[g] = m.values[c.metric], n
        else:
            unavailable[g] = m.unavailable.get(c.metric, "not computed")
    details = {
        "column": c.column,
        "values": values,
        "rows": rows,
        "too_small": too_small,
        "unavailable": unavailable,
        "min_rows": c.min_rows,
    }
    notes = []
    if too_small:
        notes.append(f"{len(too_small)} slice(s) with < {c.min_rows} rows left out: {too_small}")
    if unavailable:
        notes.append(f"{c.metric} unavailable for {sorted(unavailable)}")
    tail = ("; " + "; ".join(notes)) if notes else ""
    out: list[CriterionResult] = []
    if not values:
        reason = f"no slice of {c.column!r} could be evaluated{tail}"
        checks = (["bound"] if (c.min is not None or c.max is not None) else []) + (
            ["gap"] if c.max_gap is not None else []
        )
        return [
            CriterionResult(f"{c.name}.{k}", c.kind, c.metric, None, None, "", False, reason, details)
            for k in checks
        ]
    higher = direction(ev.task_type, c.metric) == HIGHER
    if c.min is not None or c.max is not None:
        worst = min(values, key=values.__getitem__) if higher else max(values, key=values.__getitem__)
        threshold, op = _bound_repr(c.min, c.max)
        bad = sorted(g for g, v in values.items() if not _bound(v, c.min, c.max))
        ok = not bad
        reason = (
            f"worst slice {c.column}={worst}: {c.metric} {_fmt(values[worst])} "
            + (f"meets {op} {threshold}" if ok else f"violates {op} {threshold} (failing slices {bad})")
            + tail
        )
        out.append(
            CriterionResult(
                f"{c.name}.bound", c.kind, c.metric, values[worst], threshold, op, ok, reason, details
            )
        )
    if c.max_gap is not None:
        hi_g, lo_g = max(values, key=values.__getitem__), min(values, key=values.__getitem__)
        gap = float(values[hi_g] - values[lo_g]) if len(values) > 1 else 0.0
        ok = gap <= c.max_gap + 1e-12
        reason = (
            f"gap between slices {c.column}={hi_g} ({_fmt(values[hi_g])}) and {c.column}={lo_g} "
            f"({_fmt(values[lo_g])}) is {_fmt(gap)}, {'within' if ok else 'above'} max_gap {c.max_gap}" + tail
        )
        out.append(
            CriterionResult(f"{c.name}.gap", c.kind, c.metric, gap, c.max_gap, "<=", ok, reason, details)
        )
    return out


def load_function(path: str) -> Callable[..., Any]:
    """Import ``pkg.mod:fn`` or ``pkg.mod.fn``; :class:`ConfigError` when that fails."""
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"KPI function {path!r} cannot be imported: {exc}") from None
    if not callable(fn):
        raise ConfigError(f"KPI function {path!r} is not callable.")
    return fn  # type: ignore[no-any-return]


def kpi_value(fn: Callable[..., Any], path: str, ev: Evidence, scored: Scored) -> float:
    value = fn(ev.y_true, scored.preds.y_pred, ev.frame)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"KPI function {path!r} must return a number, returned {value!r}.") from None
    return out


def judge_kpi(c: KpiCriterion, ev: Evidence) -> list[CriterionResult]:
    fn = load_function(c.function)
    value = kpi_value(fn, c.function, ev, ev.challenger)
    champion = kpi_value(fn, c.function, ev, ev.champion) if ev.champion is not None else None
    threshold, op = _bound_repr(c.min, c.max)
    ok = math.isfinite(value) and _bound(value, c.min, c.max)
    reason = f"{c.name} = {_fmt(value)} {'meets' if ok else 'violates'} {op} {threshold}"
    if champion is not None:
        reason += f" (champion: {_fmt(champion)})"
    return [
        CriterionResult(
            c.name,
            c.kind,
            None,
            value,
            threshold,
            op,
            ok,
            reason,
            {"function": c.function, "champion": champion},
        )
    ]


def judge(criteria: list[Criterion], ev: Evidence) -> list[CriterionResult]:
    """Judge every criterion (none short-circuits: the report shows all of them)."""
    out: list[CriterionResult] = []
    for c in criteria:
        if isinstance(c, ThresholdCriterion):
            out += judge_threshold(c, ev)
        elif isinstance(c, ChangeCriterion):
            out += judge_change(c, ev)
        elif isinstance(c, SliceCriterion):
            out += judge_slice(c, ev)
        else:
            out += judge_kpi(c, ev)
    return out
