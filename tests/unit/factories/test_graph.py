"""Graph shape of each pattern, built without Airflow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from airflow_mlpipe.config.pipeline import PipelineConfig
from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.factories import graph as g


def _build(cfg, pattern, **changes):
    return PipelineConfig.from_mapping({**cfg, "pattern": pattern, **changes})


def test_dag_pattern_searches_candidates_in_parallel(base_config):
    gr = g.training_graph(_build(base_config, "dag"))
    assert gr.dag_id == "toy_training"
    assert gr.task_ids == [
        "validate.check_batch",
        "features.apply",
        "features.materialize",
        "features.training_set",
        "train.search",
        "evaluate.gate",
        "evaluate.promote",
        "deploy.serve",
        "deploy.batch_score",
    ]
    search = gr.nodes["train.search"]
    assert search.kind == g.TRAIN_SEARCH
    assert search.params["search"]["param_grid"] == {"C": [0.1, 1.0, 10.0]}
    assert search.params["training_set"] == g.Ref("features.training_set")
    assert gr.groups == ["validate", "features", "train", "evaluate", "deploy"]
    assert gr.schedule == "@daily"
    assert all(len(gr.upstream(t)) == 1 for t in gr.task_ids[1:])
    assert gr.upstream("validate.check_batch") == []
    # promotion only nominates; the deployment moves champion once the version serves
    assert gr.nodes["evaluate.promote"].params["as_candidate"] is True
    assert gr.nodes["evaluate.promote"].outlets == []
    serve = gr.nodes["deploy.serve"]
    assert (serve.params["alias"], serve.params["promote"]) == ("candidate", True)
    assert ("evaluation", "toy.champion") in serve.outlets
    # without a holdout source, the gate scores on the holdout the training-set stage held out
    assert gr.nodes["evaluate.gate"].params["holdout_uri"] == g.Ref(
        "features.training_set", "holdout_set_uri"
    )


@pytest.mark.parametrize("pattern", ["linear", "dag", "event"])
@pytest.mark.parametrize("holdout_source", ["", "/tmp/toy/holdout_labels.parquet"])
def test_gate_never_scores_on_the_training_rows(base_config, pattern, holdout_source):
    base_config["features"]["holdout_source"] = holdout_source
    gr = g.training_graph(_build(base_config, pattern))
    training_set = gr.nodes["features.training_set"]
    gate_input = gr.nodes["evaluate.gate"].params["holdout_uri"]
    # never the training set the model was fitted on ...
    assert gate_input != g.Ref(training_set.task_id, "training_set_uri")
    assert gate_input.key in ("holdout_set_uri", "training_set_uri")
    if holdout_source:
        # ... a separate table whose rows the training set removes,
        assert gate_input.task_id == "features.holdout_set"
        assert training_set.params["exclude_source"] == holdout_source
        assert "holdout" not in training_set.params
    else:
        # ... or the slice the training-set stage cut out of its own rows (newest by time).
        assert gate_input == g.Ref(training_set.task_id, "holdout_set_uri")
        assert training_set.params["holdout"] == {}
    for consumer in ("train.search", "train.fit"):
        if consumer in gr.nodes:
            assert gr.nodes[consumer].params["training_set"] == g.Ref(training_set.task_id)


def test_training_window_and_holdout_reach_the_training_set(base_config):
    base_config["features"]["training_window"] = {"mode": "last_batches", "batches": 7, "min_rows": 500}
    base_config["features"]["holdout"] = {"method": "random", "fraction": 0.25}
    params = g.training_graph(_build(base_config, "linear")).nodes["features.training_set"].params
    assert params["training_window"] == {"mode": "last_batches", "batches": 7, "min_rows": 500}
    assert params["holdout"] == {"method": "random", "fraction": 0.25}


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("training_window", {"mode": "recent"}, "training_window.mode"),
        ("training_window", {"mode": "last_days"}, "days"),
        ("training_window", {"mode": "all", "size": 3}, "unknown key"),
        ("holdout", {"fraction": 1.5}, "holdout.fraction"),
        ("holdout", {"method": "random", "batches": 1}, "needs method 'time'"),
    ],
)
def test_bad_window_or_holdout_says_what_to_change(base_config, section, value, message):
    base_config["features"][section] = value
    with pytest.raises(ConfigError, match=message):
        _build(base_config, "linear")


def test_linear_pattern_trains_one_model_sequentially(base_config):
    gr = g.training_graph(_build(base_config, "linear"))
    fit = gr.nodes["train.fit"]
    assert fit.kind == g.TRAIN and "search" not in fit.params
    assert "train.search" not in gr.nodes
    assert gr.downstream("train.fit") == ["evaluate.gate"]


def test_dag_pattern_without_search_says_what_to_add(base_config):
    del base_config["training"]["search"]
    with pytest.raises(ConfigError, match="add training.search"):
        g.training_graph(_build(base_config, "dag"))


def test_holdout_set_feeds_gate_and_deployment(base_config):
    base_config["features"]["holdout_source"] = "/tmp/toy/holdout_labels.parquet"
    gr = g.training_graph(_build(base_config, "dag"))
    ref = g.Ref("features.holdout_set", "training_set_uri")
    assert gr.nodes["evaluate.gate"].params["holdout_uri"] == ref
    assert gr.nodes["deploy.serve"].params["holdout_uri"] == ref
    assert sorted(gr.upstream("train.search")) == ["features.holdout_set", "features.training_set"]


def test_event_pattern_is_asset_scheduled(base_config):
    cfg = _build(base_config, "event")
    tr, mon = g.training_graph(cfg), g.monitoring_graph(cfg)
    kind, assets = tr.schedule
    assert kind == "assets_all"
    assert assets == [("validation", "toy.validated"), ("monitoring", "toy.drift")]
    # the training DAG must not emit what it is scheduled on (that would loop)
    assert tr.nodes["validate.check_batch"].outlets == []
    kind, watch = mon.schedule
    assert kind == "watch" and watch["path"] == "/tmp/toy/incoming" and watch["pattern"] == "*.parquet"
    assert mon.task_ids == ["detect.claim_batch", "monitor.quality", "monitor.drift"]
    assert mon.nodes["monitor.quality"].outlets == [("validation", "toy.validated")]
    # drift itself emits the retraining asset event (only when drift is found)
    assert mon.nodes["monitor.drift"].params["drift_asset"] == ("monitoring", "toy.drift")
    assert mon.nodes["detect.claim_batch"].params["files"] is None  # files come from the watcher events


def test_scheduled_monitoring_waits_claims_and_triggers_training(base_config):
    mon = g.monitoring_graph(_build(base_config, "dag"))
    assert mon.task_ids == [
        "detect.wait_for_batch",
        "detect.claim_batch",
        "monitor.quality",
        "monitor.drift",
        "retrain.trigger_training",
    ]
    assert mon.nodes["detect.claim_batch"].params["files"] == g.Ref("detect.wait_for_batch", "files")
    assert mon.nodes["detect.claim_batch"].params["ledger_uri"] == "/tmp/toy/incoming/.claims"
    assert mon.nodes["retrain.trigger_training"].params == {
        "training_dag_id": "toy_training",
        "drift_task_id": "monitor.drift",
    }


def test_optional_stages(base_config):
    base_config["gate"]["require_approval"] = True
    base_config["deployment"] = {"enabled": False}
    base_config["features"]["materialize"] = False
    base_config["monitoring"]["retrain_on_drift"] = False
    cfg = _build(base_config, "dag")
    gr = g.training_graph(cfg)
    assert gr.upstream("evaluate.promote") == ["evaluate.approval"]
    assert "deploy.serve" not in gr.nodes and "features.materialize" not in gr.nodes
    assert gr.upstream("features.training_set") == ["features.apply"]
    mon = g.monitoring_graph(cfg)
    assert "retrain.trigger_training" not in mon.nodes
    assert mon.nodes["monitor.drift"].params["drift_asset"] is None


def test_missing_sections_are_named(base_config):
    del base_config["training"]
    with pytest.raises(ConfigError, match=r"\['training'\]"):
        g.training_graph(_build(base_config, "dag"))
    del base_config["monitoring"]
    with pytest.raises(ConfigError, match=r"\['monitoring'\]"):
        g.monitoring_graph(_build(base_config, "dag"))


def test_options_reach_the_stage_params(base_config):
    base_config["training"]["options"] = {"test_size": 0.3}
    gr = g.training_graph(_build(base_config, "dag"))
    assert gr.nodes["train.search"].params["test_size"] == 0.3


def test_every_stage_kind_has_a_builder_and_every_operator_path_resolves():
    import importlib

    from airflow.sdk import BaseOperator

    from airflow_mlpipe.factories import graph as g
    from airflow_mlpipe.factories.stages import BUILDERS, OPERATORS

    kinds = {v for k, v in vars(g).items() if k.isupper() and isinstance(v, str)}
    assert set(BUILDERS) == kinds, "every stage kind of the graph builder has exactly one task builder"
    assert set(OPERATORS) <= set(BUILDERS)
    for path in OPERATORS.values():
        module, _, name = path.rpartition(".")
        assert issubclass(getattr(importlib.import_module(module), name), BaseOperator), path


def test_without_deployment_promotion_moves_champion(base_config):
    gr = g.training_graph(_build(base_config, "dag", deployment={"enabled": False}))
    promote = gr.nodes["evaluate.promote"]
    assert promote.params["as_candidate"] is False
    assert promote.outlets == [("evaluation", "toy.champion")]
    assert "deploy.serve" not in gr.nodes


def test_reference_config_materializes_the_triggering_batch_not_the_history():
    """The churn DAGs give no fixed materialization window: a batch's validation records its time
    range, which the training run it triggers materializes (with an hour of overlap)."""
    root = Path(__file__).resolve().parents[3]
    cfg = PipelineConfig.from_yaml(root / "dags" / "config" / "churn.yaml")
    materialize = g.training_graph(cfg).nodes["features.materialize"].params
    assert materialize["start"] is None and materialize["end"] is None
    assert materialize["overlap"] == 3600
    quality = g.monitoring_graph(cfg).nodes["monitor.quality"]
    assert quality.params["timestamp_column"] == "event_timestamp"
    assert quality.outlets == [g.asset_key(g.VALIDATED_DATA, "churn")]


def test_drift_start_is_read_from_the_batch_event_time():
    """A retraining request starts its window at the drifted batch's earliest event time: the
    batch's own column (validation), not the label table's (features), which batches lack."""
    root = Path(__file__).resolve().parents[3]
    cfg = PipelineConfig.from_yaml(root / "dags" / "config" / "churn.yaml")
    assert cfg.features is not None and cfg.features.timestamp_column == "label_timestamp"
    assert g.monitoring_graph(cfg).nodes["monitor.drift"].params["timestamp_column"] == "event_timestamp"
    cfg.validation.timestamp_column = ""  # type: ignore[union-attr]
    assert g.monitoring_graph(cfg).nodes["monitor.drift"].params["timestamp_column"] == "label_timestamp"


def test_docs_schedule_on_assets_the_factories_emit():
    """The assets the docs name for a pipeline are the ones the factories emit."""
    docs = Path(__file__).resolve().parents[3] / "docs"
    emitted = {
        f"mlpipe://{stage}/{template.format(name='<name>')}"
        for value in vars(g).values()
        if isinstance(value, tuple) and len(value) == 2 and "{name}" in str(value[1])
        for stage, template in [value]
    }
    named = set(re.findall(r"mlpipe://\w+/<name>[\w.]*", (docs / "concepts" / "loop.md").read_text()))
    assert named and named <= emitted
    scheduled = re.findall(
        r'schedule=\[stage_asset\("(\w+)", "churn(\.[\w.]+)"\)\]',
        (docs / "stages" / "deployment.md").read_text(),
    )
    assert scheduled and {f"mlpipe://{stage}/<name>{rest}" for stage, rest in scheduled} <= emitted


def test_prediction_log_wires_the_serving_paths_to_the_drift_checks_quality(base_config):
    log = {
        "uri": "/tmp/toy/predictions",
        "labels_uri": "/tmp/toy/labels",
        "keys": ["id"],
        "label_column": "y",
        "label_timestamp_column": "label_ts",
        "label_delay_seconds": 3600,
    }
    base_config["monitoring"] |= {
        "prediction_log": log,
        "quality": {"metrics": ["roc_auc"], "max_degradation": 0.1},
    }
    base_config["deployment"]["batch_options"] = {"keep_columns": ["id"]}
    cfg = _build(base_config, "event")
    drift = g.monitoring_graph(cfg).nodes["monitor.drift"].params
    assert drift["prediction_log"] == log
    assert drift["quality"]["metrics"] == ("roc_auc",) and drift["quality"]["max_degradation"] == 0.1
    # the joined log's columns, and the served score for roc_auc
    assert (drift["quality"]["label_column"], drift["quality"]["score_column"]) == ("label", "score")
    assert drift["cooldown_batches"] == 3  # the same cooldown as drift
    assert drift["refresh_batches"] == 0  # no refresh unless asked for
    base_config["monitoring"]["retrain_refresh_batches"] = 2
    assert (
        g.monitoring_graph(_build(base_config, "event")).nodes["monitor.drift"].params["refresh_batches"] == 2
    )
    base_config["monitoring"]["retrain_refresh_batches"] = -1
    with pytest.raises(ConfigError, match=r"monitoring.retrain_refresh_batches=-1 must be an integer >= 0"):
        _build(base_config, "event")
    del base_config["monitoring"]["retrain_refresh_batches"]
    batch = g.training_graph(cfg).nodes["deploy.batch_score"].params
    assert batch["prediction_log"] == {"uri": "/tmp/toy/predictions", "keys": ["id"]}
    # So does the HTTP service; deployment.options may name another log.
    serve = g.training_graph(cfg).nodes["deploy.serve"].params
    assert serve["prediction_log"] == {"uri": "/tmp/toy/predictions", "keys": ["id"]}
    base_config["deployment"]["options"] = {"prediction_log": None}
    assert (
        g.training_graph(_build(base_config, "event")).nodes["deploy.serve"].params["prediction_log"] is None
    )
    base_config["deployment"]["options"] = {}
    # The stream scorer logs to it too; a stream's own prediction_log wins.
    base_config["streaming"] = {"enabled": True, "stream": dict(STREAM)}
    stream = g.training_graph(_build(base_config, "event")).nodes["deploy.stream"].params["stream"]
    assert stream == {**STREAM, "prediction_log": {"uri": "/tmp/toy/predictions", "keys": ["id"]}}
    own = {"uri": "/tmp/toy/stream-log", "keys": ["id"]}
    base_config["streaming"]["stream"]["prediction_log"] = own
    stream = g.training_graph(_build(base_config, "event")).nodes["deploy.stream"].params["stream"]
    assert stream["prediction_log"] == own


def test_quality_without_a_prediction_log_or_with_column_names_is_refused(base_config):
    base_config["monitoring"]["quality"] = {"metrics": ["accuracy"]}
    with pytest.raises(ConfigError, match="add monitoring.prediction_log"):
        _build(base_config, "event")
    base_config["monitoring"]["prediction_log"] = {
        "uri": "/p",
        "labels_uri": "/l",
        "keys": ["id"],
        "label_column": "y",
        "label_timestamp_column": "t",
    }
    base_config["monitoring"]["quality"] = {"metrics": ["accuracy"], "label_column": "y"}
    with pytest.raises(ConfigError, match="columns are fixed"):
        _build(base_config, "event")


STREAM = {
    "redis_url": "redis://127.0.0.1:6379/0",
    "input_stream": "toy.events",
    "output_stream": "toy.scored",
}


def test_streaming_hands_the_stream_to_the_deployed_version(base_config):
    """With streaming on, the stream follows the version deploy.serve made champion (its own
    result, not the alias); without deployment it follows the champion promotion named."""
    base_config["streaming"] = {"enabled": True, "stream": dict(STREAM)}
    gr = g.training_graph(_build(base_config, "dag"))
    node = gr.nodes["deploy.stream"]
    assert node.kind == g.STREAM_DEPLOY and gr.upstream("deploy.stream") == ["deploy.serve"]
    assert node.params["version"] == g.Ref("deploy.serve", "version")
    assert node.params["stream"] == STREAM and node.params["canary"] == {"enabled": False}
    assert node.outlets == [("deployment", "toy.stream")]

    base_config["deployment"] = {"enabled": False}
    gr = g.training_graph(_build(base_config, "dag"))
    assert gr.upstream("deploy.stream") == ["evaluate.promote"]
    assert "version" not in gr.nodes["deploy.stream"].params  # the operator's alias: champion

    base_config["streaming"]["enabled"] = False
    assert "deploy.stream" not in g.training_graph(_build(base_config, "dag")).nodes


def test_reference_config_streams_and_the_dag_renders_the_operator():
    from airflow_mlpipe.factories.pipelines import training_dag

    root = Path(__file__).resolve().parents[3]
    cfg = PipelineConfig.from_yaml(root / "dags" / "config" / "churn.yaml")
    assert cfg.streaming.enabled and cfg.streaming.canary == {"enabled": False}
    task = training_dag(cfg).get_task("deploy.stream")
    assert type(task).__name__ == "StreamScorerDeployOperator"
    assert task.version == "{{ ti.xcom_pull(task_ids='deploy.serve')['version'] }}"
    assert "MLPIPE_STREAM_REDIS_URL" in task.stream["redis_url"]  # rendered when the task runs
