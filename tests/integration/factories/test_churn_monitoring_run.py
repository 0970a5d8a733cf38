"""The scheduled churn monitoring DAG runs for real on a drifted batch: the sensor finds it, the claim
takes it once, GE validates it, Evidently finds the injected drift and a training run is triggered."""

from __future__ import annotations

import copy
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.integration
def test_scheduled_monitoring_detects_the_injected_drift(run_dag, tmp_path, monkeypatch):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from airflow_mlpipe.factories.pipelines import monitoring_dag, training_dag
    from mlpipe_dev import churn_data as churn
    from tests.fixtures.airflow import _serialize

    data = tmp_path / "data"
    spec = churn.ChurnSpec(seed=5, days=4, rows_per_day=300, customers=1000, drift_day=3)
    churn.write_batches(data, spec)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    shutil.copy(data / "features" / "2024-01-04.parquet", incoming / "2024-01-04.parquet")  # drifted day
    monkeypatch.setenv("MLPIPE_DATA_DIR", str(data))

    cfg = copy.deepcopy(yaml.safe_load((ROOT / "dags" / "config" / "churn.yaml").read_text()))
    cfg["name"] = f"churn_mon_{uuid.uuid4().hex[:6]}"
    cfg["pattern"] = "dag"
    cfg["retries"] = 0
    cfg["monitoring"]["watch_path"] = str(incoming)
    cfg["monitoring"]["poll_interval_seconds"] = 1
    _serialize(training_dag(cfg))  # the DAG the retraining request triggers
    dag = monitoring_dag(cfg)

    result = run_dag(dag)
    assert result.state == "success", result.task_states
    claim = result.xcom("detect.claim_batch")
    assert claim["paths"] == [f"file://{incoming}/2024-01-04.parquet"]
    drift = result.xcom("monitor.drift")
    assert drift["drift_detected"] is True
    assert set(churn.DRIFTED_FEATURES) & set(drift["drifted_columns"])
    assert "region" not in drift["drifted_columns"]  # an undrifted feature stays quiet
    assert result.task_states["retrain.trigger_training"] == "success"
    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == f"{cfg['name']}_training").all()
    assert len(runs) == 1 and runs[0].conf["reason"] == "drift"

    # the same batch is never processed twice: a second run skips after the claim
    again = run_dag(dag)
    assert again.task_states["detect.claim_batch"] == "skipped"
    assert again.task_states["monitor.drift"] == "skipped"
