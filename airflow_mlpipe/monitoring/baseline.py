"""The champion's evaluation metrics, read back from the MLflow registry, as the quality baseline."""

from __future__ import annotations

import math
from typing import Any

from airflow_mlpipe.core.conventions import ALIAS_CHAMPION, TAG_GATE_METRIC_PREFIX
from airflow_mlpipe.core.registry import get_version
from airflow_mlpipe.exceptions import ConfigError, DataError


def _numbers(items: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in items.items():
        if prefix and not key.startswith(prefix):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[key[len(prefix) :]] = number
    return out


def registry_baseline(hook: Any, model_name: str, alias: str = ALIAS_CHAMPION) -> dict[str, Any]:
    """Metrics of the model version behind ``alias``: its run's metrics, overridden by the gate's.

    The evaluation gate records the metrics it judged on the version as ``mlpipe.gate.metric.<name>``
    tags; those are what the version was promoted on, so they win over the training run's metrics.

    :param hook: an :class:`~airflow_mlpipe.hooks.mlflow.MlflowHook`.
    :return: ``{"version": str, "metrics": {name: float}, "source": str}``
    """
    with hook.activate():
        client = hook.get_client()
        try:
            version = get_version(client, model_name, alias=alias)
        except ConfigError as exc:
            raise DataError(f"No quality baseline: {exc}") from exc
        metrics: dict[str, float] = {}
        if version.run_id:
            metrics.update(_numbers(dict(client.get_run(version.run_id).data.metrics)))
        metrics.update(_numbers(dict(version.tags or {}), TAG_GATE_METRIC_PREFIX))
    return {
        "version": str(version.version),
        "metrics": metrics,
        "source": f"models:/{model_name}@{alias}",
    }
