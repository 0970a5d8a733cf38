"""The reference churn training DAG, built by the factory from dags/config/churn.yaml, runs for real:
GE validation, Feast apply/materialize/training set, a parallel search registered in MLflow, the
gate, promotion, a BentoML deployment behind HAProxy and the stream scorer — on the churn reference
data."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import pytest
import yaml

from tests.fixtures.hitl import answering

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.integration
def test_churn_training_dag_runs_end_to_end(run_dag, tmp_path, monkeypatch, capsys, redis_url):
    from airflow_mlpipe.factories.pipelines import training_dag
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from mlpipe_dev import churn_data as churn

    data = tmp_path / "data"
    churn.write_batches(
        data, churn.ChurnSpec(seed=3, days=4, rows_per_day=250, customers=1000, drift_day=None)
    )
    monkeypatch.setenv("MLPIPE_DATA_DIR", str(data))  # read by the templates when the tasks run

    config = yaml.safe_load((ROOT / "dags" / "config" / "churn.yaml").read_text())
    cfg = copy.deepcopy(config)
    suffix = uuid.uuid4().hex[:6]
    cfg["name"] = f"churn_e2e_{suffix}"
    cfg["pattern"] = "dag"
    cfg["retries"] = 0
    cfg["training"]["model_name"] = f"churn-e2e-{suffix}"
    cfg["training"]["search"]["param_grid"] = {"model__learning_rate": [0.05, 0.2]}  # two candidates
    cfg["features"]["options"] = {}
    state = tmp_path / "deployment"
    cfg["deployment"]["options"] = {"state_dir": str(state), "deployment_name": f"churn-{suffix}"}
    # The reference stream, on the shared Redis under keys of this test only.
    assert cfg["streaming"]["enabled"] is True
    monkeypatch.setenv("MLPIPE_STREAM_REDIS_URL", redis_url)
    prefix = f"mlpipe-test-{suffix}"
    cfg["streaming"]["stream"].update(input_stream=f"{prefix}.events", output_stream=f"{prefix}.scored")
    stream_state = tmp_path / "stream"
    cfg["streaming"]["state_dir"] = str(stream_state)
    dag = training_dag(cfg)
    # the Feast definitions are found next to the DAG file, as for the real dags/churn_training.py
    dag.fileloc = str(ROOT / "dags" / "churn_training.py")

    try:
        # The reference config asks a person to approve the promotion: answered through the API.
        with answering(dag.dag_id, "evaluate.approval", "Approve", timeout=1500) as answer:
            result = run_dag(dag)
        assert not answer.errors, answer.errors
        assert result.state == "success", result.task_states
        assert result.task_states["train.search.candidate[1]"] == "success"
        training_set = result.xcom("features.training_set")
        assert training_set["feature_service"] == "churn_model"
        # the newest rows are the gate's holdout, left out of the 1,000 the model learns from
        assert training_set["row_count"] + training_set["holdout"]["rows"] == 1000
        assert training_set["holdout"]["start"] > training_set["window"]["start"]
        best = result.xcom("train.search.register_best")
        gate = result.xcom("evaluate.gate")
        assert gate["holdout_uri"] == training_set["holdout_set_uri"] != training_set["training_set_uri"]
        assert gate["blessed"] is True and gate["challenger_version"] == best["version"]
        deployed = result.xcom("deploy.serve")
        assert deployed["status"] == "deployed" and deployed["version"] == best["version"]
        client = MlflowHook().get_client()
        champion = client.get_model_version_by_alias(cfg["training"]["model_name"], "champion")
        assert str(champion.version) == best["version"]
        uris = {uri for uri, _ in result.asset_events()}
        assert f"mlpipe://deployment/{cfg['name']}.deployment" in uris
        # The deployed version also scores the stream: an event in, its prediction out.
        streamed = result.xcom("deploy.stream")
        assert streamed["status"] == "deployed" and streamed["version"] == best["version"]
        assert f"mlpipe://deployment/{cfg['name']}.stream" in uris
        _assert_stream_scores(redis_url, prefix, training_set["holdout_set_uri"], best["version"])
        assert f"mlpipe://validation/{cfg['name']}.validated" in uris

        # lineage of the serving model, read back from what the stages recorded
        from airflow_mlpipe.cli import main

        capsys.readouterr()  # drop what the run printed
        assert main(["lineage", "--model", cfg["training"]["model_name"], "--json"]) == 0
        record = json.loads(capsys.readouterr().out)
        assert record["model"]["version"] == best["version"]
        assert record["features"]["service"] == "churn_model"
        assert record["data"]["digest"] == training_set["digest"]
        assert record["airflow"]["dag_id"] == dag.dag_id
        assert record["asset_events"]["last_deployment"] is not None
    finally:
        from airflow_mlpipe.config.streaming import StreamConfig
        from airflow_mlpipe.deploy.targets.local import LocalTarget
        from airflow_mlpipe.streaming.rollout import StreamDeployment

        if state.exists():
            LocalTarget(state, name=f"churn-{suffix}").shutdown()
        if stream_state.exists():
            stream = StreamConfig.from_mapping({**cfg["streaming"]["stream"], "redis_url": redis_url})
            StreamDeployment(stream_state, stream).shutdown()
        _delete_keys(redis_url, prefix)


def _assert_stream_scores(redis_url: str, prefix: str, holdout_uri: str, version: str) -> None:
    import time

    import pandas as pd
    import redis

    from mlpipe_dev import churn_data as churn

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    rows = pd.read_parquet(holdout_uri).head(5)
    features = [
        c
        for c in rows.columns
        if c not in (churn.ENTITY, churn.TIMESTAMP, churn.LABEL_TIMESTAMP, churn.LABEL)
    ]
    for i, row in enumerate(json.loads(rows[features].to_json(orient="records"))):
        client.xadd(f"{prefix}.events", {"event_id": f"e{i}", "data": json.dumps(row)})
    deadline = time.monotonic() + 60
    while client.xlen(f"{prefix}.scored") < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    scored = [fields for _, fields in client.xrange(f"{prefix}.scored")]
    assert sorted(s["event_id"] for s in scored) == [f"e{i}" for i in range(5)]
    assert {s["model_version"] for s in scored} == {version}
    assert not client.exists(f"{prefix}.events.dead")


def _delete_keys(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
