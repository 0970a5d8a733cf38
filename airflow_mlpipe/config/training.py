"""Typed configuration of the training stage (validated on construction, cheap to import).

* :class:`EstimatorConfig` — which scikit-learn estimator (import path or factory) with which parameters.
* :class:`TrainingConfig` — label, feature selection, task type, holdout split or cross-validation, seed.
* :class:`RegistryConfig` — model name, experiment, alias, caching, serialization format and trust.
* :class:`SearchConfig` — a grid or seeded random search over estimator parameters, and how to pick the best.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_mlpipe.config.base import MappingConfig
from airflow_mlpipe.core.conventions import ALIAS_CHALLENGER, TaskType
from airflow_mlpipe.core.metrics import CATALOG, HIGHER
from airflow_mlpipe.exceptions import ConfigError

#: the metric a search ranks by when none is named
PRIMARY_METRIC = {TaskType.CLASSIFICATION: "accuracy", TaskType.REGRESSION: "rmse"}
SERIALIZATION_FORMATS = ("skops", "cloudpickle", "pickle")
#: module prefixes whose types are trusted when a skops file is loaded (see docs/stages/training.md)
DEFAULT_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")

_DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")


def callable_path(obj: Callable[..., Any]) -> str | None:
    """The import path of a module-level callable (``pkg.mod.name``), or ``None`` for lambdas/locals."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or "<" in qualname or module == "__main__":
        return None
    return f"{module}.{qualname}"


def _check_json(value: Any, what: str) -> None:
    try:
        json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{what} must be JSON-serialisable (numbers, strings, lists, dicts): {exc}"
        ) from None


@dataclass
class EstimatorConfig:
    """The estimator to train.

    :param estimator: import path of an estimator class (``"sklearn.ensemble.RandomForestClassifier"``)
        or of a factory function returning an estimator or ``Pipeline`` — or the class/factory itself.
    :param params: parameters applied with ``set_params`` (``"clf__C"`` addresses a pipeline step).
    """

    estimator: str | Callable[..., Any]
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if callable(self.estimator):
            path = callable_path(self.estimator)
            if path is not None:
                self.estimator = path  # an import path is stable (fingerprint) and serialisable
        elif not isinstance(self.estimator, str) or not _DOTTED.match(self.estimator):
            raise ConfigError(
                f"estimator must be an import path like 'sklearn.ensemble.RandomForestClassifier' or a "
                f"callable returning a scikit-learn estimator, not {self.estimator!r}."
            )
        if not isinstance(self.params, Mapping) or not all(isinstance(k, str) for k in self.params):
            raise ConfigError(f"estimator params must be a dict with string keys, not {self.params!r}.")
        self.params = dict(self.params)
        _check_json(self.params, "estimator params")

    @property
    def name(self) -> str:
        """The import path (or repr of an unimportable callable)."""
        return self.estimator if isinstance(self.estimator, str) else repr(self.estimator)


@dataclass
class TrainingConfig:
    """What to learn from a training set and how to measure it.

    :param label: label column; taken from the features stage result when omitted there.
    :param features: feature columns in model input order; default: every column except the label
        and ``exclude_columns``.
    :param exclude_columns: columns never used as features (entity ids, event timestamps).
    :param task_type: ``"classification"`` or ``"regression"``; inferred from the estimator when omitted.
    :param test_size: holdout share for metrics (stratified for classification).
    :param cv_folds: cross-validate with this many folds instead of a holdout; the model is then refit
        on every row.
    :param seed: seed for the split, the folds and the estimator's ``random_state`` when it has one.
    :param refit_on_all: with a holdout split, register the model refitted on every row (the
        metrics stay those of the holdout, measured before the refit); cross-validation always refits.
    :param encode_categorical: put an estimator that is not a ``Pipeline`` behind a one-hot encoding
        of the string and category columns (unknown values encode as zeros); ``False`` hands it the
        columns as they are.
    """

    label: str | None = None
    features: list[str] | None = None
    exclude_columns: list[str] = field(default_factory=list)
    task_type: str | TaskType | None = None
    test_size: float = 0.2
    cv_folds: int | None = None
    seed: int = 42
    refit_on_all: bool = False
    encode_categorical: bool = True

    def __post_init__(self) -> None:
        if self.task_type is not None:
            self.task_type = TaskType.parse(self.task_type)
        if self.features is not None:
            self.features = list(self.features)
            if not self.features:
                raise ConfigError("features is empty; list the feature columns or leave it unset.")
            if self.label is not None and self.label in self.features:
                raise ConfigError(f"The label {self.label!r} cannot also be a feature.")
        self.exclude_columns = list(self.exclude_columns or [])
        if not 0.0 < float(self.test_size) < 1.0:
            raise ConfigError(f"test_size must be between 0 and 1 (exclusive), not {self.test_size}.")
        if self.cv_folds is not None and (not isinstance(self.cv_folds, int) or self.cv_folds < 2):
            raise ConfigError(
                f"cv_folds must be an integer >= 2 (or None for a holdout), not {self.cv_folds!r}."
            )
        if not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, not {self.seed!r}.")


