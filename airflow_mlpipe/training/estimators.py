"""Build scikit-learn estimators from configuration and ask them what they can do."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from airflow_mlpipe.config.training import EstimatorConfig, TrainingConfig
from airflow_mlpipe.core.conventions import TaskType
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.exceptions import ConfigError


def import_object(path: str) -> Any:
    """Import ``pkg.module.name`` (the longest importable module prefix, then attributes)."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    raise ConfigError(f"Cannot import {path!r}: check the module path and the name.")


def categorical_columns(X: Any) -> list[str]:
    """The columns of ``X`` holding strings or categories (the ones an estimator cannot take as numbers)."""
    pd = require("pandas")
    return [
        str(c)
        for c in X.columns
        if isinstance(X[c].dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(X[c])
        or pd.api.types.is_string_dtype(X[c])
    ]


def encode_categorical(estimator: Any, columns: list[str]) -> Any:
    """``estimator`` behind a one-hot encoding of ``columns`` (other columns pass through unchanged).

    Categories not seen in training encode as all zeros, so a new value at serving time is scored
    rather than refused. A ``Pipeline`` is returned as it is: it does its own preprocessing.
    """
    require("sklearn")
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    if not columns or isinstance(estimator, Pipeline):
        return estimator
    encode = ColumnTransformer(
        [("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), columns)],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    return Pipeline([("encode", encode), ("model", estimator)])


def build_estimator(config: EstimatorConfig, seed: int | None = None) -> Any:
    """A fresh, unfitted estimator: the class or factory called without arguments, then ``set_params``.

    ``random_state`` is set to ``seed`` when the estimator (or a pipeline step) has one and the
    parameters do not name it, so the same inputs and seed give the same model.
    """
    require("sklearn")
    from sklearn.base import BaseEstimator

    target = import_object(config.estimator) if isinstance(config.estimator, str) else config.estimator
    if not callable(target):
        raise ConfigError(f"{config.name} is not a class or factory function.")
    try:
        estimator = target()
    except TypeError as exc:
        raise ConfigError(f"Could not create {config.name} without arguments: {exc}") from exc
    if not isinstance(estimator, BaseEstimator) or not hasattr(estimator, "fit"):
        raise ConfigError(
            f"{config.name} returned {type(estimator).__name__}, not a scikit-learn estimator or Pipeline."
        )
    params: dict[str, Any] = dict(config.params)
    if seed is not None:
        for name in estimator.get_params(deep=True):
            if (name == "random_state" or name.endswith("__random_state")) and name not in params:
                params[name] = seed
    try:
        estimator.set_params(**params)
    except ValueError as exc:
        raise ConfigError(f"Invalid parameter for {config.name}: {exc}") from exc
    return estimator


def estimator_factory(
    config: EstimatorConfig, training: TrainingConfig, X: Any
) -> tuple[Callable[[], Any], list[str]]:
    """How to make a fresh estimator for the features ``X``, and the columns it one-hot encodes.

    With ``training.encode_categorical`` an estimator that is not a ``Pipeline`` is put behind
    :func:`encode_categorical` for the string and category columns of ``X``.
    """
    from sklearn.pipeline import Pipeline

    probe = build_estimator(config, training.seed)
    columns = (
        categorical_columns(X) if training.encode_categorical and not isinstance(probe, Pipeline) else []
    )
    return (lambda: encode_categorical(build_estimator(config, training.seed), columns)), columns


def estimator_task_type(estimator: Any) -> TaskType | None:
    """Classification or regression as the estimator declares it (``None`` when it does not say)."""
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(estimator):
        return TaskType.CLASSIFICATION
    if is_regressor(estimator):
        return TaskType.REGRESSION
    return None


def allows_nan(estimator: Any) -> bool:
    """Whether the estimator accepts missing values in its input (scikit-learn's ``allow_nan`` tag)."""
    from sklearn.utils import get_tags

    try:
        return bool(get_tags(estimator).input_tags.allow_nan)
    except Exception:  # third-party estimators without tags: let fit decide
        return True


def skops_trusted_types(model: Any, allowed_prefixes: tuple[str, ...]) -> list[str]:
    """The types a skops file of ``model`` needs trusted, checked against ``allowed_prefixes``.

    skops refuses to load types it does not know unless they are listed; we list exactly the ones
    this fitted model contains, and only when they come from libraries the configuration trusts.
    """
    sio = require("skops.io")
    needed = sorted(sio.get_untrusted_types(data=sio.dumps(model)))
    outside = [t for t in needed if not t.startswith(allowed_prefixes)]
    if outside:
        raise ConfigError(
            f"The fitted model contains types outside the trusted prefixes {list(allowed_prefixes)}: {outside}. "
            "Add their module prefix to RegistryConfig.trusted_type_prefixes if you trust that code, "
            "or use serialization_format='cloudpickle' (loading then runs arbitrary code)."
        )
    return needed
