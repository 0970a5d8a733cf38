"""One operator per stage kind: how a graph node becomes an Airflow task.

Each builder receives the node (its ``params`` already resolved: :class:`~.graph.Ref` values are
XCom references to the upstream task) and returns the task(s). Builders import their stage's
operator module when called, so a factory-built DAG only loads the stages it uses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.factories import graph as g

Builder = Callable[[g.Node, dict[str, Any], list[Any]], Any]


def _validate(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.operators.great_expectations import DataValidationOperator

    return DataValidationOperator(task_id=node.name, outlets=outlets, **params)


def _feature_apply(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.operators.feast import FeastApplyOperator

    return FeastApplyOperator(task_id=node.name, outlets=outlets, **params)


def _materialize(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.operators.feast import FeastMaterializeOperator

    return FeastMaterializeOperator(task_id=node.name, outlets=outlets, **params)


def _training_set(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.operators.feast import FeastTrainingSetOperator

    return FeastTrainingSetOperator(task_id=node.name, outlets=outlets, **params)


def _train(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.operators.mlflow import MlflowTrainModelOperator

    return MlflowTrainModelOperator(task_id=node.name, outlets=outlets, **params)


def _train_search(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.operators.mlflow import training_search_tasks

    # start → one mapped candidate task per search point → register the best (a nested group)
    return training_search_tasks(group_id=node.name, outlets=outlets, **params).group


def _gate(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.operators.evaluation import EvaluationGateOperator

    return EvaluationGateOperator(task_id=node.name, outlets=outlets, **params)


def _approval(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from airflow_mlpipe.operators.evaluation import approval_body

    return ApprovalOperator(
        task_id=node.name,
        subject="Promote the blessed challenger to champion?",
        body=approval_body(params["gate_task_id"]),
        response_timeout=dt.timedelta(hours=float(params["timeout_hours"])),
    )


def _promote(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.operators.evaluation import PromoteModelOperator

    return PromoteModelOperator(task_id=node.name, outlets=outlets, **params)


def _deploy(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.operators.bentoml import BentoDeployOperator

    return BentoDeployOperator(task_id=node.name, outlets=outlets, **params)


def _batch_score(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.operators.bentoml import BatchInferenceOperator

    return BatchInferenceOperator(task_id=node.name, outlets=outlets, **params)


def _wait_for_batch(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.sensors.monitoring import NewDataSensor

    return NewDataSensor(task_id=node.name, outlets=outlets, **params)


def _claim_batch(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.operators.monitoring import ClaimNewBatchOperator

    return ClaimNewBatchOperator(task_id=node.name, outlets=outlets, **params)


def _drift(node: g.Node, params: dict[str, Any], outlets: list[Any]) -> Any:
    from airflow_mlpipe.factories.render import asset
    from airflow_mlpipe.operators.evidently import EvidentlyDriftOperator

    key = params.pop("drift_asset", None)
    return EvidentlyDriftOperator(
        task_id=node.name, outlets=outlets, drift_asset=asset(key) if key else None, **params
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
    g.VALIDATE: _validate,
    g.QUALITY: _validate,
    g.FEATURE_APPLY: _feature_apply,
    g.MATERIALIZE: _materialize,
    g.TRAINING_SET: _training_set,
    g.HOLDOUT_SET: _training_set,
    g.TRAIN: _train,
    g.TRAIN_SEARCH: _train_search,
    g.GATE: _gate,
    g.APPROVAL: _approval,
    g.PROMOTE: _promote,
    g.DEPLOY: _deploy,
    g.BATCH_SCORE: _batch_score,
    g.WAIT_FOR_BATCH: _wait_for_batch,
    g.CLAIM_BATCH: _claim_batch,
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


def new_batch_watcher(name: str, path: str, pattern: str, poll_interval: float) -> Any:
    """An ``AssetWatcher`` announcing each new batch file under ``path``."""
    from airflow.sdk import AssetWatcher

    from airflow_mlpipe.triggers.monitoring import NewBatchEventTrigger

    return AssetWatcher(
        name=name, trigger=NewBatchEventTrigger(uri=path, pattern=pattern, poll_interval=poll_interval)
    )
