"""The training operators in real DAG runs (dag.test on the real metadata DB)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pendulum
import pytest

pytestmark = pytest.mark.integration
PASSWORD = "pw-" + uuid.uuid4().hex


def test_train_operator_on_http_server_pushes_link_asset_and_keeps_password_secret(
    run_dag, mlflow_server, training_files, monkeypatch, capfd, caplog, test_home
):
    from airflow.sdk import DAG, Asset

    from airflow_mlpipe.operators.mlflow import MlflowTrainModelOperator

    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_SECURED",
        json.dumps(
            {"conn_type": "mlpipe_mlflow", "host": mlflow_server, "login": "trainer", "password": PASSWORD}
        ),
    )
    name = f"dag-model-{uuid.uuid4().hex[:6]}"
    asset = Asset(name="trained", uri=f"mlpipe://training/{name}")
    with DAG(
        f"train_{name}".replace("-", "_"), schedule=None, start_date=pendulum.datetime(2024, 1, 1)
    ) as dag:
        MlflowTrainModelOperator(
            task_id="train",
            training_set=str(training_files["binary"]),
            model_name=name,
            estimator="sklearn.ensemble.RandomForestClassifier",
            estimator_params={"n_estimators": 10},
            label_column="target",
            mlflow_conn_id="mlflow_secured",
            outlets=[asset],
        )
    res = run_dag(dag)
    assert res.state == "success", res.task_states
    result = res.xcom("train")
    assert result["model_uri"] == f"models:/{name}/1" and result["cached"] is False
    link = res.xcom("train", key="mlflow_run_url")
    assert link.startswith(mlflow_server) and result["run_id"] in link
    ((uri, extra),) = [e for e in res.asset_events() if e[0] == asset.uri]
    assert extra["version"] == "1" and extra["fingerprint"] == result["fingerprint"]
    assert result["params"] == {"n_estimators": 10}

    # the password reached neither XCom, nor the logs, nor the MLflow run
    out, err = capfd.readouterr()
    logs = "".join(p.read_text(errors="ignore") for p in Path(os.environ["AIRFLOW_HOME"]).rglob("*.log"))
    assert PASSWORD not in json.dumps(result) + str(res.xcom("train", key="mlflow_run_url"))
    assert PASSWORD not in out + err + caplog.text + logs
    from airflow_mlpipe.hooks.mlflow import MlflowHook

    run = MlflowHook("mlflow_secured").get_client().get_run(result["run_id"])
    assert PASSWORD not in json.dumps({**run.data.params, **run.data.tags})


def test_search_maps_one_task_per_candidate_and_registers_only_the_best(run_dag, training_files):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from airflow_mlpipe.operators.mlflow import training_search_tasks

    name = f"search-{uuid.uuid4().hex[:6]}"
    with DAG(
        f"search_{name}".replace("-", "_"), schedule=None, start_date=pendulum.datetime(2024, 1, 1)
    ) as dag:
        search = training_search_tasks(
            training_set=str(training_files["regression"]),
            model_name=name,
            estimator="sklearn.linear_model.Ridge",
            search={"param_grid": {"alpha": [0.01, 100.0, 1000.0]}, "metric": "rmse"},
            label_column="target",
        )
        done = EmptyOperator(task_id="done")
        search >> done
    assert search.group.group_id == "training_search"
    assert dag.get_task("done").upstream_task_ids == {"training_search.register_best"}
    res = run_dag(dag)
    assert res.state == "success", res.task_states
    assert res.task_states["done"] == "success"
    mapped = sorted(k for k in res.task_states if k.startswith("training_search.candidate["))
    assert len(mapped) == 3
    candidates = [res.xcom("training_search.candidate", map_index=i) for i in range(3)]
    best = res.xcom("training_search.register_best")
    rmses = {c["params"]["alpha"]: c["metrics"]["rmse"] for c in candidates}
    assert best["params"]["alpha"] == min(rmses, key=rmses.get)  # minimize rmse
    assert best["search"]["direction"] == "minimize" and best["version"] == "1"

    hook = MlflowHook("no_such_connection_embedded")
    client = hook.get_client()
    assert len(client.search_model_versions(f"name = '{name}'")) == 1
    parent_id = res.xcom("training_search.start")[0]["parent_run"]["parent_run_id"]
    assert best["search"]["parent_run_id"] == parent_id
    for c in candidates:
        assert client.get_run(c["run_id"]).data.tags["mlflow.parentRunId"] == parent_id
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_rmse"] == min(rmses.values())
    assert str(client.get_model_version_by_alias(name, "challenger").run_id) == best["run_id"]
