"""The batch-scoring engine settings: checked when the operator is built or the pipeline YAML is
loaded, with messages that say what to change; the Spark session's defaults and master URL."""

from __future__ import annotations

import pytest

from airflow_mlpipe.config.deploy import BatchScoringConfig
from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.operators.bentoml import BatchInferenceOperator


def test_default_is_in_process_scoring():
    config = BatchScoringConfig()
    assert (
        config.engine,
        config.batch_size,
        config.workers,
        config.memory_map,
        config.spark_conn_id,
        config.spark_conf,
    ) == ("in_process", 100_000, None, True, None, {})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"engine": "dask"}, r"engine must be one of \['in_process', 'spark'\], got 'dask'"),
        ({"engine": "Spark"}, "got 'Spark'"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"batch_size": 2.5}, "batch_size must be an integer >= 1, got 2.5"),
        ({"workers": 0}, "workers must be an integer >= 1 or None, got 0"),
        ({"workers": True}, "workers must be an integer >= 1 or None, got True"),
        ({"engine": "spark", "workers": 2}, "workers applies to engine 'in_process' only"),
        ({"memory_map": "no"}, "memory_map must be true or false, got 'no'"),
        ({"engine": "spark", "memory_map": False}, "memory_map applies to engine 'in_process' only"),
        ({"spark_conn_id": "spark_default"}, "apply to engine 'spark' only"),
        ({"spark_conf": {"spark.driver.memory": "2g"}}, "apply to engine 'spark' only"),
        ({"engine": "spark", "spark_conn_id": " "}, "spark_conn_id must name an Airflow connection"),
        ({"engine": "spark", "spark_conf": ["spark.driver.memory"]}, "spark_conf must be a mapping"),
        ({"engine": "spark", "spark_conf": {"driver.memory": "2g"}}, r"Spark properties \(spark\.\*\)"),
        (
            {"engine": "spark", "spark_conf": {"spark.master": "local[1]"}},
            "name the master with spark_conn_id",
        ),
        ({"engine": "spark", "spark_conf": {"spark.jars": None}}, "must be a string, number or boolean"),
        ({"engine": "spark", "spark_cores": 2}, r"unknown key\(s\) \['spark_cores'\]"),
    ],
)
def test_bad_settings_say_what_to_change(settings, message):
    with pytest.raises(ConfigError, match=message):
        BatchScoringConfig.from_mapping(settings, "batch")


def test_operator_checks_its_engine_arguments_when_built():
    with pytest.raises(ConfigError, match="engine must be one of"):
        BatchInferenceOperator(task_id="score", model_name="m", input_uri="x", engine="pandas")
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
        BatchInferenceOperator(task_id="score", model_name="m", input_uri="x", batch_size=0)
    op = BatchInferenceOperator(
        task_id="score",
        model_name="m",
        input_uri="x",
        engine="spark",
        spark_conn_id="{{ var.value.spark_conn }}",
        spark_conf={"spark.executor.memory": "4g"},
    )
    assert {"spark_conn_id", "spark_conf"} <= set(op.template_fields)
    plain = BatchInferenceOperator(task_id="plain", model_name="m", input_uri="x", memory_map=False)
    assert plain._scoring().memory_map is False
    with pytest.raises(ConfigError, match="memory_map must be true or false"):
        BatchInferenceOperator(task_id="bad", model_name="m", input_uri="x", memory_map="off")
    assert op._scoring() == BatchScoringConfig(
        engine="spark",
        batch_size=100_000,
        spark_conn_id="{{ var.value.spark_conn }}",
        spark_conf=op.spark_conf,
    )


def test_pipeline_batch_options_are_checked_when_the_yaml_is_loaded():
    from airflow_mlpipe.config.pipeline import DeploymentSection

    with pytest.raises(ConfigError, match="engine must be one of"):
        DeploymentSection(batch_options={"engine": "ray", "keep_columns": ["id"]})
    section = DeploymentSection(batch_options={"engine": "spark", "keep_columns": ["id"]})
    assert section.batch_options["engine"] == "spark"


def test_session_defaults_keep_local_mode_on_loopback_and_the_user_conf_wins():
    from airflow_mlpipe.deploy.spark_batch import session_conf

    config = BatchScoringConfig(
        engine="spark", spark_conf={"spark.driver.memory": "2g", "spark.python.worker.reuse": False}
    )
    local = session_conf("local[*]", config)
    assert local["spark.ui.enabled"] == "false"
    assert local["spark.driver.host"] == local["spark.driver.bindAddress"] == "127.0.0.1"
    assert local["spark.sql.execution.arrow.pyspark.enabled"] == "true"
    assert local["spark.driver.memory"] == "2g" and local["spark.python.worker.reuse"] == "false"
    cluster = session_conf("spark://h:7077", config)
    assert "spark.driver.host" not in cluster and "spark.driver.bindAddress" not in cluster


@pytest.mark.parametrize(
    ("host", "port", "master"),
    [
        ("spark://h", 7077, "spark://h:7077"),
        ("h", 7077, "spark://h:7077"),
        ("spark://h:7077", None, "spark://h:7077"),
        ("yarn", None, "yarn"),
        ("local[2]", None, "local[2]"),
        ("k8s://https://api.example:6443", None, "k8s://https://api.example:6443"),
    ],
)
def test_master_url_from_the_connection(monkeypatch, host, port, master):
    from airflow.sdk import Connection

    from airflow_mlpipe.hooks.spark import spark_master

    conn = Connection(conn_id="spark_test", conn_type="spark", host=host, port=port)
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_TEST", conn.as_json())
    assert spark_master("spark_test") == master
    assert spark_master(None) == "local[*]"


def test_a_missing_or_hostless_connection_is_a_config_error(monkeypatch):
    from airflow.sdk import Connection

    from airflow_mlpipe.hooks.spark import spark_master

    with pytest.raises(ConfigError, match="does not exist; create it"):
        spark_master("no_such_spark_conn")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_EMPTY", Connection(conn_id="e", conn_type="spark").as_json())
    with pytest.raises(ConfigError, match="has no host"):
        spark_master("spark_empty")
