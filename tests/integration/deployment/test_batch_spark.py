"""Batch scoring on Spark (local mode, one session for the module) against the in-process mode:
the same registry model, rows, checks, errors and output file (~55 s at load 2, most of it the
start of Spark and of its Python workers)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pendulum
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.scale]

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def spark():
    """Local mode, as the operator starts it without a connection (``local[*]``: 2 cores here)."""
    from airflow_mlpipe.config.deploy import BatchScoringConfig
    from airflow_mlpipe.deploy.spark_batch import spark_session

    with spark_session(BatchScoringConfig(engine="spark")) as session:
        yield session


@pytest.fixture(scope="module")
def binary_model(iris_frame) -> Any:
    """A binary classifier (virginica or not) in the registry, loaded as the operator loads it."""
    from sklearn.linear_model import LogisticRegression

    from airflow_mlpipe.core.registry import load_model, resolve_model
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from tests.fixtures.deployment import register_model

    hook = MlflowHook()
    name = f"virginica_{uuid.uuid4().hex[:6]}"
    X, y = iris_frame[FEATURES], (iris_frame["target"] == 2).astype(int)
    version = register_model(
        hook, name, LogisticRegression(C=0.5, max_iter=500), X, y, task_type="classification"
    )
    with hook.activate():
        entry = resolve_model(hook.get_client(), name, version=version)
        return entry, load_model(entry)


def _rows(iris_frame, copies: int = 20) -> Any:
    import pandas as pd

    frame = pd.concat([iris_frame[FEATURES]] * copies, ignore_index=True)
    frame["row_id"] = range(len(frame))
    frame["event_timestamp"] = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        frame["row_id"], unit="s"
    )
    return frame


def _write(frame, path) -> str:
    # Spark reads timestamps of at most microsecond precision (pandas writes nanoseconds)
    if str(path).endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False, coerce_timestamps="us")
    return str(path)


def _score(engine: str, binary_model, src: str, out, keep=("row_id", "event_timestamp")) -> dict:
    from airflow_mlpipe.config.deploy import BatchScoringConfig
    from airflow_mlpipe.core.storage import resolve
    from airflow_mlpipe.deploy.batch import score_dataset
    from airflow_mlpipe.deploy.spark_batch import score_dataset_spark

    entry, model = binary_model
    arguments = {
        "input_uri": src,
        "features": entry.features,
        "output_path": resolve(str(out)),
        "model_name": entry.name,
        "model_version": entry.version,
        "keep_columns": list(keep),
        "inputs": entry.inputs,
    }
    if engine == "spark":
        return score_dataset_spark(
            model, config=BatchScoringConfig(engine="spark", batch_size=700), **arguments
        )
    return score_dataset(model, batch_size=700, **arguments)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_spark_and_in_process_write_the_same_predictions(spark, binary_model, iris_frame, tmp_path, fmt):
    import numpy as np
    import pyarrow.parquet as pq

    frame = _rows(iris_frame)
    keep = ("row_id", "event_timestamp") if fmt == "parquet" else ("row_id",)
    src = _write(frame, tmp_path / f"rows.{fmt}")
    local = _score("in_process", binary_model, src, tmp_path / "local" / "predictions.parquet", keep)
    distributed = _score("spark", binary_model, src, tmp_path / "spark" / "predictions.parquet", keep)

    assert (local["engine"], distributed["engine"]) == ("in_process", "spark")
    assert local["row_count"] == distributed["row_count"] == len(frame)
    assert local["classes"] == distributed["classes"] == [0, 1]
    mine = pq.read_table(local["predictions_uri"].removeprefix("file://"))
    theirs = pq.read_table(distributed["predictions_uri"].removeprefix("file://"))
    assert (
        theirs.schema.names
        == mine.schema.names
        == [*keep, "prediction", "scores", "probabilities", "model_version"]
    )
    assert theirs.schema.equals(mine.schema, check_metadata=True), (theirs.schema, mine.schema)
    assert json.loads(theirs.schema.metadata[b"mlpipe.classes"]) == [0, 1]
    a = mine.to_pandas().sort_values("row_id").reset_index(drop=True)
    b = theirs.to_pandas().sort_values("row_id").reset_index(drop=True)
    assert b["row_id"].tolist() == list(range(len(frame)))  # every row once
    assert b["prediction"].tolist() == a["prediction"].tolist()
    assert b["scores"].tolist() == a["scores"].tolist()  # bit for bit: the same function scored both
    np.testing.assert_array_equal(np.stack(b["probabilities"]), np.stack(a["probabilities"]))
    assert set(b["model_version"].astype(str)) == {binary_model[0].version}
    if fmt == "parquet":
        assert (b["event_timestamp"] == frame["event_timestamp"]).all()
    assert 0 < a["prediction"].sum() < len(frame)  # both classes predicted: the comparison means something


def _error(engine, binary_model, src, out) -> str:
    from airflow_mlpipe.exceptions import DataError

    with pytest.raises(DataError) as caught:
        _score(engine, binary_model, src, out, keep=("row_id",))
    assert list(out.parent.iterdir()) == [], "a failed run leaves no file"
    return str(caught.value)


def test_a_missing_column_fails_alike_before_the_job(spark, binary_model, iris_frame, tmp_path):
    src = _write(_rows(iris_frame).drop(columns="petal_width"), tmp_path / "bad.parquet")
    (tmp_path / "local").mkdir()
    (tmp_path / "spark").mkdir()
    local = _error("in_process", binary_model, src, tmp_path / "local" / "p.parquet")
    distributed = _error("spark", binary_model, src, tmp_path / "spark" / "p.parquet")
    assert distributed == local
    assert "lacks column(s) ['petal_width']" in distributed


def test_numbers_stored_as_strings_are_refused_alike(spark, binary_model, iris_frame, tmp_path):
    frame = _rows(iris_frame, copies=2)
    frame["petal_width"] = frame["petal_width"].astype(str)
    src = _write(frame, tmp_path / "strings.parquet")
    (tmp_path / "local").mkdir()
    (tmp_path / "spark").mkdir()
    local = _error("in_process", binary_model, src, tmp_path / "local" / "p.parquet")
    distributed = _error("spark", binary_model, src, tmp_path / "spark" / "p.parquet")
    expected = "does not match the model's signature"
    assert expected in local and expected in distributed
    assert "rows[0].petal_width expects double, got str" in distributed


def test_a_bad_row_found_by_an_executor_fails_with_the_same_message(
    spark, binary_model, iris_frame, tmp_path
):
    """A missing value far beyond the rows the driver checks first: the UDF's DataError, reported
    by the job, becomes the task's DataError with the in-process mode's message."""
    frame = _rows(iris_frame)
    frame.loc[2500, "petal_width"] = None
    src = _write(frame, tmp_path / "gap.parquet")
    (tmp_path / "local").mkdir()
    (tmp_path / "spark").mkdir()
    local = _error("in_process", binary_model, src, tmp_path / "local" / "p.parquet")
    distributed = _error("spark", binary_model, src, tmp_path / "spark" / "p.parquet")
    assert distributed == local == f"Dataset {src} has missing values in feature column(s) ['petal_width']."


def test_the_operator_runs_the_spark_engine(spark, run_dag, binary_model, iris_frame, tmp_path):
    """Through Airflow: the engine named in the XCom summary and on the asset event."""
    import pandas as pd
    from airflow.sdk import DAG, Asset

    from airflow_mlpipe.operators.bentoml import BatchInferenceOperator

    entry = binary_model[0]
    frame = _rows(iris_frame, copies=4)
    src = _write(frame, tmp_path / "to_score.parquet")
    with DAG("batch_spark", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False) as dag:
        BatchInferenceOperator(
            task_id="score",
            model_name=entry.name,
            version=entry.version,
            input_uri=src,
            keep_columns=["row_id"],
            engine="spark",
            batch_size=200,
            outlets=[Asset(name="virginica-spark-preds", uri="mlpipe://batch/virginica-spark")],
        )
    res = run_dag(dag)
    assert res.state == "success", res.task_states
    out = res.xcom("score")
    assert (out["engine"], out["row_count"], out["classes"]) == ("spark", len(frame), [0, 1])
    assert dict(res.asset_events())["mlpipe://batch/virginica-spark"]["engine"] == "spark"
    scored = pd.read_parquet(out["predictions_uri"].removeprefix("file://"))
    assert sorted(scored["row_id"]) == list(range(len(frame)))
    assert (
        scored.sort_values("row_id")["prediction"].tolist()
        == binary_model[1].predict(frame[FEATURES]).tolist()
    )
