"""Estimator factories referenced by import path in the training tests."""

from __future__ import annotations

from typing import Any


def scaled_logistic_regression() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=500))])


def with_custom_function() -> Any:
    """A pipeline holding a function from this (untrusted) module: skops must not trust it blindly."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    return make_pipeline(FunctionTransformer(double), LogisticRegression(max_iter=500))


def double(x: Any) -> Any:
    return x * 2
