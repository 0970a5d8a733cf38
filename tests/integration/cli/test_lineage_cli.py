"""``mlpipe lineage`` against a real MLflow server and the real Airflow metadata DB."""

from __future__ import annotations

import json
import uuid

import pendulum
import pytest

from airflow_mlpipe.cli import main
from airflow_mlpipe.core import conventions as c


@pytest.fixture
def deployment_run(run_dag):
    """A real DAG run that emitted a 'deployed' asset event, as the deployment stage does."""
    from airflow.sdk import DAG, Asset
    from airflow.sdk.bases.operator import BaseOperator

    from airflow_mlpipe.operators._context import emit_asset_metadata

    name = f"churn_{uuid.uuid4().hex[:8]}"

    class Deploy(BaseOperator):
        def execute(self, context):
            emit_asset_metadata(
                context,
                self.outlets,
                {
                    "model_name": name,
                    "version": "1",
                    "deployed_at": "2024-03-01T10:00:00+00:00",
                    "status": "deployed",
                },
            )

    with DAG(f"{name}_training", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        Deploy(task_id="serve", outlets=[Asset(name=f"{name}.deployment", uri=f"mlpipe://deployment/{name}")])
    result = run_dag(dag)
    assert result.state == "success"
    return name, result.dag_run


@pytest.fixture
def registry(mlflow_server, deployment_run):
    import mlflow
    from mlflow import MlflowClient

    name, dag_run = deployment_run
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    exp = client.create_experiment(f"{name}-exp")
    mlflow.set_tracking_uri(mlflow_server)
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_params({"estimator": "sklearn.ensemble.RandomForestClassifier", "n_estimators": 50})
        mlflow.log_metric("roc_auc", 0.87)
        import pandas as pd

        ds = mlflow.data.from_pandas(
            pd.DataFrame({"a": [1, 2]}), source="file:///data/train.parquet", name="train"
        )
        mlflow.log_input(ds, context="training")
    client.create_registered_model(name)
    mv = client.create_model_version(name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    tags = {
        c.TAG_TRAINING_DATA_URI: "file:///data/train.parquet",
        c.TAG_TRAINING_DATA_DIGEST: "sha256:abc",
        c.TAG_FEATURE_SERVICE: "churn_v1",
        c.TAG_FEATURE_SERVICE_VERSION: "3",
        c.TAG_FEATURES: json.dumps(["tenure_months", "monthly_charges"]),
        c.TAG_CODE_VERSION: "0.1.0+g1234abc",
        c.TAG_TASK_TYPE: "classification",
        c.TAG_LABEL: "churned",
        c.TAG_BLESSED: "true",
        c.TAG_DEPLOY_ENDPOINT: "http://127.0.0.1:3000",
        "airflow.dag_id": dag_run.dag_id,
        "airflow.run_id": dag_run.run_id,
        "airflow.task_id": "train.register_best",
    }
    for k, v in tags.items():
        client.set_model_version_tag(name, mv.version, k, v)
    client.set_registered_model_alias(name, c.ALIAS_CHAMPION, mv.version)
    return name, mlflow_server, run.info.run_id


@pytest.mark.integration
def test_lineage_json_answers_the_provenance_questions(registry, capsys):
    name, uri, run_id = registry
    assert main(["lineage", "--model", name, "--tracking-uri", uri, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["model"]["version"] == "1" and record["model"]["alias"] == "champion"
    assert record["data"] == {"uri": "file:///data/train.parquet", "digest": "sha256:abc"}
    assert record["features"] == {
        "service": "churn_v1",
        "service_version": "3",
        "columns": ["tenure_months", "monthly_charges"],
    }
    assert record["code_version"] == "0.1.0+g1234abc"
    assert record["run"]["run_id"] == run_id
    assert record["run"]["params"]["n_estimators"] == "50"
    assert record["run"]["metrics"]["roc_auc"] == pytest.approx(0.87)
    assert record["run"]["inputs"][0]["context"] == "training"
    assert record["gate"]["blessed"] == "true"
    # when it was deployed comes from the deployment stage's asset event in the Airflow DB
    last = record["asset_events"]["last_deployment"]
    assert last["extra"]["deployed_at"] == "2024-03-01T10:00:00+00:00"
    assert last["asset"] == f"mlpipe://deployment/{name}"


@pytest.mark.integration
def test_lineage_text_and_errors(registry, capsys):
    name, uri, _ = registry
    assert main(["lineage", "--model", name, "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert f"Model     {name} version 1 (alias champion" in out
    assert "Deployed  2024-03-01T10:00:00+00:00 at http://127.0.0.1:3000" in out
    assert "param     n_estimators = 50" in out
    assert main(["lineage", "--model", name, "--alias", "previous", "--tracking-uri", uri]) == 2
    assert "has no alias 'previous'; its aliases are ['champion']" in capsys.readouterr().err
    assert main(["lineage", "--model", "no-such-model", "--tracking-uri", uri, "--no-airflow"]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.integration
def test_lineage_without_airflow_home_says_what_is_missing_and_creates_nothing(registry, tmp_path):
    import os
    import subprocess
    import sys

    name, uri, _ = registry
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["HOME"] = str(home)
    proc = subprocess.run(
        [sys.executable, "-m", "airflow_mlpipe.cli", "lineage", "--model", name, "--tracking-uri", uri],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"Model     {name} version 1" in proc.stdout  # the registry's lineage is still complete
    assert "AIRFLOW_HOME is not set" in proc.stdout and "--no-airflow" in proc.stdout
    assert "OperationalError" not in proc.stdout + proc.stderr
    assert list(home.iterdir()) == []  # no ~/airflow, no empty airflow.db
