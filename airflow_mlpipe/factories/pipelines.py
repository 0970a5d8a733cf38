"""DAG factories: a training pipeline and a monitoring pipeline from one :class:`PipelineConfig`.

The three patterns are choices of the same factories (``config.pattern``):

* ``linear`` — one candidate, every stage in sequence, on a time schedule;
* ``dag`` — candidates trained in parallel through dynamic task mapping, on a time schedule;
* ``event`` — asset-scheduled: the training DAG runs when a validated batch *and* a drift event
  arrived; the monitoring DAG runs when an ``AssetWatcher`` sees a new batch file.

Factories deep-copy the config they are given (a DAG never shares mutable state with the caller),
build a plain graph (:mod:`~airflow_mlpipe.factories.graph`) and render it
(:mod:`~airflow_mlpipe.factories.render`). Nothing is read or contacted at parse time except the
YAML file when a path is passed.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

from airflow_mlpipe.config.pipeline import PipelineConfig
from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.factories.graph import monitoring_graph, training_graph
from airflow_mlpipe.factories.render import render

ConfigLike = PipelineConfig | Mapping[str, Any] | str | os.PathLike[str]


def load_config(config: ConfigLike) -> PipelineConfig:
    """A private deep copy of ``config`` (a PipelineConfig, a mapping or a YAML path)."""
    if isinstance(config, PipelineConfig):
        return copy.deepcopy(config)
    if isinstance(config, Mapping):
        return PipelineConfig.from_mapping(copy.deepcopy(dict(config)))
    if isinstance(config, (str, os.PathLike)):
        return PipelineConfig.from_yaml(config)
    raise ConfigError(f"Expected a PipelineConfig, a mapping or a YAML path, got {type(config).__name__}.")


def training_dag(config: ConfigLike, **dag_kwargs: Any) -> Any:
    """The training DAG ``<name>_training``: validate → features → train → evaluate → deploy."""
    cfg = load_config(config)
    return render(
        training_graph(cfg), start_date=cfg.start_date, retries=cfg.retries, extra_dag_kwargs=dag_kwargs
    )


def monitoring_dag(config: ConfigLike, **dag_kwargs: Any) -> Any:
    """The monitoring DAG ``<name>_monitoring``: new batch → quality → drift → retraining event."""
    cfg = load_config(config)
    return render(
        monitoring_graph(cfg), start_date=cfg.start_date, retries=cfg.retries, extra_dag_kwargs=dag_kwargs
    )


def pipeline_dags(config: ConfigLike) -> dict[str, Any]:
    """Both DAGs of a use case by dag id (monitoring only when the config has a monitoring section)."""
    cfg = load_config(config)
    dags = [training_dag(cfg)]
    if cfg.monitoring is not None:
        dags.append(monitoring_dag(cfg))
    return {d.dag_id: d for d in dags}
