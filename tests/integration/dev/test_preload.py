"""Task processes of the provider's executor settings start with the configured libraries imported
(LocalExecutor and CeleryExecutor); with Airflow's own LocalExecutor they start without them (the
same DAG on each, real scheduler and workers)."""

from __future__ import annotations

import random
import textwrap

import pytest

from mlpipe_dev.local.stack import LocalAirflow
from tests.fixtures.services import fresh_database

pytestmark = pytest.mark.integration

_DAG = textwrap.dedent(
    """
    import sys, time
    import pendulum
    from airflow.sdk import DAG, task

    with DAG("preload_probe", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False):
        @task
        def probe():
            there = "sklearn.ensemble" in sys.modules
            started = time.perf_counter()
            import sklearn.ensemble  # noqa: F401
            return {"preloaded": there, "import_seconds": time.perf_counter() - started}
        probe()
    """
)


def _probe(tmp_path, **stack) -> dict:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "probe.py").write_text(_DAG)
    env = {"AIRFLOW__MLPIPE__PRELOAD_MODULES": "sklearn.ensemble"}
    with LocalAirflow(home=tmp_path / "home", dags_folder=dags, parallelism=1, env=env, **stack) as af:
        af.api.wait_dags(["preload_probe"])
        run_id = af.api.trigger("preload_probe")
        assert af.api.wait_run("preload_probe", run_id, timeout=600) == "success"
        return dict(af.api.xcom("preload_probe", run_id, "probe"))


@pytest.mark.parametrize("preload", [True, False], ids=["preloading", "airflow-local"])
def test_local_executor_task_processes_inherit_the_preloaded_modules(tmp_path, preload):
    result = _probe(tmp_path, preload=preload)
    assert result["preloaded"] is preload, result
    if preload:
        assert result["import_seconds"] < 0.05, result  # a dictionary lookup, not an import


def test_celery_task_processes_inherit_the_modules_the_worker_preloaded(tmp_path, postgres_dsn, redis_url):
    db = random.SystemRandom().randint(8, 15)
    with fresh_database(postgres_dsn, "mlpipe_preload") as name:
        result = _probe(
            tmp_path,
            executor="CeleryExecutor",
            sql_alchemy_conn=f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}",
            celery_broker_url=redis_url.rsplit("/", 1)[0] + f"/{db}",
            celery_workers=1,
        )
    assert result["preloaded"] is True and result["import_seconds"] < 0.05, result
