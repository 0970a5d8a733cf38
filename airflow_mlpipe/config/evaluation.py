"""Declarative evaluation-gate configuration: typed criteria, loadable from YAML or a dict.

Four kinds of criteria, freely combined; the gate blesses a challenger only when all pass:

* :class:`ThresholdCriterion` — a metric value bound (``roc_auc >= 0.85``, ``rmse <= 50``);
* :class:`ChangeCriterion` — change against the champion, direction-aware (higher accuracy and
  lower rmse are both "better"), absolute or relative;
* :class:`SliceCriterion` — a metric per group of a column: minimum per slice, maximum gap;
* :class:`KpiCriterion` — a business KPI computed by a user callable, with a threshold.

Example (YAML)::

    label: target
    criteria:
      - roc_auc >= 0.85
      - {kind: change, metric: accuracy, max_regression: 0.01}
      - {kind: change, metric: rmse, min_improvement: 0.01, relative: true}
      - {kind: slice, column: sex, metric: recall, min: 0.7, max_gap: 0.1, min_rows: 30}
      - {kind: kpi, function: "my_pkg.kpis:expected_profit", min: 1000}
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow_mlpipe.config.base import MappingConfig, from_mapping
from airflow_mlpipe.core.conventions import TaskType
from airflow_mlpipe.core.metrics import CATALOG, check_metric
from airflow_mlpipe.core.yamlio import load_yaml
from airflow_mlpipe.exceptions import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9_.\- ]+$")  # what MLflow accepts in a tag key
_SHORTHAND = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(>=|<=)\s*([-+0-9.eE]+)\s*$")
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*[.:][A-Za-z_]\w*$")
_ALL_METRICS = sorted(CATALOG)


def _number(value: Any, field: str, where: str) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {field} must be a number, got {value!r}.") from None
    if not math.isfinite(out):
        raise ConfigError(f"{where}: {field} must be finite, got {value!r}.")
    return out


def _known_metric(metric: str, where: str) -> None:
    if metric not in _ALL_METRICS:
        raise ConfigError(f"{where}: unknown metric {metric!r}; use one of {_ALL_METRICS}.")


def _bounds(min_: float | None, max_: float | None, where: str) -> None:
    if min_ is None and max_ is None:
        raise ConfigError(f"{where}: give `min` and/or `max`.")
    if min_ is not None and max_ is not None and min_ > max_:
        raise ConfigError(f"{where}: min {min_} is greater than max {max_}.")


def _check_name(name: str, where: str) -> None:
    if not _NAME.match(name):
        raise ConfigError(f"{where}: name {name!r} may only contain letters, digits, '_', '-', '.', ' '.")


@dataclasses.dataclass
class ThresholdCriterion:
    """The challenger's ``metric`` must lie within ``[min, max]``."""

    kind: ClassVar[str] = "threshold"
    metric: str
    min: float | None = None
    max: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        where = f"threshold criterion on {self.metric!r}"
        _known_metric(self.metric, where)
        self.min, self.max = _number(self.min, "min", where), _number(self.max, "max", where)
        _bounds(self.min, self.max, where)
        self.name = self.name or f"threshold.{self.metric}"
        _check_name(self.name, where)

    @property
    def metrics(self) -> list[str]:
        return [self.metric]


@dataclasses.dataclass
class ChangeCriterion:
    """Change of ``metric`` against the champion, measured in the metric's "better" direction.

    ``improvement = challenger - champion`` for higher-is-better metrics and ``champion - challenger``
    for lower-is-better ones (divided by ``|champion|`` when ``relative``); the criterion passes when
    ``improvement >= min_delta``. So ``min_delta=-0.01`` means "no worse than the champion by more than
    0.01" and ``min_delta=0.01, relative=True`` means "beats the champion by 1 %". In YAML,
    ``max_regression: x`` is ``min_delta: -x`` and ``min_improvement: x`` is ``min_delta: x``.
    Passes, saying why, when there is no champion yet.
    """

    kind: ClassVar[str] = "change"
    metric: str
    min_delta: float = 0.0
    relative: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        where = f"change criterion on {self.metric!r}"
        _known_metric(self.metric, where)
        self.min_delta = _number(self.min_delta, "min_delta", where) or 0.0
        if not isinstance(self.relative, bool):
            raise ConfigError(f"{where}: relative must be true or false, got {self.relative!r}.")
        self.name = self.name or f"change.{self.metric}"
        _check_name(self.name, where)

    @property
    def metrics(self) -> list[str]:
        return [self.metric]


