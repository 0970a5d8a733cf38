"""The embedded Airflow runs real processes and is driven through the public REST API."""

from __future__ import annotations

import textwrap

import pytest

from mlpipe_dev.local.stack import LocalAirflow, StackError

pytestmark = pytest.mark.integration

_DAGS = textwrap.dedent(
    """
    import pendulum
    from airflow.sdk import DAG, Asset, task

    a = Asset(name="stack_probe", uri="mlpipe://probe/stack")

    with DAG("probe_producer", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
        @task(outlets=[a])
        def produce():
            return {"n": 1}
        produce()

    with DAG("probe_consumer", schedule=[a], start_date=pendulum.datetime(2024, 1, 1), catchup=False):
        @task
        def consume():
            return 2
        consume()
    """
)


def test_local_stack_runs_dag_and_asset_triggered_dag(tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "probe.py").write_text(_DAGS)
    with LocalAirflow(home=tmp_path / "home", dags_folder=dags, parallelism=2) as af:
        af.api.wait_dags(["probe_producer", "probe_consumer"])
        # Every listening socket of the stack is on loopback, and log servers are off.
        assert af.url.startswith("http://127.0.0.1:")
        known = {r["dag_run_id"] for r in af.api.runs("probe_consumer")}
        run_id = af.api.trigger("probe_producer")
        assert af.api.wait_run("probe_producer", run_id, timeout=300) == "success"
        assert af.api.xcom("probe_producer", run_id, "produce") == {"n": 1}
        consumer_run = af.api.wait_new_run("probe_consumer", known, timeout=120)
        assert af.api.wait_run("probe_consumer", consumer_run, timeout=120) == "success"
        with pytest.raises(StackError, match="HTTP 404"):
            af.api.trigger("no_such_dag")


def test_bad_executor_is_a_clear_error(tmp_path):
    with pytest.raises(StackError, match="LocalExecutor or CeleryExecutor"):
        LocalAirflow(home=tmp_path, dags_folder=tmp_path, executor="KubernetesExecutor")
    with pytest.raises(StackError, match="celery_broker_url"):
        LocalAirflow(home=tmp_path, dags_folder=tmp_path, executor="CeleryExecutor")
