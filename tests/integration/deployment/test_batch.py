"""Batch scoring through the operator on the real Airflow DB, against a registry model."""

from __future__ import annotations

import pendulum
import pytest

pytestmark = pytest.mark.integration


def _dag(dag_id, op):
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False) as dag:
        dag.add_task(op)
    return dag


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_batch_inference_matches_predict(run_dag, iris_registered, tmp_path, fmt):
    import pandas as pd
    import pyarrow.parquet as pq
    from airflow.sdk import Asset

    from airflow_mlpipe.core.registry import load_model, resolve_model
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from airflow_mlpipe.operators.bentoml import BatchInferenceOperator

    frame = pd.concat([iris_registered.X] * 20, ignore_index=True)
    frame["row_id"] = range(len(frame))
    src = tmp_path / f"to_score.{fmt}"
    frame.to_parquet(src, index=False) if fmt == "parquet" else frame.to_csv(src, index=False)
    asset = Asset(name="iris-preds", uri="mlpipe://batch/iris")
    op = BatchInferenceOperator(
        task_id="score",
        model_name=iris_registered.name,
        version=iris_registered.versions[1],
        input_uri=str(src),
        keep_columns=["row_id"],
        batch_size=700,
        outlets=[asset],
    )
    res = run_dag(_dag(f"batch_{fmt}", op))
    assert res.state == "success", res.task_states
    out = res.xcom("score")
    assert out["row_count"] == len(frame) and out["version"] == iris_registered.versions[1]
    table = pq.read_table(out["predictions_uri"].removeprefix("file://"))
    assert table.schema.metadata[b"mlpipe.model_version"] == iris_registered.versions[1].encode()
    got = table.to_pandas()
    hook = MlflowHook()
    with hook.activate():
        model = load_model(
            resolve_model(hook.get_client(), iris_registered.name, version=iris_registered.versions[1])
        )
    assert got["row_id"].tolist() == frame["row_id"].tolist()
    assert got["prediction"].tolist() == model.predict(iris_registered.X.iloc[got["row_id"] % 150]).tolist()
    assert set(got["model_version"].astype(str)) == {iris_registered.versions[1]}
    # the class probabilities beside the label, ordered as the recorded classes (multiclass: no scores)
    import json

    import numpy as np

    classes = json.loads(table.schema.metadata[b"mlpipe.classes"])
    assert out["classes"] == classes == [0, 1, 2] and "scores" not in got.columns
    probabilities = np.array(got["probabilities"].tolist())
    assert probabilities.shape == (len(frame), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)
    assert (np.array(classes)[probabilities.argmax(axis=1)] == got["prediction"].to_numpy()).all()
    assert dict(res.asset_events())["mlpipe://batch/iris"]["row_count"] == len(frame)


def test_batch_inference_missing_column_fails_without_output(run_dag, iris_registered, tmp_path):
    from airflow_mlpipe.operators.bentoml import BatchInferenceOperator

    src = tmp_path / "bad.parquet"
    iris_registered.X.drop(columns="petal_width").to_parquet(src, index=False)
    op = BatchInferenceOperator(
        task_id="score",
        model_name=iris_registered.name,
        version=iris_registered.versions[0],
        input_uri=str(src),
    )
    res = run_dag(_dag("batch_bad", op))
    assert res.task_states["score"] == "failed"
    assert res.xcom("score") is None
    assert res.asset_events() == []


def test_batch_inference_appends_its_predictions_to_the_prediction_log(run_dag, iris_registered, tmp_path):
    """What monitoring later joins with labels: keys, event time, prediction, version (~5 s)."""
    import pandas as pd

    from airflow_mlpipe.exceptions import ConfigError
    from airflow_mlpipe.monitoring.prediction_log import read_log
    from airflow_mlpipe.operators.bentoml import BatchInferenceOperator

    frame = iris_registered.X.copy()
    frame["row_id"] = range(len(frame))
    frame["event_timestamp"] = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        frame["row_id"], unit="min"
    )
    frame.to_parquet(tmp_path / "to_score.parquet", index=False)
    log = {"uri": str(tmp_path / "log"), "keys": ["row_id"], "timestamp_column": "event_timestamp"}
    with pytest.raises(ConfigError, match="add them to keep_columns"):
        BatchInferenceOperator(task_id="x", model_name="m", input_uri="x", prediction_log=log)
    op = BatchInferenceOperator(
        task_id="score",
        model_name=iris_registered.name,
        version=iris_registered.versions[1],
        input_uri=str(tmp_path / "to_score.parquet"),
        keep_columns=["row_id", "event_timestamp"],
        batch_size=60,
        prediction_log=log,
    )
    res = run_dag(_dag("batch_logged", op))
    assert res.state == "success", res.task_states
    out = res.xcom("score")
    assert out["prediction_log"] == {"uri": log["uri"], "rows": len(frame)}
    logged = read_log(log["uri"]).sort_values("row_id").reset_index(drop=True)
    scored = pd.read_parquet(out["predictions_uri"].removeprefix("file://"))
    assert logged["row_id"].tolist() == frame["row_id"].tolist()
    assert logged["prediction"].tolist() == scored.sort_values("row_id")["prediction"].tolist()
    assert (logged["event_timestamp"] == frame["event_timestamp"]).all()
    assert set(logged["model_version"]) == {iris_registered.versions[1]}