@dataclasses.dataclass
class SliceCriterion:
    """``metric`` computed per value of ``column``: every slice within ``[min, max]`` and the spread
    between the best and worst slice at most ``max_gap``. Slices with fewer than ``min_rows`` rows
    are reported and left out; more than ``max_slices`` distinct values is a configuration error
    (use a coarser column)."""

    kind: ClassVar[str] = "slice"
    column: str
    metric: str
    min: float | None = None
    max: float | None = None
    max_gap: float | None = None
    min_rows: int = 30
    max_slices: int = 50
    name: str = ""

    def __post_init__(self) -> None:
        where = f"slice criterion on {self.metric!r} by {self.column!r}"
        if not self.column or not isinstance(self.column, str):
            raise ConfigError(f"{where}: column must be a column name.")
        _known_metric(self.metric, where)
        self.min, self.max = _number(self.min, "min", where), _number(self.max, "max", where)
        self.max_gap = _number(self.max_gap, "max_gap", where)
        if self.min is None and self.max is None and self.max_gap is None:
            raise ConfigError(f"{where}: give `min`, `max` and/or `max_gap`.")
        if self.max_gap is not None and self.max_gap < 0:
            raise ConfigError(f"{where}: max_gap must be >= 0.")
        if int(self.min_rows) < 1 or int(self.max_slices) < 1:
            raise ConfigError(f"{where}: min_rows and max_slices must be >= 1.")
        self.min_rows, self.max_slices = int(self.min_rows), int(self.max_slices)
        self.name = self.name or f"slice.{self.metric}.{self.column}"
        _check_name(self.name, where)

    @property
    def metrics(self) -> list[str]:
        return [self.metric]


@dataclasses.dataclass
class KpiCriterion:
    """A business KPI ``function(y_true, y_pred, frame) -> float`` (import path ``pkg.mod:fn`` or
    ``pkg.mod.fn``) computed on the challenger's holdout predictions, within ``[min, max]``."""

    kind: ClassVar[str] = "kpi"
    function: str
    min: float | None = None
    max: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        where = f"kpi criterion {self.function!r}"
        if not isinstance(self.function, str) or not _IMPORT_PATH.match(self.function):
            raise ConfigError(f"{where}: function must be an import path like 'my_pkg.kpis:profit'.")
        self.min, self.max = _number(self.min, "min", where), _number(self.max, "max", where)
        _bounds(self.min, self.max, where)
        self.name = self.name or f"kpi.{re.split('[.:]', self.function)[-1]}"
        _check_name(self.name, where)

    @property
    def metrics(self) -> list[str]:
        return []


Criterion = ThresholdCriterion | ChangeCriterion | SliceCriterion | KpiCriterion
_KINDS: dict[str, type[Any]] = {
    c.kind: c for c in (ThresholdCriterion, ChangeCriterion, SliceCriterion, KpiCriterion)
}


