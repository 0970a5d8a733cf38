"""Performance-triggered retraining: logged predictions + labels that arrived later → live quality →
the same drift asset event that data drift emits, with the reason ``quality``.

dag.test() on the real metadata DB, no data drift in either batch (the batch equals the
reference), so only the served predictions' quality decides. ~25 s (two Evidently reports).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from airflow_mlpipe.monitoring.prediction_log import write_log
from tests.integration.monitoring.test_drift_operator import _dags, _queued_runs, _serialize_unpaused

pytestmark = pytest.mark.integration


def _log_and_labels(tmp_path, name: str, *, ranking: bool) -> dict:
    """300 predictions two days ago, their labels an hour later; scores that rank the labels well
    (``ranking``) or that carry no information."""
    rng = np.random.default_rng(7)
    n = 300
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    labels = rng.integers(0, 2, n)
    scores = np.clip(labels * 0.6 + rng.normal(0.2, 0.15, n), 0, 1) if ranking else rng.random(n)
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "event_timestamp": pd.Timestamp(t0) + pd.to_timedelta(rng.integers(0, 3600, n), unit="s"),
            "prediction": (scores >= 0.5).astype("int64"),
            "score": scores,
        }
    )
    log_uri = str(tmp_path / name / "log")
    write_log(frame, log_uri, keys=["customer_id"], model_version="4", score_column="score")
    label_table = pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "label_timestamp": frame["event_timestamp"] + pd.Timedelta(hours=1),
            "churned": labels,
        }
    )
    (tmp_path / name / "labels").mkdir()
    label_table.to_parquet(tmp_path / name / "labels" / "day.parquet")
    return {
        "uri": log_uri,
        "labels_uri": str(tmp_path / name / "labels"),
        "keys": ["customer_id"],
        "label_column": "churned",
        "label_timestamp_column": "label_timestamp",
        "label_delay_seconds": 6 * 3600,
    }


@pytest.mark.parametrize("ranking", [True, False], ids=["no-drop", "quality-drop"])
def test_a_quality_drop_asks_for_retraining_and_no_drop_does_not(
    run_dag, breast_cancer_frame, tmp_path, ranking
):
    batch = tmp_path / "batch.parquet"
    breast_cancer_frame.drop(columns="target").to_parquet(batch)
    dag_id = f"perf_{'ok' if ranking else 'drop'}"
    dag, retrain, drift_asset, _ = _dags(
        dag_id,
        str(batch),
        str(batch),
        drift={"method": "ks", "drift_share": 0.5},
        quality={
            "label_column": "label",
            "prediction_column": "prediction",
            "score_column": "score",
            "metrics": ["roc_auc"],
            "max_degradation": 0.1,
        },
        baseline_metrics={"roc_auc": 0.9},
        prediction_log=_log_and_labels(tmp_path, dag_id, ranking=ranking),
    )
    _serialize_unpaused(retrain)
    res = run_dag(dag)
    assert res.state == "success"
    summary = res.xcom("drift")
    assert summary["drift_detected"] is False
    quality = summary["quality"]
    assert quality["judged"] is True and quality["source"] == "prediction_log"
    assert quality["join"]["judged"] == quality["labelled_rows"] == 300
    live = quality["metrics"]["roc_auc"]["live"]
    events = dict(res.asset_events())
    if ranking:
        assert live > 0.9 and quality["degraded"] is False
        assert summary["retrain_reasons"] == [] and summary["retrain_recommended"] is False
        assert drift_asset.uri not in events
        assert _queued_runs(retrain.dag_id) == 0
    else:
        assert live < 0.7 and quality["degraded"] is True
        assert summary["retrain_reasons"] == ["quality"] and summary["retrain_recommended"] is True
        event = events[drift_asset.uri]
        assert event["retrain_reasons"] == ["quality"]
        assert event["quality"]["metrics"]["roc_auc"]["live"] == pytest.approx(live)
        assert _queued_runs(retrain.dag_id) == 1
