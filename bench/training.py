"""Training stage: the operator's training path against the same fit + MLflow logging in a plain script.

* ``train+log+register``: :func:`airflow_mlpipe.training.train.train_model` (data checks, digest,
  fingerprint, cache lookup, dataset and provenance logging, skops trust check) vs. a plain script
  doing the same fit, metrics, ``log_model`` (skops, explicit requirements) and registration. Target ≤ 1.2×.
* ``cached re-run``: the same call again with unchanged inputs vs. the first run. Target ≤ 0.1×.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench._util import Result


def _setup(root: Path, rows: int) -> Path:
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=rows, n_features=20, n_informative=8, random_state=0)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])]).assign(target=y)
    path = root / "train.parquet"
    df.to_parquet(path, index=False)
    return path


def _plain(path: Path, tracking_uri: str, name: str, n_estimators: int) -> None:
    """What a hand-written training script does: fit, score, log, register, alias."""
    import mlflow
    import numpy as np
    import pandas as pd
    import skops.io as sio
    from mlflow.models import infer_signature
    from sklearn import metrics
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"plain-{name}")
    df = pd.read_parquet(path)
    X, y = df.drop(columns="target"), df["target"]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, random_state=42, stratify=y)
    model = RandomForestClassifier(n_estimators=n_estimators, random_state=42).fit(X_tr, y_tr)
    proba = model.predict_proba(X_te)
    with mlflow.start_run():
        mlflow.log_params({"n_estimators": n_estimators})
        mlflow.log_metrics(
            {
                "accuracy": metrics.accuracy_score(y_te, model.predict(X_te)),
                "f1": metrics.f1_score(y_te, model.predict(X_te)),
                "roc_auc": metrics.roc_auc_score(y_te, proba[:, 1]),
                "log_loss": metrics.log_loss(y_te, proba),
                "_": float(np.mean(proba)),
            }
        )
        example = X.head(5)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict(example)),
            input_example=example,
            pip_requirements=["mlflow", "scikit-learn", "skops"],
            serialization_format="skops",
            skops_trusted_types=sio.get_untrusted_types(data=sio.dumps(model)),
        )
    mv = mlflow.register_model(info.model_uri, name)
    mlflow.MlflowClient().set_registered_model_alias(name, "challenger", mv.version)


def run(quick: bool) -> list[Result]:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    root = Path(tempfile.mkdtemp(prefix="bench-training-"))
    os.environ["MLPIPE_ARTIFACT_ROOT"] = f"file://{root}/artifacts"
    os.environ.setdefault("AIRFLOW_HOME", str(root / "airflow"))
    from airflow_mlpipe.config.training import EstimatorConfig, RegistryConfig, TrainingConfig
    from airflow_mlpipe.hooks.mlflow import MlflowHook
    from airflow_mlpipe.training.train import train_model

    rows, trees, repeat = (2000, 30, 2) if quick else (5000, 50, 3)
    path = _setup(root, rows)
    hook = MlflowHook("bench_training_embedded")  # no such connection: embedded SQLite store
    tracking_uri = hook.tracking_uri

    def operator_path(name: str, run_id: str, reuse: bool) -> dict:
        return train_model(
            hook,
            source=str(path),
            estimator=EstimatorConfig("sklearn.ensemble.RandomForestClassifier", {"n_estimators": trees}),
            training=TrainingConfig(label="target"),
            registry=RegistryConfig(name, reuse_cached=reuse),
            ids={"airflow.dag_id": "bench", "airflow.run_id": run_id, "airflow.task_id": "train"},
            code="bench",
        )

    # warm up imports and the store's schema for both sides
    operator_path("warmup", "w", False)
    _plain(path, tracking_uri, "warmup-plain", trees)

    plain, ours, cached = [], [], []
    for i in range(repeat):
        name = f"bench-{uuid.uuid4().hex[:6]}"
        t0 = time.perf_counter()
        _plain(path, tracking_uri, f"{name}-plain", trees)
        plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        first = operator_path(name, f"r{i}", True)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        again = operator_path(name, f"r{i}-again", True)
        cached.append(time.perf_counter() - t0)
        assert again["cached"] and again["version"] == first["version"] and not first["cached"]
    p, o, c = statistics.median(plain), statistics.median(ours), statistics.median(cached)
    return [
        Result(
            "train+log+register: operator path vs plain script",
            p,
            o,
            target=1.2,
            note=f"{rows} rows x 20 features, RandomForest({trees}), embedded SQLite store, median of {repeat}",
        ),
        Result("cached re-run vs first run", o, c, target=0.1, note="same data, estimator, params and code"),
    ]