@dataclass
class RegistryConfig:
    """Where and how the trained model is recorded.

    :param model_name: registered model name.
    :param experiment_name: MLflow experiment (default: the model name).
    :param alias: alias moved to the new version (default ``challenger``).
    :param reuse_cached: reuse a registered version with the same fingerprint instead of retraining.
    :param serialization_format: ``"skops"`` (default, no arbitrary code on load), ``"cloudpickle"``
        or ``"pickle"``.
    :param trusted_type_prefixes: module prefixes whose types a skops file may contain; a fitted model
        with a type outside them fails with a :class:`ConfigError` instead of being trusted blindly.
    :param code_version: the code version recorded and fingerprinted; default: the DAG bundle
        version, else a hash of the DAG file.
    """

    model_name: str
    experiment_name: str | None = None
    alias: str = ALIAS_CHALLENGER
    reuse_cached: bool = True
    serialization_format: str = "skops"
    trusted_type_prefixes: tuple[str, ...] = DEFAULT_TRUSTED_PREFIXES
    code_version: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model_name, str) or not _NAME.match(self.model_name):
            raise ConfigError(
                f"model_name {self.model_name!r} must be 1-200 letters, digits, '_', '-' or '.'."
            )
        self.experiment_name = self.experiment_name or self.model_name
        if not _NAME.match(self.alias) or self.alias.lower().startswith("v") and self.alias[1:].isdigit():
            raise ConfigError(
                f"alias {self.alias!r} is not a valid MLflow alias (letters, digits, '_', '-')."
            )
        if self.serialization_format not in SERIALIZATION_FORMATS:
            raise ConfigError(
                f"serialization_format must be one of {SERIALIZATION_FORMATS}, not {self.serialization_format!r}."
            )
        self.trusted_type_prefixes = tuple(self.trusted_type_prefixes)


@dataclass
class SearchConfig(MappingConfig):
    """A hyperparameter search: one mapped Airflow task per candidate.

    :param param_grid: every combination of these values (``{"max_depth": [3, 5]}``).
    :param param_distributions: sample ``n_candidates`` with ``seed``: a list is sampled uniformly; a
        dict ``{"dist": "uniform"|"loguniform"|"randint", "low": a, "high": b}`` is a scipy distribution.
    :param n_candidates: number of random candidates.
    :param seed: seed of the random search.
    :param metric: metric that ranks candidates (default: accuracy / rmse by task type).
    :param direction: ``"maximize"`` or ``"minimize"``; default from the metric.
    :param max_candidates: refuse larger searches (each candidate is an Airflow task).
    """

    param_grid: dict[str, list[Any]] | None = None
    param_distributions: dict[str, Any] | None = None
    n_candidates: int = 10
    seed: int = 42
    metric: str | None = None
    direction: str | None = None
    max_candidates: int = 64

    def __post_init__(self) -> None:
        if (self.param_grid is None) == (self.param_distributions is None):
            raise ConfigError(
                "Give exactly one of param_grid (grid search) or param_distributions (random search)."
            )
        space = self.param_grid if self.param_grid is not None else self.param_distributions
        if not isinstance(space, Mapping) or not space:
            raise ConfigError("The search space must be a non-empty dict of parameter name -> values.")
        _check_json(space, "The search space")
        if self.param_grid is not None:
            bad = [k for k, v in self.param_grid.items() if not isinstance(v, list) or not v]
            if bad:
                raise ConfigError(f"param_grid values must be non-empty lists; fix {bad}.")
        if self.n_candidates < 1 or self.max_candidates < 1:
            raise ConfigError("n_candidates and max_candidates must be >= 1.")
        if self.metric is not None and not (self.metric in CATALOG and CATALOG[self.metric].in_training):
            trained = sorted(n for n, m in CATALOG.items() if m.in_training)
            raise ConfigError(f"Unknown metric {self.metric!r}; use one of {trained}.")
        if self.direction is not None and self.direction not in ("maximize", "minimize"):
            raise ConfigError(f"direction must be 'maximize' or 'minimize', not {self.direction!r}.")

    def resolve_metric(self, task_type: TaskType) -> tuple[str, str]:
        """The ranking metric and its direction for ``task_type``."""
        metric = self.metric or PRIMARY_METRIC[task_type]
        return metric, self.direction or ("maximize" if CATALOG[metric].direction == HIGHER else "minimize")
