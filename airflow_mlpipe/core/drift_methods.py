"""Which way each drift test points: when is a column's statistic a sign of drift.

Evidently reports one number per column, the test statistic, and its meaning depends on the
method: for p-value tests (K-S, chi-square, Z …) *small* values mean drift, for distances and
divergences (PSI, Wasserstein, Jensen-Shannon …) *large* values do. Comparators are copied from
Evidently 0.7's stat-test implementations, including where they use ``<=`` rather than ``<``, and a
unit test checks this table against the library's own decisions.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable

from airflow_mlpipe.exceptions import ConfigError


class Direction(enum.StrEnum):
    """How a statistic compares with its threshold when the column drifted."""

    BELOW = "below"  # p-value style: drift when statistic < threshold
    AT_OR_BELOW = "at_or_below"
    ABOVE = "above"  # distance style: drift when statistic > threshold
    AT_OR_ABOVE = "at_or_above"


_COMPARATORS: dict[Direction, Callable[[float, float], bool]] = {
    Direction.BELOW: operator.lt,
    Direction.AT_OR_BELOW: operator.le,
    Direction.ABOVE: operator.gt,
    Direction.AT_OR_ABOVE: operator.ge,
}

#: Evidently method name -> (display name Evidently reports, direction, kind of statistic)
METHODS: dict[str, tuple[str, Direction, str]] = {
    "ks": ("K-S p_value", Direction.AT_OR_BELOW, "p_value"),
    "cramer_von_mises": ("Cramer-von Mises", Direction.AT_OR_BELOW, "p_value"),
    "anderson": ("Anderson-Darling", Direction.BELOW, "p_value"),
    "chisquare": ("chi-square p_value", Direction.BELOW, "p_value"),
    "z": ("Z-test p_value", Direction.BELOW, "p_value"),
    "es": ("Epps-Singleton", Direction.BELOW, "p_value"),
    "fisher_exact": ("Fisher's Exact test", Direction.BELOW, "p_value"),
    "g_test": ("g_test", Direction.BELOW, "p_value"),
    "mannw": ("Mann-Whitney U-rank test", Direction.BELOW, "p_value"),
    "t_test": ("t_test", Direction.BELOW, "p_value"),
    "empirical_mmd": ("empirical_mmd", Direction.BELOW, "p_value"),
    "TVD": ("Total-Variation-Distance", Direction.BELOW, "p_value"),
    "psi": ("PSI", Direction.AT_OR_ABOVE, "distance"),
    "wasserstein": ("Wasserstein distance (normed)", Direction.AT_OR_ABOVE, "distance"),
    "jensenshannon": ("Jensen-Shannon distance", Direction.AT_OR_ABOVE, "distance"),
    "hellinger": ("Hellinger distance", Direction.AT_OR_ABOVE, "distance"),
    "kl_div": ("Kullback-Leibler divergence", Direction.AT_OR_ABOVE, "distance"),
    "ed": ("Energy-distance", Direction.ABOVE, "distance"),
    "perc_text_content_drift": ("Percentile text content drift", Direction.ABOVE, "roc_auc"),
    "abs_text_content_drift": ("Absolute text content drift", Direction.ABOVE, "roc_auc"),
}

_BY_DISPLAY = {display: name for name, (display, _, _) in METHODS.items()}


def check_method(method: str, field: str = "method") -> str:
    """Return ``method`` if Evidently knows it, else raise a :class:`ConfigError` listing the choices."""
    if method in METHODS:
        return method
    if method in _BY_DISPLAY:
        return _BY_DISPLAY[method]
    raise ConfigError(f"{field}={method!r} is not a drift method; use one of {sorted(METHODS)}.")


def canonical(method: str) -> str | None:
    """The Evidently method name for a method name or display name; ``None`` when unknown."""
    if method in METHODS:
        return method
    return _BY_DISPLAY.get(method)


def direction(method: str) -> Direction | None:
    name = canonical(method)
    return None if name is None else METHODS[name][1]


def is_drifted(method: str, statistic: float, threshold: float) -> bool | None:
    """Whether ``statistic`` means drift for ``method``; ``None`` for a method not in the table."""
    way = direction(method)
    if way is None:
        return None
    return bool(_COMPARATORS[way](statistic, threshold))
