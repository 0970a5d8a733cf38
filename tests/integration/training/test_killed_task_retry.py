"""A training task killed with SIGKILL between registering its model and setting the alias, retried
by Airflow itself on a real scheduler: the run succeeds on its second try with exactly one version.

The fault is injected in the DAG file: on the first try only, the task process kills itself
(``SIGKILL``, no cleanup, as the OOM killer or a lost worker would) right after MLflow registered
the version. The supervisor sees its task process die, Airflow marks the try failed and retries it;
the retry must find the version the killed try registered (idempotency key) instead of adding one.
"""

from __future__ import annotations

import textwrap

import pytest

from airflow_mlpipe.core.timing import scaled
from mlpipe_dev.local.stack import LocalAirflow

pytestmark = pytest.mark.integration

_DAG = """
import os
import signal
from pathlib import Path

import pendulum
from airflow.sdk import DAG

from airflow_mlpipe.operators.mlflow import MlflowTrainModelOperator

MARKER = Path({marker!r})


class KilledOnceAfterRegistering(MlflowTrainModelOperator):
    def execute(self, context):
        from mlflow import MlflowClient

        original = MlflowClient.set_registered_model_alias

        def die_the_first_time(client, *args, **kwargs):
            if not MARKER.exists():
                MARKER.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return original(client, *args, **kwargs)

        MlflowClient.set_registered_model_alias = die_the_first_time
        try:
            return super().execute(context)
        finally:
            MlflowClient.set_registered_model_alias = original


with DAG("train_killed", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
    KilledOnceAfterRegistering(
        task_id="train",
        training_set={source!r},
        model_name="killed_once",
        estimator="sklearn.linear_model.LogisticRegression",
        estimator_params={{"max_iter": 500}},
        label_column="target",
        reuse_cached=False,
        retries=1,
        retry_delay=pendulum.duration(seconds=0),
    )
"""


def test_a_training_task_killed_mid_registration_is_retried_by_airflow_into_one_version(
    tmp_path, iris_frame, monkeypatch
):
    from airflow_mlpipe.hooks.mlflow import MlflowHook

    source = tmp_path / "iris.parquet"
    iris_frame.to_parquet(source, index=False)
    marker = tmp_path / "killed.pid"
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "train_killed.py").write_text(
        textwrap.dedent(_DAG.format(marker=str(marker), source=str(source)))
    )
    root = tmp_path / "artifacts"
    env = {"MLPIPE_ARTIFACT_ROOT": f"file://{root}"}
    with LocalAirflow(home=tmp_path / "home", dags_folder=dags, parallelism=2, env=env) as af:
        af.api.wait_dags(["train_killed"])
        run_id = af.api.trigger("train_killed")
        state = af.api.wait_run("train_killed", run_id, timeout=scaled(600), poll=1)
        (ti,) = af.api.task_instances("train_killed", run_id)
        result = af.api.xcom("train_killed", run_id, "train") if state == "success" else None
    assert marker.exists(), "the fault was never injected"
    assert state == "success", ti
    assert ti["try_number"] == 2, ti  # the first try died; Airflow retried it
    assert result and result["resumed"] is True, result

    # The embedded MLflow store both tries wrote to: one version, the alias on it.
    monkeypatch.setenv("MLPIPE_ARTIFACT_ROOT", env["MLPIPE_ARTIFACT_ROOT"])
    client = MlflowHook("no_such_connection_embedded").get_client()
    versions = client.search_model_versions("name = 'killed_once'")
    assert [str(v.version) for v in versions] == [str(result["version"])]
    alias = client.get_model_version_by_alias("killed_once", "challenger")
    assert str(alias.version) == str(result["version"])
