"""One operator per stage kind: how a graph node becomes an Airflow task.

Each builder receives the node (its ``params`` already resolved: :class:`~.graph.Ref` values are
XCom references to the upstream task) and returns the task(s). Builders import their stage's
operator module when called, so a factory-built DAG only loads the stages it uses.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable
from typing import Any

from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.factories import graph as g

Builder = Callable[[g.Node, dict[str, Any], list[Any]], Any]


# Stage kinds whose task is just the stage's operator with the node's params, by class path: the
# module is imported only when a DAG uses that kind.
OPERATORS: dict[str, str] = {
    g.VALIDATE: "airflow_mlpipe.operators.great_expectations.DataValidationOperator",
    g.QUALITY: "airflow_mlpipe.operators.great_expectations.DataValidationOperator",
    g.FEATURE_APPLY: "airflow_mlpipe.operators.feast.FeastApplyOperator",
    g.MATERIALIZE: "airflow_mlpipe.operators.feast.FeastMaterializeOperator",
    g.TRAINING_SET: "airflow_mlpipe.operators.feast.FeastTrainingSetOperator",
    g.HOLDOUT_SET: "airflow_mlpipe.operators.feast.FeastTrainingSetOperator",
    g.TRAIN: "airflow_mlpipe.operators.mlflow.MlflowTrainModelOperator",
    g.GATE: "airflow_mlpipe.operators.evaluation.EvaluationGateOperator",
    g.PROMOTE: "airflow_mlpipe.operators.evaluation.PromoteModelOperator",
    g.DEPLOY: "airflow_mlpipe.operators.bentoml.BentoDeployOperator",
    g.BATCH_SCORE: "airflow_mlpipe.operators.bentoml.BatchInferenceOperator",
    g.STREAM_DEPLOY: "airflow_mlpipe.operators.streaming.StreamScorerDeployOperator",
    g.WAIT_FOR_BATCH: "airflow_mlpipe.sensors.monitoring.NewDataSensor",
    g.CLAIM_BATCH: "airflow_mlpipe.operators.monitoring.ClaimNewBatchOperator",
}


def _operator(class_path: str) -> Builder:
    def build(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
        module, _, name = class_path.rpartition(".")
        operator = getattr(importlib.import_module(module), name)
        return operator(task_id=node.name, outlets=outlets, **params)

    return build


def _train_search(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.operators.mlflow import training_search_tasks

    # start → one mapped candidate task per search point → register the best (a nested group)
    return training_search_tasks(group_id=node.name, outlets=outlets, **params).group


def _approval(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.operators.approval import promotion_approval

    return promotion_approval(
        task_id=node.name,
        gate_task_id=params["gate_task_id"],
        response_timeout=dt.timedelta(hours=float(params["timeout_hours"])),
    )


def _drift(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.core.lineage import stage_asset
    from airflow_mlpipe.operators.evidently import EvidentlyDriftOperator

    key = params.pop("drift_asset", None)
    return EvidentlyDriftOperator(
        task_id=node.name, outlets=outlets, drift_asset=stage_asset(*key) if key else None, **params
    )


def _retrain(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.operators.retraining import RetrainOnDriftOperator

    return RetrainOnDriftOperator(
        task_id=node.name,
        trigger_dag_id=params["training_dag_id"],
        drift_task_id=params["drift_task_id"],
        outlets=outlets,
    )


BUILDERS: dict[str, Builder] = {
    **{kind: _operator(path) for kind, path in OPERATORS.items()},
    g.TRAIN_SEARCH: _train_search,
    g.APPROVAL: _approval,
    g.DRIFT: _drift,
    g.RETRAIN: _retrain,
}


def build_task(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    """The Airflow task(s) of ``node``."""
    try:
        builder = BUILDERS[node.kind]
    except KeyError:
        raise ConfigError(
            f"No operator is registered for stage kind {node.kind!r} ({node.task_id})."
        ) from None
    return builder(node, params, outlets)


def new_batch_watcher(
    name: str,
    path: str,
    pattern: str,
    poll_interval: float,
    *,
    include_existing: bool,
    min_age: float,
) -> Any:
    """An ``AssetWatcher`` announcing each new batch file under ``path`` once it is ``min_age``
    seconds old (and, with ``include_existing``, the files already there on its very first start)."""
    from airflow.sdk import AssetWatcher

    from airflow_mlpipe.triggers.monitoring import NewBatchEventTrigger

    return AssetWatcher(
        name=name,
        trigger=NewBatchEventTrigger(
            uri=path,
            pattern=pattern,
            poll_interval=poll_interval,
            min_age_seconds=min_age,
            include_existing=include_existing,
        ),
    )
