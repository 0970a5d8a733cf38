from __future__ import annotations

import copy

import pytest

from airflow_mlpipe.config.pipeline import PipelineConfig, TrainingSection
from airflow_mlpipe.exceptions import ConfigError
from tests.unit.factories.conftest import BASE


def test_yaml_round_trip(tmp_path):
    cfg = PipelineConfig.from_mapping(copy.deepcopy(BASE))
    path = tmp_path / "p.yaml"
    path.write_text(cfg.to_yaml())
    again = PipelineConfig.from_yaml(path)
    assert again == cfg
    assert isinstance(again.training, TrainingSection)
    assert again.training.experiment == "toy_model"  # defaulted from the model name


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("pattern",), "fanout", "use one of"),
        (("name",), "has space", "identifier"),
        (("start_date",), "soon", "YYYY-MM-DD"),
        (("training", "task_type"), "ranking", "task_type"),
        (("training", "estimator"), "LogisticRegression", "import path"),
        (("training", "search"), {"param_grid": {"C": []}}, "non-empty lists"),
        (("training", "search"), {"grid": {"C": [1]}}, "training.search"),
        (("monitoring", "drift"), {"drift_share": 1.5}, "drift_share"),
        (("monitoring", "watch_path"), "", "monitoring.watch_path"),
        (("gate", "criteria"), ["roc_auc > 0.5"], "roc_auc"),
        (("gate", "criteria"), "roc_auc >= 0.5", "must be a list"),
        (("validation", "dataset"), "", "validation.dataset"),
    ],
)
def test_validation_errors_say_what_to_change(path, value, message):
    data = copy.deepcopy(BASE)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_mapping(data)


def test_unknown_keys_are_rejected_with_the_allowed_ones():
    data = copy.deepcopy(BASE)
    data["training"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match=r"training: unknown key\(s\) \['learning_rate'\]; allowed keys"):
        PipelineConfig.from_mapping(data)


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        PipelineConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match="Cannot read"):
        PipelineConfig.from_yaml(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "streaming, message",
    [
        ({"enabled": True}, r"needs \['redis_url', 'input_stream', 'output_stream'\]"),
        (
            {"enabled": True, "stream": {"redis_url": "http://x", "input_stream": "a", "output_stream": "b"}},
            "redis://",
        ),
        (
            {
                "enabled": True,
                "stream": {"redis_url": "redis://x", "input_stream": "a", "output_stream": "a"},
            },
            "three different",
        ),
        (
            {
                "enabled": True,
                "stream": {"redis_url": "{{ x }}", "input_stream": "a", "output_stream": "b", "batch": 5},
            },
            r"unknown key\(s\) \['batch'\]",
        ),
        ({"enabled": "yes"}, "true or false"),
        ({"canary": {"share": 2}}, "share"),
    ],
)
def test_streaming_section_says_what_to_change(streaming, message):
    data = copy.deepcopy(BASE)
    data["streaming"] = streaming
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_mapping(data)


def test_streaming_templates_are_checked_when_the_task_runs():
    data = copy.deepcopy(BASE)
    stream = {
        "redis_url": "{{ mlpipe_env('R', 'redis://h:1/0') }}",
        "input_stream": "{{ ds }}.in",
        "output_stream": "out",
    }
    data["streaming"] = {"enabled": True, "stream": stream}
    assert PipelineConfig.from_mapping(data).streaming.stream == stream
