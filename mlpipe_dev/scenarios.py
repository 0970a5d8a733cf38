"""Seeded drift scenarios: daily labelled batches where the world changes on a chosen day.

A small, generic binary-classification world (not tied to one business): every day
``rows_per_day`` new entities arrive with four numeric features ``x1``–``x4`` and a categorical
``segment``, and a label ``y`` drawn from a logistic model of those features. From day
``drift_day`` on, one of three kinds of change applies, scaled by ``size`` (0 = none, 1 = the
documented change):

* ``covariate`` — feature distributions move, the label relation stays: ``x1`` shifts by
  ``+1.5 × size`` standard deviations, ``x3`` by ``-1.0 × size``, and the segment mix moves
  towards ``c``. A model fitted before the drift sees inputs outside most of its training range.
* ``concept`` — the relation changes, the inputs do not: the effect of ``x1`` on the label is
  multiplied by ``1 - 2 × size`` (``size = 1`` flips its sign). The features of every day are drawn
  from the same random stream as without drift, so they are *identical* to the undrifted ones:
  feature drift checks cannot see this change, only labels can.
* ``both`` — the two at once.

``x4`` has no effect on the label (a noise feature). The label rate before the drift is about
40 %.

The files follow the layout of :mod:`mlpipe_dev.churn_data` (one feature file and one label file
per day, labels stamped after their features), so a Feast point-in-time join and the monitoring
watcher read them the same way::

    <root>/features/<YYYY-MM-DD>.parquet   entity_id, event_timestamp, x1..x4, segment
    <root>/labels/<YYYY-MM-DD>.parquet     entity_id, label_timestamp, y
    <root>/reference/features.parquet      the features of the given history days

Everything derives from ``seed`` and the day index; numpy/pandas are imported inside functions.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.core.deps import require
from airflow_mlpipe.exceptions import ConfigError

if TYPE_CHECKING:
    import pandas as pd

ENTITY = "entity_id"
TIMESTAMP = "event_timestamp"
LABEL = "y"
LABEL_TIMESTAMP = "label_timestamp"
NUMERIC_FEATURES = ["x1", "x2", "x3", "x4"]
CATEGORICAL_FEATURES = ["segment"]
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
SEGMENTS = ["a", "b", "c"]
DRIFT_KINDS = ("covariate", "concept", "both")

#: the label model before the drift: logit = INTERCEPT + Σ WEIGHTS·x + SEGMENT_EFFECT[segment]
INTERCEPT = -0.5
WEIGHTS = {"x1": 1.4, "x2": -0.9, "x3": 0.7, "x4": 0.0}
SEGMENT_EFFECT = {"a": 0.0, "b": 0.4, "c": -0.6}
_SEGMENT_MIX = [0.5, 0.3, 0.2]
_SEGMENT_MIX_DRIFTED = [0.25, 0.25, 0.5]
_FEATURE_STREAM, _LABEL_STREAM = 1, 2


@dataclass(frozen=True)
class ScenarioSpec:
    """One scenario.

    :param name: identifier (also the pipeline name the benchmark gives it).
    :param kind: ``covariate``, ``concept`` or ``both`` (see the module docstring).
    :param drift_day: 0-based index of the first drifted day; ``None`` for no drift.
    :param size: scale of the change (0..2).
    :param days: number of daily batches.
    :param rows_per_day: rows (entities) per day.
    :param seed: the only source of randomness.
    :param start: the date of day 0 (``YYYY-MM-DD``, UTC).
    """

    name: str = "scenario"
    kind: str = "covariate"
    drift_day: int | None = 6
    size: float = 1.0
    days: int = 14
    rows_per_day: int = 600
    seed: int = 7
    start: str = "2024-03-01"

    def __post_init__(self) -> None:
        if self.kind not in DRIFT_KINDS:
            raise ConfigError(f"ScenarioSpec.kind={self.kind!r}; use one of {list(DRIFT_KINDS)}.")
        if self.days < 1 or self.rows_per_day < 10:
            raise ConfigError("ScenarioSpec needs days >= 1 and rows_per_day >= 10.")
        if self.drift_day is not None and not 0 <= self.drift_day < self.days:
            raise ConfigError(f"ScenarioSpec.drift_day={self.drift_day} must be within 0..{self.days - 1}.")
        if not 0.0 <= self.size <= 2.0:
            raise ConfigError(f"ScenarioSpec.size={self.size} must be within 0..2.")
        try:
            dt.date.fromisoformat(self.start)
        except ValueError:
            raise ConfigError(f"ScenarioSpec.start={self.start!r} is not a date; use YYYY-MM-DD.") from None

    def day(self, index: int) -> dt.date:
        return dt.date.fromisoformat(self.start) + dt.timedelta(days=index)

    def is_drifted(self, index: int) -> bool:
        return self.drift_day is not None and index >= self.drift_day

    def covariate_size(self, index: int) -> float:
        return self.size if self.is_drifted(index) and self.kind in ("covariate", "both") else 0.0

    def concept_size(self, index: int) -> float:
        return self.size if self.is_drifted(index) and self.kind in ("concept", "both") else 0.0

    def weights(self, index: int) -> dict[str, float]:
        """The label model's feature weights on day ``index``."""
        return {**WEIGHTS, "x1": WEIGHTS["x1"] * (1.0 - 2.0 * self.concept_size(index))}


