"""Factory-built DAGs: real Airflow objects, serializable, with readable task ids and groups."""

from __future__ import annotations

import copy

import pytest

from airflow_mlpipe.config.pipeline import PipelineConfig
from airflow_mlpipe.factories import pipelines
from airflow_mlpipe.factories.render import mlpipe_env, render_now


def _serialize(dag):
    from airflow.serialization.serialized_objects import DagSerialization

    data = DagSerialization.to_dict(dag)
    return DagSerialization.from_dict(data)


@pytest.mark.integration
@pytest.mark.parametrize("pattern", ["linear", "dag", "event"])
def test_training_dag_for_each_pattern(base_config, pattern):
    dag = pipelines.training_dag({**base_config, "pattern": pattern})
    assert dag.dag_id == "toy_training"
    ids = set(dag.task_ids)
    assert {
        "validate.check_batch",
        "features.training_set",
        "evaluate.gate",
        "evaluate.promote",
        "deploy.serve",
    } <= ids
    if pattern == "linear":
        assert "train.fit" in ids and not any(t.startswith("train.search") for t in ids)
    else:
        assert {"train.search.start", "train.search.candidate", "train.search.register_best"} <= ids
        from airflow.sdk.definitions.mappedoperator import MappedOperator

        assert isinstance(dag.get_task("train.search.candidate"), MappedOperator)
    assert "evaluate" in dag.task_group.children
    again = _serialize(dag)
    assert set(again.task_ids) == ids
    if pattern == "event":
        assert "AssetAll" in type(dag.timetable.asset_condition).__name__ or dag.timetable.asset_condition


@pytest.mark.integration
def test_the_factory_approval_step_is_the_gate_approval(base_config):
    """The factory builds its approval step as add_human_approval does: the gate's summary, the
    configured timeout, between gate and promotion."""
    import datetime as dt

    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from airflow_mlpipe.operators.approval import approval_body

    cfg = copy.deepcopy(base_config)
    cfg["gate"].update(require_approval=True, approval_timeout_hours=2)
    dag = pipelines.training_dag(cfg)
    approval = dag.get_task("evaluate.approval")
    assert isinstance(approval, ApprovalOperator)
    assert approval.body == approval_body("evaluate.gate")
    assert approval.response_timeout == dt.timedelta(hours=2)
    assert dag.get_task("evaluate.promote").upstream_task_ids == {"evaluate.approval"}
    assert _serialize(dag).get_task("evaluate.approval").downstream_task_ids == {"evaluate.promote"}


@pytest.mark.integration
@pytest.mark.parametrize("pattern", ["dag", "event"])
def test_monitoring_dag_for_each_pattern(base_config, pattern):
    dag = pipelines.monitoring_dag({**base_config, "pattern": pattern})
    assert dag.dag_id == "toy_monitoring"
    if pattern == "event":
        assert dag.task_ids == ["detect.claim_batch", "monitor.quality", "monitor.drift"]
        (watched,) = list(dag.timetable.asset_condition.objects)
        (watcher,) = watched.watchers
        assert watcher.trigger.uri == "/tmp/toy/incoming"
    else:
        assert dag.task_ids[0] == "detect.wait_for_batch" and dag.task_ids[-1] == "retrain.trigger_training"
        assert dag.get_task("retrain.trigger_training").trigger_dag_id == "toy_training"
    drift = dag.get_task("monitor.drift")
    assert drift.drift_asset is not None and drift.drift_asset.uri == "mlpipe://monitoring/toy.drift"
    quality = dag.get_task("monitor.quality")
    assert quality.dataset_uri == "{{ ti.xcom_pull(task_ids='detect.claim_batch')['current_uri'] }}"
    assert set(_serialize(dag).task_ids) == set(dag.task_ids)


@pytest.mark.integration
def test_factories_deep_copy_their_config(base_config):
    cfg = PipelineConfig.from_mapping(base_config)
    before = copy.deepcopy(cfg)
    dag = pipelines.monitoring_dag(cfg)
    cfg.monitoring.drift["drift_share"] = 0.9  # a later change of the caller's object ...
    assert dag.get_task("monitor.drift").drift == {"drift_share": 0.4}  # ... does not reach the DAG
    cfg.monitoring.drift["drift_share"] = 0.4
    assert cfg == before  # and the factory did not change the caller's object


def test_location_macros(monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", "/srv/airflow")
    monkeypatch.delenv("MLPIPE_DATA_DIR", raising=False)
    assert mlpipe_env("MLPIPE_DATA_DIR", "{airflow_home}/data") == "/srv/airflow/data"
    monkeypatch.setenv("MLPIPE_DATA_DIR", "/mnt/batches")
    assert render_now("{{ mlpipe_env('MLPIPE_DATA_DIR', 'x') }}/features") == "/mnt/batches/features"
    assert render_now("/plain/path") == "/plain/path"


def test_load_config_rejects_other_types():
    from airflow_mlpipe.exceptions import ConfigError

    with pytest.raises(ConfigError, match="PipelineConfig, a mapping or a YAML path"):
        pipelines.load_config(42)  # type: ignore[arg-type]
