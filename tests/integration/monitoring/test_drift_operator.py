"""EvidentlyDriftOperator through dag.test() on the real metadata DB: summary, report, asset events."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pendulum
import pytest

from airflow_mlpipe.core.links import report_url

pytestmark = pytest.mark.integration


def _split(frame: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    half = len(shuffled) // 2
    return shuffled.iloc[:half].reset_index(drop=True), shuffled.iloc[half:].reset_index(drop=True)


def _drifted(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for col in columns:
        out[col] = out[col] * 1.8 + out[col].std() * 2
    return out


def _dags(dag_id: str, ref_uri: str, cur_uri: str, **op_kwargs):
    from airflow.sdk import DAG, task

    from airflow_mlpipe.core.lineage import stage_asset
    from airflow_mlpipe.operators.evidently import EvidentlyDriftOperator

    drift_asset = stage_asset("monitoring", f"{dag_id}-drift")
    checked = stage_asset("monitoring", f"{dag_id}-checked")
    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        EvidentlyDriftOperator(
            task_id="drift",
            reference_uri=ref_uri,
            current_uri=cur_uri,
            drift_asset=drift_asset,
            outlets=[checked],
            **op_kwargs,
        )
    with DAG(
        f"{dag_id}_retrain", schedule=[drift_asset], start_date=pendulum.datetime(2024, 1, 1)
    ) as retrain:

        @task
        def retrain_model():
            return "ok"

        retrain_model()
    return dag, retrain, drift_asset, checked


def _serialize_unpaused(dag) -> None:
    """Serialize a consumer DAG and unpause it: asset events only queue runs of unpaused DAGs."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    from airflow_mlpipe.dagtest import serialize_dag

    serialize_dag(dag)
    with create_session() as session:
        session.query(DagModel).filter(DagModel.dag_id == dag.dag_id).update({"is_paused": False})


def _queued_runs(dag_id: str) -> int:
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.query(AssetDagRunQueue).filter(AssetDagRunQueue.target_dag_id == dag_id).count()


def test_drift_emits_retrain_event_and_no_drift_does_not(run_dag, breast_cancer_frame, tmp_path):
    ref, cur = _split(breast_cancer_frame)
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "same.parquet")
    features = [c for c in ref.columns if c != "target"]
    _drifted(cur, features[:20]).to_parquet(tmp_path / "drifted.parquet")
    drift = {"exclude_columns": ["target"], "method": "ks", "drift_share": 0.5}

    # No drift: summary says so, the "checked" asset gets an event, the drift asset none.
    dag, retrain, drift_asset, checked = _dags(
        "mon_nodrift", str(tmp_path / "ref.parquet"), str(tmp_path / "same.parquet"), drift=drift
    )
    _serialize_unpaused(retrain)
    res = run_dag(dag)
    assert res.state == "success"
    summary = res.xcom("drift")
    assert summary["drift_detected"] is False
    assert summary["retrain_recommended"] is False
    assert summary["drift_share"] < 0.5
    assert set(summary["columns"]) == set(features)
    assert all(c["method"] == "ks" and c["direction"] == "at_or_below" for c in summary["columns"].values())
    uris = [uri for uri, _ in res.asset_events()]
    assert checked.uri in uris and drift_asset.uri not in uris
    assert _queued_runs(retrain.dag_id) == 0
    assert res.xcom("drift", key="mlpipe_drift_report") == report_url(summary["report_uri"])

    # Drift: 20 of 30 features shifted -> share >= 0.5, one event on the drift asset, retrain queued.
    dag, retrain, drift_asset, checked = _dags(
        "mon_drift", str(tmp_path / "ref.parquet"), str(tmp_path / "drifted.parquet"), drift=drift
    )
    _serialize_unpaused(retrain)
    res = run_dag(dag)
    summary = res.xcom("drift")
    assert summary["drift_detected"] is True
    assert summary["retrain_reasons"] == ["data_drift"]
    assert set(summary["drifted_columns"]) >= set(features[:20])
    for col in features[:20]:
        entry = summary["columns"][col]
        assert entry["statistic"] <= entry["threshold"]  # a p-value: drift when small
    events = dict(res.asset_events())
    assert events[drift_asset.uri]["drift_detected"] is True
    assert events[drift_asset.uri]["report_uri"] == summary["report_uri"]
    assert _queued_runs(retrain.dag_id) == 1
    report = summary["report_uri"].removeprefix("file://")
    with open(report) as fh:
        assert "<html" in fh.read(2000).lower()


def test_distance_method_and_prediction_drift_and_quality(run_dag, iris_frame, tmp_path):
    """PSI (a distance: drift when large), prediction drift and live quality degradation (multiclass)."""
    ref, cur = _split(pd.concat([iris_frame] * 4, ignore_index=True))
    ref = ref.assign(prediction=ref["target"])
    rng = np.random.default_rng(1)
    # The model got worse: 40% of live predictions are wrong and skewed to class 2.
    wrong = rng.random(len(cur)) < 0.4
    cur = cur.assign(prediction=np.where(wrong, 2, cur["target"]))
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    dag, _, drift_asset, _ = _dags(
        "mon_quality",
        str(tmp_path / "ref.parquet"),
        str(tmp_path / "cur.parquet"),
        drift={"method": "psi", "prediction_column": "prediction", "prediction_method": "psi"},
        quality={"label_column": "target", "prediction_column": "prediction", "metrics": ["accuracy"]},
        baseline_metrics={"test_accuracy": 0.96},
    )
    res = run_dag(dag)
    summary = res.xcom("drift")
    assert "target" not in summary["columns"] and "prediction" not in summary["columns"]
    assert all(c["direction"] == "at_or_above" for c in summary["columns"].values())
    assert summary["drift_detected"] is False  # features are an unshifted sample
    pred = summary["prediction_drift"]
    assert pred["column"] == "prediction" and pred["drifted"] is True
    assert pred["statistic"] >= pred["threshold"]
    quality = summary["quality"]
    assert quality["judged"] is True and quality["degraded"] is True
    acc = quality["metrics"]["accuracy"]
    assert acc["baseline"] == 0.96 and acc["live"] < 0.8 and acc["degradation"] > 0.05
    assert summary["retrain_reasons"] == ["prediction_drift", "quality"]
    assert drift_asset.uri in dict(res.asset_events())


def test_empty_or_corrupt_batch_fails_clearly(run_dag, diabetes_frame, tmp_path):
    ref, _ = _split(diabetes_frame)
    ref.to_parquet(tmp_path / "ref.parquet")
    ref.iloc[:0].to_parquet(tmp_path / "empty.parquet")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 not really parquet")
    for name in ("empty", "corrupt"):
        dag, _, drift_asset, checked = _dags(
            f"mon_{name}", str(tmp_path / "ref.parquet"), str(tmp_path / f"{name}.parquet")
        )
        res = run_dag(dag)
        assert res.task_states["drift"] == "failed"
        assert res.xcom("drift") is None
        assert res.asset_events() == []  # a failed check emits nothing, least of all "no drift"
