"""Evaluation gate: the gate's logic and promotion against plain scripts doing the same work.

All against an embedded SQLite MLflow store in a temporary directory (no server start-up cost).

* ``gate evaluate``: :func:`airflow_mlpipe.evaluation.gate.evaluate` (alias resolution, signature
  check, challenger + champion scoring, all metrics, threshold/change/slice criteria) vs. a plain
  script loading both models by alias and computing the same metrics with scikit-learn. Target ≤ 1.5×.
* ``report render``: the HTML report with its plots vs. the evaluation itself (what the report
  adds on top, once per gate run). Informational, no target.
* ``promote (locked)``: promotion with the registry lock, read-back verification and tags vs. two
  bare ``set_registered_model_alias`` calls. Target ≤ 6× (the lock costs a create and a delete).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench._util import Result, timeit

CRITERIA = [
    "roc_auc >= 0.8",
    {"kind": "change", "metric": "accuracy", "max_regression": 0.01},
    {"kind": "slice", "column": "segment", "metric": "recall", "min": 0.5, "max_gap": 0.3},
]


def _setup(root: Path, rows: int, tracking: str) -> tuple[str, str]:
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    x, y = make_classification(n_samples=rows * 2, n_features=20, n_informative=8, random_state=0)
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(20)]).assign(target=y)
    train, hold = df.iloc[:rows], df.iloc[rows:].reset_index(drop=True)
    hold = hold.assign(segment=np.where(np.arange(len(hold)) % 3 == 0, "s1", "s2"))
    hold_path = root / "holdout.parquet"
    hold.to_parquet(hold_path, index=False)
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(tracking)
    exp = mlflow.MlflowClient().create_experiment("bench", artifact_location=f"file://{root}/artifacts")
    name = f"bench-{uuid.uuid4().hex[:6]}"
    feats = train.drop(columns="target")
    for model, alias in (
        (LogisticRegression(max_iter=1000), "champion"),
        (RandomForestClassifier(n_estimators=50, random_state=0, n_jobs=1), "challenger"),
    ):
        model.fit(feats, train["target"])
        with mlflow.start_run(experiment_id=exp):
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(feats.head(5)),
                registered_model_name=name,
                pip_requirements=["scikit-learn"],
                serialization_format="cloudpickle",
            )
        client = mlflow.MlflowClient()
        v = str(info.registered_model_version)
        client.set_model_version_tag(name, v, "mlpipe.task_type", "classification")
        client.set_model_version_tag(name, v, "mlpipe.label", "target")
        client.set_registered_model_alias(name, alias, v)
    return name, str(hold_path)


def _plain(name: str, hold_path: str) -> None:
    """A hand-written gate: load both by alias, score, compute the metrics, compare."""
    import mlflow
    import pandas as pd
    from sklearn import metrics

    hold = pd.read_parquet(hold_path)
    y = hold["target"]
    out = {}
    for alias in ("challenger", "champion"):
        model = mlflow.sklearn.load_model(f"models:/{name}@{alias}")
        x = hold[[f"f{i}" for i in range(20)]]
        pred, proba = model.predict(x), model.predict_proba(x)
        out[alias] = {
            "accuracy": metrics.accuracy_score(y, pred),
            "precision": metrics.precision_score(y, pred),
            "recall": metrics.recall_score(y, pred),
            "f1": metrics.f1_score(y, pred),
            "roc_auc": metrics.roc_auc_score(y, proba[:, 1]),
            "log_loss": metrics.log_loss(y, proba),
        }
        for seg in ("s1", "s2"):
            mask = hold["segment"] == seg
            metrics.recall_score(y[mask], pred[mask])
    assert out["challenger"]["roc_auc"] > 0


def run(quick: bool) -> list[Result]:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"  # the plain script needs it too
    from mlflow import MlflowClient

    from airflow_mlpipe.config.evaluation import GateConfig
    from airflow_mlpipe.evaluation.gate import evaluate
    from airflow_mlpipe.evaluation.promotion import promote
    from airflow_mlpipe.evaluation.report import render

    rows = 1000 if quick else 20000
    repeat = 3 if quick else 5
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        root = Path(tmp)
        tracking = f"sqlite:///{root}/mlflow.db"
        name, hold = _setup(root, rows, tracking)
        client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
        config = GateConfig.from_mapping(CRITERIA)
        _plain(name, hold)  # warm caches (imports, sqlite) for both sides
        outcome: Any = evaluate(client, model_name=name, holdout_uri=hold, config=config)
        baseline = timeit(lambda: _plain(name, hold), repeat)
        subject = timeit(lambda: evaluate(client, model_name=name, holdout_uri=hold, config=config), repeat)
        results.append(Result(f"gate evaluate ({rows} rows, 2 models)", baseline, subject, target=1.5))
        report = timeit(lambda: render(outcome), repeat)
        results.append(
            Result(
                "report render vs gate evaluate",
                subject,
                report,
                note="informational: 5 PNG plots (ROC, PR, 2 confusion matrices, slice bars), once per gate run",
            )
        )

        versions = [str(mv.version) for mv in client.search_model_versions(f"name='{name}'")]
        for v in versions:
            client.set_model_version_tag(name, v, "mlpipe.gate.blessed", "true")
        flip = iter(versions * 100)

        def bare() -> None:
            v = next(flip)
            client.set_registered_model_alias(name, "previous", v)
            client.set_registered_model_alias(name, "champion", v)

        def locked() -> None:
            promote(client, name, next(flip))

        n = 5 if quick else 20
        base = timeit(bare, n)
        sub = timeit(locked, n)
        results.append(Result("promote (locked, verified) vs bare alias writes", base, sub, target=6.0))
    return results
