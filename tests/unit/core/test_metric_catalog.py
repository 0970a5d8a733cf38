"""One metric catalog: the same name gives the same number in training, the gate and monitoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LinearRegression, LogisticRegression

from airflow_mlpipe.config.evaluation import GateConfig
from airflow_mlpipe.config.monitoring import QualityConfig
from airflow_mlpipe.config.training import SearchConfig
from airflow_mlpipe.core import metrics
from airflow_mlpipe.core.conventions import TaskType
from airflow_mlpipe.core.registry import LoadedModel, untyped_inputs
from airflow_mlpipe.evaluation.gate import _score
from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.monitoring.quality import check_quality
from airflow_mlpipe.training.fit import compute_metrics


def _data(task: TaskType, classes: int = 2) -> tuple[pd.DataFrame, pd.Series, object]:
    rng = np.random.default_rng(11)
    X = pd.DataFrame({"a": rng.normal(size=240), "b": rng.normal(size=240)})
    signal = X["a"] + 0.5 * X["b"] + rng.normal(scale=0.8, size=240)
    if task is TaskType.REGRESSION:
        y = pd.Series(signal, name="y")
        return X, y, LinearRegression().fit(X, y)
    # Imbalanced classes: a positive-class F1 and a macro F1 differ clearly on this data.
    cuts = np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1] if classes > 2 else [0.8])
    y = pd.Series(np.digitize(signal, cuts), name="y")
    return X, y, LogisticRegression(max_iter=500).fit(X, y)


def _three_stages(task: TaskType, X: pd.DataFrame, y: pd.Series, model: object) -> tuple[dict, dict, dict]:
    training = compute_metrics(task, model, X, y)
    loaded = LoadedModel(name="m", version="1", model=model, inputs=untyped_inputs(["a", "b"]))
    gate = _score(loaded, X, y, task.value, None).metrics.values
    live_names = metrics.names(task, report=True) + [
        n for n in metrics.names(task) if not metrics.CATALOG[n].in_report
    ]
    live_names = [n for n in live_names if not metrics.CATALOG[n].needs_scores]
    current = pd.DataFrame({"label": y, "prediction": model.predict(X)})  # type: ignore[attr-defined]
    cfg = QualityConfig(
        label_column="label",
        prediction_column="prediction",
        task_type=task.value,
        metrics=live_names,
        min_labelled_rows=10,
    )
    baseline = dict.fromkeys(live_names, 1.0)
    monitored = {k: v["live"] for k, v in check_quality(current, cfg, baseline)["metrics"].items()}
    return training, gate, monitored


@pytest.mark.parametrize(
    ("task", "classes"),
    [(TaskType.CLASSIFICATION, 2), (TaskType.CLASSIFICATION, 3), (TaskType.REGRESSION, 0)],
)
def test_every_metric_agrees_across_training_gate_and_monitoring(task, classes):
    X, y, model = _data(task, classes)
    training, gate, monitored = _three_stages(task, X, y, model)
    assert set(training) == set(metrics.names(task, training=True))
    assert set(monitored) == {n for n in metrics.names(task) if not metrics.CATALOG[n].needs_scores}
    compared = 0
    for name in metrics.names(task):
        values = [stage[name] for stage in (training, gate, monitored) if name in stage]
        if len(values) > 1:
            compared += 1
            assert values == pytest.approx([values[0]] * len(values), abs=1e-12), name
    assert compared >= 3


def test_binary_f1_means_the_positive_class_in_every_stage():
    X, y, model = _data(TaskType.CLASSIFICATION)
    pred = model.predict(X)  # type: ignore[attr-defined]
    positive = skm.f1_score(y, pred, pos_label=1, average="binary")
    macro = skm.f1_score(y, pred, average="macro")
    assert abs(positive - macro) > 0.05  # the data tells the two meanings apart
    training, gate, monitored = _three_stages(TaskType.CLASSIFICATION, X, y, model)
    assert training["f1"] == gate["f1"] == monitored["f1"] == pytest.approx(positive)
    assert monitored["f1_macro"] == pytest.approx(macro)


def test_configs_validate_against_the_catalog():
    assert SearchConfig(param_grid={"a": [1]}, metric="log_loss").resolve_metric(TaskType.CLASSIFICATION) == (
        "log_loss",
        "minimize",
    )
    with pytest.raises(ConfigError, match="Unknown metric"):
        SearchConfig(param_grid={"a": [1]}, metric="f1_weighted")  # not reported by training
    with pytest.raises(ConfigError, match="Unknown quality metric"):
        QualityConfig(label_column="y", prediction_column="p", metrics=["roc_auc"])  # needs scores
    with pytest.raises(ConfigError, match="do not apply to classification"):
        QualityConfig(label_column="y", prediction_column="p", metrics=["mse"])
    with pytest.raises(ConfigError, match="'mse' does not exist for classification"):
        GateConfig(criteria=["mse <= 1"], task_type="classification")
    for entry in metrics.CATALOG.values():
        assert entry.direction in (metrics.HIGHER, metrics.LOWER)
        assert metrics.direction(entry.task_type, entry.name) == entry.direction
