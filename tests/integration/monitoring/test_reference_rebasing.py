"""Drift is judged against what the serving version learned from, and retraining requests cool down
(real Evidently, real MLflow server, real DAG runs)."""

from __future__ import annotations

import uuid

import pendulum
import pytest

pytestmark = pytest.mark.integration


def _drift_dag(dag_id, ref_uri, cur_uri, **op_kwargs):
    from airflow.sdk import DAG

    from airflow_mlpipe.core.lineage import stage_asset
    from airflow_mlpipe.operators.evidently import EvidentlyDriftOperator

    drift_asset = stage_asset("monitoring", f"{dag_id}-drift")
    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        EvidentlyDriftOperator(
            task_id="drift",
            reference_uri=ref_uri,
            current_uri=cur_uri,
            drift={"exclude_columns": ["target", "event_timestamp"], "method": "ks", "drift_share": 0.5},
            drift_asset=drift_asset,
            timestamp_column="event_timestamp",
            **op_kwargs,
        )
    return dag, drift_asset


def test_serving_versions_training_data_becomes_the_reference(
    run_dag, mlflow_conn, breast_cancer_frame, tmp_path
):
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from airflow_mlpipe.core.conventions import TAG_TRAINING_DATA_URI
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from tests.fixtures.deployment import register_model

    frame = breast_cancer_frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    features = [c for c in frame.columns if c != "target"]
    old, new = frame.iloc[: len(frame) // 2].copy(), frame.iloc[len(frame) // 2 :].copy()
    for col in features[:20]:  # the new regime: 20 of 30 features shifted
        new[col] = new[col] * 1.8 + new[col].std() * 2
    stamp = pd.Timestamp("2024-03-05", tz="UTC")
    new["event_timestamp"] = stamp + pd.to_timedelta(range(len(new)), unit="min")
    old.to_parquet(tmp_path / "configured.parquet")
    batch_uri = str(tmp_path / "batch.parquet")
    new.to_parquet(batch_uri)
    new.to_parquet(tmp_path / "retrained_on.parquet")
    hook = MlflowHook(mlflow_conn)
    client = hook.get_client()
    serving: dict[str, str] = {}
    # one model whose champion learned from the old regime, one whose champion learned from the new
    for learned_from, frame_part in (("configured", old), ("retrained_on", new)):
        name = f"rebase-{learned_from}-{uuid.uuid4().hex[:6]}"
        version = register_model(
            hook,
            name,
            LogisticRegression(max_iter=2000),
            frame_part[features],
            frame_part["target"],
            task_type="classification",
            aliases=("champion",),
        )
        client.set_model_version_tag(
            name, version, TAG_TRAINING_DATA_URI, str(tmp_path / f"{learned_from}.parquet")
        )
        serving[learned_from] = name
        serving[f"{learned_from}_version"] = version

    def judge(model_name, rebase):
        dag, asset = _drift_dag(
            f"rebase_{uuid.uuid4().hex[:6]}",
            str(tmp_path / "configured.parquet"),
            batch_uri,
            model_name=model_name,
            mlflow_conn_id=mlflow_conn,
            rebase_reference=rebase,
        )
        return run_dag(dag), asset

    # The serving version learned from the old regime: the batch drifts, and the event says from when.
    res, asset = judge(serving["configured"], True)
    summary = res.xcom("drift")
    assert summary["drift_detected"] is True and summary["retrain_recommended"] is True
    assert summary["reference"] == {
        "uri": str(tmp_path / "configured.parquet"),
        "source": "serving_training_data",
        "version": serving["configured_version"],
    }
    event = dict(res.asset_events())[asset.uri]
    assert pd.Timestamp(event["drift_since"]) == stamp
    assert event["reference"]["version"] == serving["configured_version"]

    # The serving version learned from the new regime: the same batch is no drift any more, and
    # the lineage says which reference judged it. Without rebasing, it would still drift.
    for rebase, drifted in ((True, False), (False, True)):
        summary = judge(serving["retrained_on"], rebase)[0].xcom("drift")
        assert summary["drift_detected"] is drifted, rebase
        assert summary["reference"]["source"] == ("serving_training_data" if rebase else "configured")
        assert "target" not in summary["columns"]  # the training data's label is never compared


def test_cooldown_holds_repeated_requests_while_the_same_version_serves(
    run_dag, registered, mlflow_conn, breast_cancer_frame, tmp_path
):
    frame = breast_cancer_frame.copy()
    drifted = frame.copy()
    for col in [c for c in frame.columns if c != "target"][:20]:
        drifted[col] = drifted[col] * 1.8 + drifted[col].std() * 2
    frame.to_parquet(tmp_path / "ref.parquet")
    drifted.to_parquet(tmp_path / "cur.parquet")
    model = registered("binary")
    dag, asset = _drift_dag(
        f"cool_{uuid.uuid4().hex[:6]}",
        str(tmp_path / "ref.parquet"),
        str(tmp_path / "cur.parquet"),
        model_name=model.name,
        mlflow_conn_id=mlflow_conn,
        cooldown_batches=1,
    )
    outcomes = []
    for _ in range(3):
        res = run_dag(dag)
        summary = res.xcom("drift")
        outcomes.append(
            (summary["drift_detected"], summary["retrain_recommended"], asset.uri in dict(res.asset_events()))
        )
    # every batch drifts; one request, one held batch, then the unanswered request is repeated
    assert outcomes == [(True, True, True), (True, False, False), (True, True, True)]


def test_refresh_asks_again_from_the_same_drift_once_the_retrained_version_serves(
    run_dag, registered, mlflow_conn, mlflow_server, breast_cancer_frame, tmp_path
):
    import pandas as pd
    from mlflow import MlflowClient

    frame = breast_cancer_frame.copy()
    drifted = frame.copy()
    for col in [c for c in frame.columns if c != "target"][:20]:
        drifted[col] = drifted[col] * 1.8 + drifted[col].std() * 2
    drift_day = pd.Timestamp("2024-03-05", tz="UTC")
    frame.to_parquet(tmp_path / "ref.parquet")
    for name, rows, day in (
        ("drifted", drifted, drift_day),
        ("next", frame, drift_day + pd.Timedelta(days=1)),
    ):
        rows.assign(event_timestamp=day + pd.to_timedelta(range(len(rows)), unit="s")).to_parquet(
            tmp_path / f"{name}.parquet"
        )
    model = registered("binary")  # the weak version serves (champion)
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)

    def judge(batch):
        dag, asset = _drift_dag(
            f"refresh_{model.name[-8:]}",
            str(tmp_path / "ref.parquet"),
            str(tmp_path / f"{batch}.parquet"),
            model_name=model.name,
            mlflow_conn_id=mlflow_conn,
            cooldown_batches=3,
            refresh_batches=1,
        )
        res = run_dag(dag)
        return res.xcom("drift"), dict(res.asset_events()).get(asset.uri)

    summary, event = judge("drifted")
    assert summary["retrain_reasons"] == ["data_drift"] and event is not None
    assert pd.Timestamp(event["drift_since"]) == drift_day
    # the next batch does not drift; while the version asked for has not taken over, nothing more
    summary, event = judge("next")
    assert summary["drift_detected"] is False and summary["retrain_recommended"] is False and event is None
    # the retrained version serves: the next batch asks once more, its window still from the drift
    client.set_registered_model_alias(model.name, "champion", model.versions["strong"])
    summary, event = judge("next")
    assert summary["retrain_reasons"] == ["refresh"] and summary["retrain_recommended"] is True
    assert event is not None and event["retrain_reasons"] == ["refresh"]
    assert pd.Timestamp(event["drift_since"]) == drift_day
    assert pd.Timestamp(summary["batch_start"]) == drift_day + pd.Timedelta(days=1)
    # one refresh was asked for: the batch after it asks nothing
    client.set_registered_model_alias(model.name, "champion", model.versions["weak"])
    summary, event = judge("next")
    assert summary["retrain_recommended"] is False and event is None