def _rng(spec: ScenarioSpec, index: int, stream: int) -> Any:
    np = require("numpy")
    # One stream per (seed, day, purpose): the kind of drift never changes another stream's draws.
    return np.random.default_rng(np.random.SeedSequence([spec.seed, index, stream]))


def features_of(spec: ScenarioSpec, index: int) -> pd.DataFrame:
    """The feature rows of day ``index`` (entity id, event time, ``x1``–``x4``, ``segment``)."""
    np = require("numpy")
    pd = require("pandas")
    if not 0 <= index < spec.days:
        raise ConfigError(f"Day index {index} is outside 0..{spec.days - 1}.")
    rng = _rng(spec, index, _FEATURE_STREAM)
    n = spec.rows_per_day
    base = rng.standard_normal((n, len(NUMERIC_FEATURES)))
    uniform = rng.random(n)
    c = spec.covariate_size(index)
    base[:, 0] += 1.5 * c
    base[:, 2] -= 1.0 * c
    mix = np.asarray(_SEGMENT_MIX) * (1 - min(c, 1.0)) + np.asarray(_SEGMENT_MIX_DRIFTED) * min(c, 1.0)
    segment = np.asarray(SEGMENTS)[np.searchsorted(np.cumsum(mix), uniform, side="right").clip(0, 2)]
    midnight = pd.Timestamp(spec.day(index).isoformat(), tz="UTC")
    seconds = np.sort(rng.integers(0, 20 * 3600, n))
    frame = pd.DataFrame(
        {
            ENTITY: (index * 1_000_000 + np.arange(n)).astype("int64"),
            TIMESTAMP: midnight + pd.to_timedelta(seconds, unit="s"),
            **{name: np.round(base[:, i], 4) for i, name in enumerate(NUMERIC_FEATURES)},
            "segment": segment,
        }
    )
    return frame


def labels_of(spec: ScenarioSpec, index: int, features: pd.DataFrame | None = None) -> pd.DataFrame:
    """The labels of day ``index``: drawn from the day's label model, stamped after the features."""
    np = require("numpy")
    pd = require("pandas")
    features = features_of(spec, index) if features is None else features
    rng = _rng(spec, index, _LABEL_STREAM)
    weights = spec.weights(index)
    logit = INTERCEPT + features["segment"].map(SEGMENT_EFFECT).to_numpy(dtype=float)
    for name, weight in weights.items():
        logit = logit + weight * features[name].to_numpy(dtype=float)
    y = (rng.random(len(features)) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")
    delay = pd.to_timedelta(rng.integers(60, 4 * 3600, len(features)), unit="s")
    return pd.DataFrame(
        {ENTITY: features[ENTITY].to_numpy(), LABEL_TIMESTAMP: features[TIMESTAMP] + delay, LABEL: y}
    )


def generate_day(spec: ScenarioSpec, index: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(features, labels)`` of day ``index``."""
    features = features_of(spec, index)
    return features, labels_of(spec, index, features)


def _write(frame: pd.DataFrame, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, final)  # a watcher never sees half a file


def write_labels(root: str | os.PathLike[str], spec: ScenarioSpec, index: int) -> str:
    """Write ``labels/<date>.parquet`` of day ``index``."""
    final = Path(root) / "labels" / f"{spec.day(index).isoformat()}.parquet"
    _write(generate_day(spec, index)[1], final)
    return str(final)


def write_features(
    root: str | os.PathLike[str],
    spec: ScenarioSpec,
    index: int,
    extra: dict[str, Any] | None = None,
    folder: str = "features",
) -> str:
    """Write ``<folder>/<date>.parquet`` with the features of day ``index`` and ``extra`` columns
    appended (e.g. the served predictions and the labels that arrived, for a quality check)."""
    frame = features_of(spec, index)
    for column, values in (extra or {}).items():
        frame[column] = values
    final = Path(root) / folder / f"{spec.day(index).isoformat()}.parquet"
    _write(frame, final)
    return str(final)


def write_history(root: str | os.PathLike[str], spec: ScenarioSpec, days: range) -> dict[str, Any]:
    """Write the features and labels of ``days`` and ``reference/features.parquet`` (their features)."""
    pd = require("pandas")
    for index in days:
        write_labels(root, spec, index)
        write_features(root, spec, index)
    _write(
        pd.concat([features_of(spec, i) for i in days], ignore_index=True),
        Path(root) / "reference" / "features.parquet",
    )
    return {"days": [spec.day(i).isoformat() for i in days], "root": str(root)}


def scenario_model() -> Any:
    """The scenarios' estimator: one-hot ``segment`` + gradient-boosted trees (plain scikit-learn
    objects, so it serializes with skops' default trusted types). Use it as
    ``training.estimator: mlpipe_dev.scenarios.scenario_model``."""
    from mlpipe_dev.churn_data import boosted_trees

    return boosted_trees(CATEGORICAL_FEATURES)