def criterion_from_mapping(spec: Mapping[str, Any] | str) -> Criterion:
    """Build one criterion from its dict (``kind`` selects the class) or ``"metric >= value"``."""
    if isinstance(spec, str):
        m = _SHORTHAND.match(spec)
        if not m:
            raise ConfigError(f"Cannot read criterion {spec!r}; write e.g. 'roc_auc >= 0.85' or a mapping.")
        metric, op, value = m.groups()
        bound = _number(value, "value", f"criterion {spec!r}")
        if op == ">=":
            return ThresholdCriterion(metric=metric, min=bound)
        return ThresholdCriterion(metric=metric, max=bound)
    if not isinstance(spec, Mapping):
        raise ConfigError(f"A criterion must be a mapping or a string, got {spec!r}.")
    data = dict(spec)
    kind = data.pop("kind", None)
    if kind is None:
        kind = "kpi" if ("function" in data or "callable" in data) else "threshold"
    if kind not in _KINDS:
        raise ConfigError(f"Unknown criterion kind {kind!r}; use one of {sorted(_KINDS)}.")
    if kind == "kpi" and "callable" in data:
        data["function"] = data.pop("callable")
    if kind == "change":
        given = [k for k in ("min_delta", "max_regression", "min_improvement") if k in data]
        if len(given) > 1:
            raise ConfigError(f"change criterion: give only one of {given}.")
        if "max_regression" in data:
            data["min_delta"] = -float(data.pop("max_regression"))
        if "min_improvement" in data:
            data["min_delta"] = data.pop("min_improvement")
    cls = _KINDS[kind]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"{kind} criterion: unknown field(s) {unknown}; allowed: {sorted(fields)}.")
    try:
        return cls(**data)  # type: ignore[no-any-return]
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{kind} criterion {dict(spec)}: {exc}") from None


@dataclasses.dataclass
class GateConfig(MappingConfig):
    """What the evaluation gate checks, and how to read the holdout.

    :param criteria: the criteria (all must pass to bless).
    :param task_type: ``classification``/``regression``; default: the challenger's
        ``mlpipe.task_type`` tag.
    :param label: label column of the holdout; default: the challenger's ``mlpipe.label`` tag.
    :param positive_label: positive class for binary precision/recall/F1/ROC; default: the model's
        last class (``classes_[-1]``).
    :param compare_to_champion: evaluate the current champion too (change criteria need it).
    """

    criteria: list[Criterion] = dataclasses.field(default_factory=list)
    task_type: str | None = None
    label: str | None = None
    positive_label: Any = None
    compare_to_champion: bool = True

    def __post_init__(self) -> None:
        self.criteria = [
            c if not isinstance(c, (Mapping, str)) else criterion_from_mapping(c) for c in self.criteria
        ]
        if not self.criteria:
            raise ConfigError("The evaluation gate needs at least one criterion.")
        names = [c.name for c in self.criteria]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"Criterion names must be unique; set `name` on the duplicates {dupes}.")
        if self.task_type is not None:
            self.task_type = TaskType.parse(self.task_type).value
            self.check_task_type(self.task_type)

    def check_task_type(self, task_type: str | TaskType) -> None:
        """Raise :class:`ConfigError` when a criterion names a metric the task type lacks."""
        for c in self.criteria:
            for metric in c.metrics:
                try:
                    check_metric(task_type, metric)
                except ConfigError as exc:
                    raise ConfigError(f"Criterion {c.name!r}: {exc}") from None

    @classmethod
    def from_mapping(
        cls, value: GateConfig | Mapping[str, Any] | Sequence[Any] | str | None, where: str | None = None
    ) -> GateConfig:
        """From a config object, a mapping (keys = fields), a bare list of criteria, YAML text or a
        YAML file path."""
        if isinstance(value, str):
            return cls.from_yaml(value)
        if isinstance(value, Sequence):
            criteria: list[Any] = list(value)
            return cls(criteria=criteria)
        return from_mapping(cls, value, where or "Gate configuration")

    @classmethod
    def from_yaml(cls, text_or_path: str | os.PathLike[str]) -> GateConfig:
        """From YAML text or a YAML file path."""
        import yaml

        text = os.fspath(text_or_path)
        if "\n" not in text and os.path.isfile(text):
            with open(text, encoding="utf-8") as fh:
                text = fh.read()
        try:
            data = load_yaml(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"Gate configuration is not valid YAML: {exc}") from None
        if isinstance(data, str):  # a YAML scalar is neither criteria nor fields
            raise ConfigError(f"Gate configuration must be a mapping or a list of criteria, got {data!r}.")
        return cls.from_mapping(data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_type": self.task_type,
            "label": self.label,
            "positive_label": self.positive_label,
            "compare_to_champion": self.compare_to_champion,
            "criteria": [{"kind": c.kind, **dataclasses.asdict(c)} for c in self.criteria],
        }
