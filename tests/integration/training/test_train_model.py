"""The training path against the embedded SQLite MLflow store: metrics, registry, cache, faults."""

from __future__ import annotations

import json
import uuid

import pytest

from airflow_mlpipe.config.training import EstimatorConfig, RegistryConfig, TrainingConfig
from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.exceptions import ConfigError, DataError
from airflow_mlpipe.hooks.mlflow import MlflowHook
from airflow_mlpipe.training.train import train_model

pytestmark = pytest.mark.integration
FACTORIES = "tests.integration.training.factories"


def _ids(run: str = "run1", task: str = "train") -> dict[str, str]:
    return {"airflow.dag_id": "training_tests", "airflow.run_id": run, "airflow.task_id": task}


def _name() -> str:
    return f"model-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def hook() -> MlflowHook:
    return MlflowHook("no_such_connection_embedded")


def _train(hook, source, estimator, params=None, *, name=None, ids=None, **kw):
    registry_kw = {
        k: kw.pop(k)
        for k in list(kw)
        if k in ("reuse_cached", "serialization_format", "trusted_type_prefixes")
    }
    return train_model(
        hook,
        source=str(source),
        estimator=EstimatorConfig(estimator, params or {}),
        training=TrainingConfig(**{"label": "target", **kw}),
        registry=RegistryConfig(name or _name(), **registry_kw),
        ids=ids or _ids(),
        code="test-code",
    )


def test_binary_pipeline_factory_registers_challenger_loadable_by_gate_and_deploy(
    hook, training_files, breast_cancer_frame
):
    links = []
    name = _name()
    result = train_model(
        hook,
        source=str(training_files["binary"]),
        estimator=EstimatorConfig(f"{FACTORIES}.scaled_logistic_regression", {"clf__C": 0.5}),
        training=TrainingConfig(label="target"),
        registry=RegistryConfig(name),
        ids=_ids(),
        code="c1",
        on_run=lambda run_id, url: links.append((run_id, url)),
    )
    assert result["task_type"] == "classification" and result["cached"] is False
    assert set(result["metrics"]) == {"accuracy", "f1", "roc_auc", "log_loss"}
    assert result["metrics"]["accuracy"] > 0.9
    assert result["model_uri"] == f"models:/{name}/{result['version']}"
    assert links and links[0][0] == result["run_id"] and result["run_id"] in links[0][1]
    json.dumps(result)  # XCom-safe

    features = [c for c in breast_cancer_frame.columns if c != "target"]
    with hook.activate() as mlflow:
        client = hook.get_client()
        mv = client.get_model_version_by_alias(name, cv.ALIAS_CHALLENGER)
        assert str(mv.version) == result["version"]
        tags = mv.tags
        assert tags[cv.TAG_FINGERPRINT] == result["fingerprint"]
        assert tags[cv.TAG_TASK_TYPE] == "classification" and tags[cv.TAG_LABEL] == "target"
        assert json.loads(tags[cv.TAG_FEATURES]) == features
        assert tags[cv.TAG_TRAINING_DATA_DIGEST].startswith("sha256:")
        assert tags[cv.TAG_CODE_VERSION] == "c1" and tags["airflow.dag_id"] == "training_tests"
        run = client.get_run(result["run_id"])
        assert run.data.params["clf__C"] == "0.5" and run.data.tags["mlpipe.env.sklearn"]
        assert (
            run.inputs.dataset_inputs[0].dataset.source
            and "binary.parquet" in run.inputs.dataset_inputs[0].dataset.source
        )
        model = mlflow.sklearn.load_model(f"models:/{name}@challenger")
        proba = model.predict_proba(breast_cancer_frame[features].head(3))
        assert proba.shape == (3, 2)
        pyfunc = mlflow.pyfunc.load_model(result["model_uri"])
        assert len(pyfunc.predict(breast_cancer_frame[features].head(4))) == 4
        assert pyfunc.metadata.flavors["sklearn"]["serialization_format"] == "skops"
        assert pyfunc.metadata.get_input_schema().input_names() == features


def test_multiclass_cross_validation_is_deterministic(hook, training_files):
    kw = dict(cv_folds=3, reuse_cached=False)
    first = _train(
        hook,
        training_files["multiclass"],
        "sklearn.ensemble.RandomForestClassifier",
        {"n_estimators": 15},
        **kw,
    )
    again = _train(
        hook,
        training_files["multiclass"],
        "sklearn.ensemble.RandomForestClassifier",
        {"n_estimators": 15},
        ids=_ids("run2"),
        **kw,
    )
    assert set(first["metrics"]) == {"accuracy", "f1", "roc_auc", "log_loss"}
    assert first["metrics"] == again["metrics"]
    assert first["fingerprint"] == again["fingerprint"]
    assert first["run_id"] != again["run_id"]


