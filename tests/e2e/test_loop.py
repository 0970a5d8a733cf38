"""The same DAGs on CeleryExecutor with PostgreSQL and Redis (the LocalExecutor + SQLite run, which
the browser tests share, is in ``loop/``).

First training run deploys a model that answers HTTP; a drifted batch lands; the monitoring DAG
starts from the asset watcher and detects the drift; its asset event starts retraining; the new
champion is rolled out (canary under live traffic) without failing a single client request.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlpipe_dev.demo.runner import Demo, DemoConfig
from tests.e2e.checks import check_loop
from tests.fixtures.services import fresh_database

# The loop takes 5-8 minutes on an idle 2-core machine; allow for a slow one.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]


@pytest.fixture
def postgres_database(postgres_dsn: str) -> Iterator[str]:
    """A fresh PostgreSQL database for the Airflow metadata DB, dropped afterwards."""
    with fresh_database(postgres_dsn, "mlpipe_e2e") as name:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"


def test_same_loop_on_celery_executor_with_postgres_and_redis(
    tmp_path: Path, postgres_database: str, redis_url: str
) -> None:
    """Scaling out is configuration: the same DAGs, two Celery workers, PostgreSQL and Redis."""
    db = random.SystemRandom().randint(8, 15)
    broker = redis_url.rsplit("/", 1)[0] + f"/{db}"
    cfg = DemoConfig(
        workdir=tmp_path / "demo",
        executor="CeleryExecutor",
        sql_alchemy_conn=postgres_database,
        celery_broker_url=broker,
        run_timeout=900,
    )
    result = Demo(cfg).run()
    check_loop(result)
    # The tasks really went through the broker to the two Celery workers.
    logs = [tmp_path / "demo" / "airflow" / "logs" / f"celery-worker-{i}.log" for i in (0, 1)]
    texts = [p.read_text(errors="replace") for p in logs]
    assert all("ready." in t for t in texts), "both Celery workers connected to the broker"
    received = sum(t.count("execute_workload") for t in texts)
    tasks = sum(len(r["results"]) for r in result.runs)
    assert received >= tasks > 0, (received, tasks)
