"""Graph shape of each pattern, built without Airflow."""

from __future__ import annotations

import pytest

from airflow_mlpipe.config.pipeline import PipelineConfig
from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.factories import graph as g


def _build(cfg, pattern, **changes):
    cfg = {**cfg, "pattern": pattern, **changes}
    return PipelineConfig.from_dict(cfg)


def test_dag_pattern_maps_candidates_in_parallel(base_config):
    gr = g.training_graph(_build(base_config, "dag"))
    assert gr.dag_id == "toy_training"
    assert gr.task_ids == [
        "validate.check_batch",
        "features.apply",
        "features.materialize",
        "features.training_set",
        "train.candidates",
        "train.register_best",
        "evaluate.gate",
        "evaluate.promote",
        "deploy.serve",
        "deploy.batch_score",
    ]
    train = gr.nodes["train.candidates"]
    assert [e["candidate"] for e in train.expand or []] == ["logreg", "forest"]
    assert gr.groups == ["validate", "features", "train", "evaluate", "deploy"]
    assert gr.schedule == "@daily"
    # a chain: every task has exactly one upstream except the first
    assert all(len(gr.upstream(t)) == 1 for t in gr.task_ids[1:])
    assert gr.upstream("validate.check_batch") == []


def test_linear_pattern_trains_one_candidate_sequentially(base_config):
    gr = g.training_graph(_build(base_config, "linear"))
    fit = gr.nodes["train.fit"]
    assert fit.expand is None and fit.params["candidate"] == "logreg"
    assert "train.candidates" not in gr.nodes
    assert gr.downstream("train.fit") == ["train.register_best"]


def test_event_pattern_is_asset_scheduled(base_config):
    cfg = _build(base_config, "event")
    tr, mon = g.training_graph(cfg), g.monitoring_graph(cfg)
    kind, assets = tr.schedule
    assert kind == "assets_all"
    assert assets == [("validation", "toy.validated"), ("monitoring", "toy.drift")]
    # the training DAG must not emit what it is scheduled on (that would loop)
    assert tr.nodes["validate.check_batch"].outlets == []
    kind, watch = mon.schedule
    assert kind == "watch" and watch["path"] == "/tmp/toy/incoming"
    assert "detect.wait_for_batch" not in mon.nodes
    assert mon.nodes["monitor.quality"].outlets == [("validation", "toy.validated")]
    assert mon.nodes["retrain.request"].outlets == [("monitoring", "toy.drift")]


def test_scheduled_monitoring_waits_for_the_batch_then_triggers_training(base_config):
    mon = g.monitoring_graph(_build(base_config, "dag"))
    assert mon.task_ids == [
        "detect.wait_for_batch",
        "monitor.quality",
        "monitor.drift",
        "retrain.trigger_training",
    ]
    assert mon.nodes["retrain.trigger_training"].params["training_dag_id"] == "toy_training"


def test_optional_stages(base_config):
    base_config["gate"]["require_approval"] = True
    base_config["deployment"] = {"enabled": False}
    base_config["features"]["materialize"] = False
    gr = g.training_graph(_build(base_config, "dag"))
    assert gr.upstream("evaluate.promote") == ["evaluate.approval"]
    assert "deploy.serve" not in gr.nodes and "features.materialize" not in gr.nodes
    assert gr.upstream("features.training_set") == ["features.apply"]


def test_missing_sections_are_named(base_config):
    del base_config["training"]
    with pytest.raises(ConfigError, match=r"\['training'\]"):
        g.training_graph(_build(base_config, "dag"))
    base_config["monitoring"]["watch_path"] = ""
    base_config["training"] = {"model_name": "m", "candidates": [{"name": "a", "estimator": "x.Y"}]}
    with pytest.raises(ConfigError, match="watch_path"):
        g.monitoring_graph(_build(base_config, "event"))


def test_options_reach_the_stage_params(base_config):
    base_config["training"]["options"] = {"test_size": 0.3}
    gr = g.training_graph(_build(base_config, "dag"))
    assert gr.nodes["train.candidates"].params["test_size"] == 0.3
