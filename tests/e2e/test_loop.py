"""The whole loop on a real scheduler, as `make demo` runs it — and the same DAGs on CeleryExecutor.

First training run deploys a model that answers HTTP; a drifted batch lands; the monitoring DAG
starts from the asset watcher and detects the drift; its asset event starts retraining; the new
champion is rolled out (canary under live traffic) without failing a single client request.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlpipe_dev import churn_data as churn
from mlpipe_dev.demo.runner import MONITORING_DAG, TRAINING_DAG, Demo, DemoConfig, DemoResult
from tests.fixtures.services import fresh_database

# The loop takes 5-8 minutes on an idle 2-core machine; allow for a slow one.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]


def _check_loop(result: DemoResult) -> None:
    dags = [r["dag_id"] for r in result.runs]
    assert dags == [TRAINING_DAG, MONITORING_DAG, TRAINING_DAG]
    assert all(r["state"] == "success" for r in result.runs)
    # The retraining run was started by the drift asset event, not by a person or a cron schedule.
    assert result.runs[2]["run_id"].startswith("asset_triggered__")
    assert result.runs[1]["run_id"].startswith("asset_triggered__")

    before, after = result.champion_before, result.champion_after
    assert before["model_name"] == after["model_name"] == "churn"
    assert int(after["version"]) > int(before["version"])
    assert before["deployed"]["status"] == "deployed" and after["deployed"]["status"] == "deployed"
    assert result.prediction_before["model_version"] == str(before["version"])
    assert result.prediction_after["model_version"] == str(after["version"])
    assert len(result.prediction_after["predictions"]) == 3

    assert result.drift["drift_detected"] is True
    assert set(result.drift["drifted_columns"]) & set(churn.DRIFTED_FEATURES)
    assert not set(result.drift["drifted_columns"]) & {"region", "payment_method"}

    # Live traffic ran through the canary and the switch: every request answered.
    assert result.traffic["total"] >= 50
    assert result.traffic["failed"] == 0, result.traffic
    assert set(result.traffic["versions"]) == {str(before["version"]), str(after["version"])}

    lineage = result.lineage
    assert "error" not in lineage, lineage
    assert str(lineage["model"]["version"]) == str(after["version"])
    assert lineage["model"]["fingerprint"] == after["fingerprint"]
    assert lineage["data"]["digest"].startswith("sha256:")

    # The audit of the retrained version: the drift that caused it, the gate against the first
    # version, the rollout, every digest intact, and a page that renders offline.
    audit = result.audit
    assert "error" not in audit, audit
    assert audit["model"]["version"] == str(after["version"])
    assert any(e["extra"].get("drift_detected") for e in audit["triggered_by"]), audit["triggered_by"]
    assert audit["gate"]["champion_version"] == str(before["version"])
    assert audit["gate"]["metrics"]["champion"] and audit["gate"]["metrics"]["challenger"]
    assert audit["lifecycle"]["mlpipe.promotion.replaced_version"] == str(before["version"])
    assert audit["lifecycle"]["mlpipe.deploy.endpoint"] == result.endpoint
    assert audit["tampered"] == [] and audit["data"]["snapshot"]["digest"].startswith("sha256:")
    page = Path(audit["html_uri"].removeprefix("file://")).read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page) and "<script" not in page

    # The reference config asks a person before each promotion; the demo answered through the REST
    # API as its user, and the audit names who approved the serving version.
    assert [(a["dag_id"], a["chosen"]) for a in result.approvals] == [(TRAINING_DAG, "Approve")] * 2
    approvals = audit["approvals"]
    assert [a["chosen"] for a in approvals] == [["Approve"]], approvals
    assert approvals[0]["responded_by"], approvals


def test_loop_on_local_executor_with_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = Demo(DemoConfig(workdir=tmp_path / "demo", run_timeout=900)).run()
    _check_loop(result)
    # The live progress named every task as it started and ended (stdout is not a terminal here).
    out = capsys.readouterr().out
    for task in ("validate.check_batch", "features.training_set", "deploy.serve"):
        assert re.search(rf"▶ {re.escape(task)}\s+running", out), out[-3000:]
        assert re.search(rf"✓ {re.escape(task)}\s+success in \d+ s", out), out[-3000:]
    assert "waiting for churn_monitoring: monitoring run (asset watcher)" in out


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
    _check_loop(result)
    # The tasks really went through the broker to the two Celery workers.
    logs = [tmp_path / "demo" / "airflow" / "logs" / f"celery-worker-{i}.log" for i in (0, 1)]
    texts = [p.read_text(errors="replace") for p in logs]
    assert all("ready." in t for t in texts), "both Celery workers connected to the broker"
    received = sum(t.count("execute_workload") for t in texts)
    tasks = sum(len(r["results"]) for r in result.runs)
    assert received >= tasks > 0, (received, tasks)
