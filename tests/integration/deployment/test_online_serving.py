"""A bento built with a Feast online spec, served by a real ``bentoml serve`` from a real Feast store.

One module fixture does what the pipeline does: apply the feature definitions, build the training
set point in time, train and register a model on exactly its feature columns, materialize, and
deploy the model with the training set's online spec. The tests then send entity keys only.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fixtures.features import DAYS, START, build_feast_repo

pytestmark = pytest.mark.integration

#: after every feature row: the online store's latest values are the training set's values here
AS_OF = START + dt.timedelta(days=DAYS + 1)


@dataclass
class OnlineDeployment:
    endpoint: str
    training_set: Any  # entity keys, timestamp and features, as the training set has them
    features: list[str]
    model: Any
    unknown_id: int


def _post(url: str, body: Any) -> tuple[int, Any]:
    from airflow_mlpipe.deploy.checks import post_json

    return post_json(f"{url}/predict", body)


@pytest.fixture(scope="module")
def online_deployment(tmp_path_factory: pytest.TempPathFactory, test_home) -> Iterator[OnlineDeployment]:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from airflow_mlpipe.config.deploy import CanaryConfig
    from airflow_mlpipe.config.features import MaterializeConfig, TrainingSetConfig
    from airflow_mlpipe.core.registry import load_model, resolve_model
    from airflow_mlpipe.deploy.bento import use_bentoml_home
    from airflow_mlpipe.deploy.rollout import deploy
    from airflow_mlpipe.deploy.targets.local import LocalTarget
    from airflow_mlpipe.features.definitions import apply_definitions, load_definitions
    from airflow_mlpipe.features.materialize import materialize_window
    from airflow_mlpipe.features.online import OnlineFeatureReader
    from airflow_mlpipe.features.training_set import retrieve
    from airflow_mlpipe.hooks.feast import FeastHook
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from tests.fixtures.deployment import register_model

    repo = build_feast_repo(tmp_path_factory.mktemp("feast-serving"))
    feast = FeastHook("mlpipe_feast_absent", config=repo.config)
    store = feast.get_store()
    apply_definitions(store, load_definitions(str(repo.definitions)))

    ids = sorted(int(i) for i in repo.profile["customer_id"].unique())[:60]
    entities = pd.DataFrame({"customer_id": ids, "event_timestamp": pd.Timestamp(AS_OF)})
    cfg = TrainingSetConfig(feature_service="churn_service", entity_source="entities")
    frame, info = retrieve(store, cfg, entities)
    X = frame[info.features]
    assert not X.isna().any().any(), "every chosen customer has feature values"
    y = (X["spend"] > X["spend"].median()).astype("int64")  # a label the features explain

    mlflow = MlflowHook()
    name = f"churn_online_{uuid.uuid4().hex[:6]}"
    version = register_model(
        mlflow, name, LogisticRegression(max_iter=1000), X, y, task_type="classification", label="churned"
    )
    materialize_window(store, MaterializeConfig(start=START, end=AS_OF))

    reader = OnlineFeatureReader(feast.repo_config(), info.name, version=info.version)
    assert reader.features == info.features
    spec = json.loads(json.dumps(reader.to_spec()))  # as it travels through XCom

    home = use_bentoml_home(None)
    target = LocalTarget(test_home / "deployments" / name, name="online", bentoml_home=home)
    with mlflow.activate():
        model = resolve_model(mlflow.get_client(), name, version=version)
        estimator = load_model(model)
    deploy(
        target,
        mlflow,
        model,
        smoke=None,
        canary=CanaryConfig(enabled=False),
        online_spec=spec,
        log=lambda _: None,
    )
    try:
        yield OnlineDeployment(
            endpoint=target.endpoint,
            training_set=frame,
            features=list(info.features),
            model=estimator,
            unknown_id=max(int(i) for i in repo.profile["customer_id"]) + 1000,
        )
    finally:
        target.shutdown()


def test_entities_are_scored_on_the_training_set_features(online_deployment):
    dep = online_deployment
    offline = dep.training_set.iloc[::3].reset_index(drop=True)  # 20 customers, in no special order
    keys = [{"customer_id": int(i)} for i in offline["customer_id"]]

    status, body = _post(dep.endpoint, {"entities": keys, "return_features": True})
    assert status == 200, body
    # (a) the features the service read online are the training set's values for the same entity/time
    served = body["features"]
    assert [list(row) for row in served] == [dep.features] * len(keys)
    for i, row in enumerate(offline[dep.features].to_dict(orient="records")):
        assert served[i] == pytest.approx(row), f"customer {keys[i]}"
    # (b) and the predictions are the model's on the offline rows
    assert body["predictions"] == dep.model.predict(offline[dep.features]).tolist()
    assert len(set(body["predictions"])) > 1  # a model that answers one class would prove little
    # (c) next to each label: the class probabilities and the positive-class score (binary)
    proba = dep.model.predict_proba(offline[dep.features])
    assert body["classes"] == dep.model.classes_.tolist()
    import numpy as np

    np.testing.assert_allclose(body["probabilities"], proba, rtol=1e-9)
    assert body["scores"] == pytest.approx(proba[:, 1].tolist())

    # Without the flag the answer carries predictions only; keys sent as integral floats work too.
    status, plain = _post(
        dep.endpoint, {"entities": [{"customer_id": float(k["customer_id"])} for k in keys]}
    )
    assert status == 200, plain
    assert plain["predictions"] == body["predictions"] and "features" not in plain
    assert plain["scores"] == body["scores"]
    # Sending the offline feature values themselves gives the same answer.
    status, by_rows = _post(dep.endpoint, {"rows": served})
    assert status == 200 and by_rows["predictions"] == body["predictions"]


def test_bad_entities_get_4xx_naming_the_problem(online_deployment):
    dep = online_deployment
    known = int(dep.training_set["customer_id"].iloc[0])
    cases = {
        "unknown key": ({"entities": [{"customer_id": dep.unknown_id}]}, "no online features"),
        "unknown among known": (
            {"entities": [{"customer_id": known}, {"customer_id": dep.unknown_id}]},
            "entities[1] has no online features",
        ),
        "missing key": ({"entities": [{"cust": known}]}, "lacks column(s) ['customer_id']"),
        "null key": ({"entities": [{"customer_id": None}]}, "customer_id is null"),
        "wrong key type": ({"entities": [{"customer_id": "abc"}]}, "customer_id expects long"),
        "fractional key": ({"entities": [{"customer_id": 1.5}]}, "non-integral"),
        "not an object": ({"entities": [known]}, "must be an object"),
        "empty": ({"entities": []}, "empty"),
        "both": ({"entities": [{"customer_id": known}], "rows": []}, "exactly one"),
        "bad flag": ({"entities": [{"customer_id": known}], "return_features": "yes"}, "return_features"),
    }
    for case, (body, needle) in cases.items():
        status, answer = _post(dep.endpoint, body)
        assert 400 <= status < 500, (case, status, answer)
        assert needle in json.dumps(answer), (case, answer)
    status, _ = _post(dep.endpoint, {"entities": [{"customer_id": known}]})
    assert status == 200  # the service still answers after the refusals