def test_regression_metrics_and_cache_reuse(hook, training_files, caplog):
    name = _name()
    first = _train(
        hook, training_files["regression"], "sklearn.linear_model.Ridge", {"alpha": 1.0}, name=name
    )
    assert first["task_type"] == "regression" and set(first["metrics"]) == {"rmse", "mae", "r2"}
    caplog.set_level("INFO")
    second = _train(
        hook,
        training_files["regression"],
        "sklearn.linear_model.Ridge",
        {"alpha": 1.0},
        name=name,
        ids=_ids("run-later"),
    )
    assert second["cached"] is True and second["version"] == first["version"]
    assert second["metrics"] == first["metrics"]
    assert "Reusing cached model" in caplog.text
    other = _train(
        hook, training_files["regression"], "sklearn.linear_model.Ridge", {"alpha": 2.0}, name=name
    )
    assert other["cached"] is False and other["version"] != first["version"]
    client = hook.get_client()
    assert len(client.search_model_versions(f"name = '{name}'")) == 2


def test_retry_after_kill_between_register_and_alias_registers_no_duplicate(
    hook, training_files, monkeypatch
):
    from mlflow import MlflowClient

    name = _name()
    original = MlflowClient.set_registered_model_alias
    calls = {"n": 0}

    def killed_once(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("task killed")  # like SIGTERM between registration and alias
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", killed_once)
    args = (hook, training_files["multiclass"], "sklearn.linear_model.LogisticRegression", {"max_iter": 300})
    with pytest.raises(KeyboardInterrupt):
        _train(*args, name=name, reuse_cached=False)
    retried = _train(*args, name=name, reuse_cached=False)  # same dag/run/task ids: the next try
    assert retried["resumed"] is True
    client = hook.get_client()
    versions = client.search_model_versions(f"name = '{name}'")
    assert len(versions) == 1
    assert str(client.get_model_version_by_alias(name, "challenger").version) == str(versions[0].version)
    assert versions[0].tags[cv.TAG_IDEMPOTENCY_KEY]


@pytest.mark.parametrize(
    ("mutate", "estimator", "message"),
    [
        (
            lambda df: df.drop(columns=["target"]),
            "sklearn.linear_model.LogisticRegression",
            "no label column 'target'",
        ),
        (lambda df: df.assign(target=1), "sklearn.linear_model.LogisticRegression", "single class"),
        (
            lambda df: df.assign(sepal_width=df["sepal_width"].where(df.index % 7 != 0)),
            "sklearn.linear_model.LogisticRegression",
            "'sepal_width': 22",
        ),
        (
            lambda df: df.assign(target=df["target"].astype(float).where(df.index != 3)),
            "sklearn.linear_model.Ridge",
            "1 missing value",
        ),
    ],
    ids=["missing-label", "single-class", "nan-features", "nan-label"],
)
def test_bad_training_sets_fail_clearly_before_anything_is_registered(
    hook, iris_frame, tmp_path, mutate, estimator, message
):
    path = tmp_path / "bad.csv"
    mutate(iris_frame.copy()).to_csv(path, index=False)
    name = _name()
    with pytest.raises(DataError, match=message):
        _train(hook, path, estimator, name=name)
    assert hook.get_client().search_model_versions(f"name = '{name}'") == []


def test_estimator_accepting_nan_trains_on_missing_values(hook, iris_frame, tmp_path):
    path = tmp_path / "nan.parquet"
    iris_frame.assign(sepal_width=iris_frame["sepal_width"].where(iris_frame.index % 7 != 0)).to_parquet(path)
    result = _train(hook, path, "sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 20})
    assert result["metrics"]["accuracy"] > 0.8


def test_bad_configuration_is_a_config_error(hook, training_files):
    with pytest.raises(ConfigError, match="Invalid parameter"):
        _train(hook, training_files["multiclass"], "sklearn.linear_model.LogisticRegression", {"no_such": 1})
    with pytest.raises(ConfigError, match="Cannot import"):
        _train(hook, training_files["multiclass"], "sklearn.linear_model.NoSuchModel")
    with pytest.raises(ConfigError, match="regression estimator"):
        _train(hook, training_files["multiclass"], "sklearn.linear_model.Ridge", task_type="classification")


def test_skops_refuses_types_outside_trusted_prefixes(hook, training_files):
    with pytest.raises(ConfigError, match="outside the trusted prefixes"):
        _train(hook, training_files["multiclass"], f"{FACTORIES}.with_custom_function")


def test_refit_on_all_registers_the_model_fitted_on_every_row(hook, training_files, breast_cancer_frame):
    """Metrics stay those of the holdout; the registered model is the one fitted on all rows."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    params = {"max_iter": 5000}
    est = "sklearn.linear_model.LogisticRegression"
    split = _train(hook, training_files["binary"], est, params, reuse_cached=False)
    refit = _train(hook, training_files["binary"], est, params, reuse_cached=False, refit_on_all=True)
    assert refit["metrics"] == pytest.approx(split["metrics"])
    assert refit["fingerprint"] != split["fingerprint"]

    X, y = breast_cancer_frame.drop(columns="target"), breast_cancer_frame["target"]
    on_all = LogisticRegression(**params).fit(X, y).predict_proba(X)[:, 1]
    with hook.activate() as mlflow:
        registered = mlflow.sklearn.load_model(refit["model_uri"]).predict_proba(X)[:, 1]
        held_out = mlflow.sklearn.load_model(split["model_uri"]).predict_proba(X)[:, 1]
        run = hook.get_client().get_run(refit["run_id"])
    assert np.allclose(registered, on_all)
    assert not np.allclose(held_out, on_all)
    assert run.data.params["training.refit_on_all"] == "True"
    assert run.data.params["training.n_train"] == str(len(X))
