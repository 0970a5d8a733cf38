"""A string feature through training, the gate and serving, with a plain estimator from the config:
the training stage one-hot encodes it, the gate scores the holdout as it is, and the served API
takes the string column (a value never seen in training included)."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest

from airflow_mlpipe.config.training import EstimatorConfig, RegistryConfig, TrainingConfig
from airflow_mlpipe.exceptions import DataError
from airflow_mlpipe.hooks.mlflow import MlflowHook
from airflow_mlpipe.training.train import train_model

pytestmark = pytest.mark.integration
ESTIMATOR = "sklearn.ensemble.RandomForestClassifier"


def _frame(rows: int, seed: int):
    """Wine-quality-like rows: two numbers and a region (text) that carries most of the signal."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    region = rng.choice(["coastal", "valley", "hills", "plateau"], size=rows)
    alcohol = rng.normal(11, 1.2, rows).round(2)
    acidity = rng.normal(3.3, 0.2, rows).round(3)
    good = (np.isin(region, ["coastal", "hills"]) & (rng.random(rows) < 0.9)) | (rng.random(rows) < 0.05)
    return pd.DataFrame({"alcohol": alcohol, "acidity": acidity, "region": region, "good": good.astype(int)})


def _train(hook, path, name, **training):
    return train_model(
        hook,
        source=str(path),
        estimator=EstimatorConfig(ESTIMATOR, {"n_estimators": 30}),
        training=TrainingConfig(label="good", **training),
        registry=RegistryConfig(name),
        ids={"airflow.dag_id": "categorical", "airflow.run_id": "r1", "airflow.task_id": "train"},
        code="c1",
    )


def _post(url: str, body: object) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"{url}/predict", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_string_feature_is_encoded_gated_and_served(tmp_path, test_home):
    from airflow_mlpipe.config.deploy import CanaryConfig, SmokeTestConfig
    from airflow_mlpipe.config.evaluation import GateConfig
    from airflow_mlpipe.core.registry import resolve_model
    from airflow_mlpipe.deploy.bento import use_bentoml_home
    from airflow_mlpipe.deploy.rollout import deploy
    from airflow_mlpipe.deploy.targets.local import LocalTarget
    from airflow_mlpipe.evaluation.gate import evaluate
    from tests.fixtures.deployment import load_factor

    hook = MlflowHook()
    train_path, holdout_path = tmp_path / "train.parquet", tmp_path / "holdout.parquet"
    _frame(600, seed=1).to_parquet(train_path, index=False)
    holdout = _frame(200, seed=2)
    holdout.to_parquet(holdout_path, index=False)
    name = f"wine_{uuid.uuid4().hex[:6]}"

    # The guard: handed the text column as it is, the estimator cannot learn from it.
    with pytest.raises(DataError, match="could not be fitted"):
        _train(hook, train_path, name, encode_categorical=False)

    result = _train(hook, train_path, name)
    assert result["metrics"]["accuracy"] > 0.8
    run = hook.get_client().get_run(result["run_id"])
    assert json.loads(run.data.params["training.encoded_columns"]) == ["region"]

    with hook.activate():
        outcome = evaluate(
            hook.get_client(),
            model_name=name,
            holdout_uri=str(holdout_path),
            config=GateConfig(criteria=["accuracy >= 0.8"], label="good"),
        )
    assert outcome.blessed, outcome.results

    target = LocalTarget(
        test_home / "deployments" / name,
        name=name,
        bentoml_home=use_bentoml_home(None),
        ready_timeout=60 * load_factor(),
    )
    try:
        with hook.activate():
            model = resolve_model(hook.get_client(), name, version=result["version"])
        deploy(
            target, hook, model, smoke=SmokeTestConfig(str(holdout_path)), canary=CanaryConfig(enabled=False)
        )
        rows = holdout.drop(columns="good").head(3).to_dict(orient="records")
        rows.append({**rows[0], "region": "an unseen region"})
        status, body = _post(target.endpoint, {"rows": rows})
        assert status == 200, body
        assert len(body["predictions"]) == 4
        status, body = _post(target.endpoint, {"rows": [{**rows[0], "region": 7}]})
        assert 400 <= status < 500 and "region" in json.dumps(body), body
    finally:
        target.shutdown()
