"""Hyperparameter search: expand a grid or seeded random search into candidates, pick the best."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_mlpipe.config.training import SearchConfig
from airflow_mlpipe.core.results import jsonable
from airflow_mlpipe.exceptions import ConfigError, DataError

_DISTRIBUTIONS = ("uniform", "loguniform", "randint")


def _distribution(name: str, spec: Any) -> Any:
    if isinstance(spec, list):
        return spec
    if not isinstance(spec, Mapping) or spec.get("dist") not in _DISTRIBUTIONS:
        raise ConfigError(
            f"param_distributions[{name!r}] must be a list of values or "
            f"{{'dist': one of {list(_DISTRIBUTIONS)}, 'low': …, 'high': …}}, not {spec!r}."
        )
    from scipy import stats

    low, high = spec.get("low"), spec.get("high")
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or not low < high:
        raise ConfigError(f"param_distributions[{name!r}] needs numbers low < high, got {low!r}, {high!r}.")
    if spec["dist"] == "uniform":
        return stats.uniform(low, high - low)
    if spec["dist"] == "loguniform":
        if low <= 0:
            raise ConfigError(f"param_distributions[{name!r}]: loguniform needs low > 0.")
        return stats.loguniform(low, high)
    return stats.randint(int(low), int(high))


def expand_candidates(search: SearchConfig) -> list[dict[str, Any]]:
    """The candidate parameter dicts, in a deterministic order (same config and seed, same list)."""
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    if search.param_grid is not None:
        candidates: list[Any] = list(ParameterGrid(search.param_grid))
    else:
        assert search.param_distributions is not None
        dists = {k: _distribution(k, v) for k, v in search.param_distributions.items()}
        candidates = list(ParameterSampler(dists, n_iter=search.n_candidates, random_state=search.seed))
    if len(candidates) > search.max_candidates:
        raise ConfigError(
            f"The search has {len(candidates)} candidates, more than max_candidates={search.max_candidates} "
            "(each is an Airflow task); shrink the space or raise max_candidates."
        )
    return [jsonable(dict(sorted(c.items()))) for c in candidates]


def select_best(results: Sequence[Mapping[str, Any]], metric: str, direction: str) -> Mapping[str, Any]:
    """The candidate with the best ``metric`` (ties: the earliest candidate)."""
    scored = [r for r in results if isinstance(r, Mapping) and r.get("metrics", {}).get(metric) is not None]
    if not scored:
        names = sorted({k for r in results if isinstance(r, Mapping) for k in r.get("metrics", {})})
        raise DataError(f"No candidate reported metric {metric!r}; they reported {names}.")
    sign = 1.0 if direction == "maximize" else -1.0
    return max(scored, key=lambda r: sign * float(r["metrics"][metric]))
