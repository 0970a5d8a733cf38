"""The gate's logic against real registered models (mlflow server), one task type at a time."""

from __future__ import annotations

import pytest

from airflow_mlpipe.config.evaluation import GateConfig
from airflow_mlpipe.evaluation.gate import evaluate
from airflow_mlpipe.evaluation.report import render
from airflow_mlpipe.exceptions import ConfigError, DataError
from airflow_mlpipe.hooks.mlflow import MlflowHook

pytestmark = pytest.mark.integration


def _run(mlflow_conn, reg, config, holdout_uri=None, **kw):
    hook = MlflowHook(mlflow_conn)
    with hook.activate():
        return evaluate(
            hook.get_client(),
            model_name=reg.name,
            holdout_uri=holdout_uri or reg.zoo.holdout_uri,
            config=GateConfig.from_mapping(config),
            **kw,
        )


def test_binary_metrics_match_sklearn_and_change_is_direction_aware(mlflow_conn, registered):
    from sklearn.metrics import f1_score, log_loss, roc_auc_score

    reg = registered("binary")
    out = _run(
        mlflow_conn,
        reg,
        ["roc_auc >= 0.9", {"kind": "change", "metric": "log_loss", "min_improvement": 0.0}],
    )
    hold = reg.zoo.holdout
    y = hold["target"].to_numpy()
    ch = out.evidence.challenger
    assert set(ch.metrics.values) == {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"}
    assert ch.metrics.values["f1"] == pytest.approx(f1_score(y, ch.preds.y_pred))
    assert ch.metrics.values["roc_auc"] == pytest.approx(roc_auc_score(y, ch.preds.proba[:, 1]))
    assert ch.metrics.values["log_loss"] == pytest.approx(log_loss(y, ch.preds.proba))
    # the strong model has a lower log loss than the depth-1 tree: lower is better, so it passes
    champ = out.evidence.champion.metrics.values["log_loss"]
    assert ch.metrics.values["log_loss"] < champ
    change = next(r for r in out.results if r.name == "change.log_loss")
    assert change.passed and change.op == "<=" and change.threshold == pytest.approx(champ)
    assert out.blessed

    # the other way round (weak challenger vs strong champion) the same criterion fails
    reg2 = registered("binary", challenger="weak", champion="strong")
    out2 = _run(mlflow_conn, reg2, [{"kind": "change", "metric": "accuracy", "max_regression": 0.01}])
    assert not out2.blessed
    assert "accuracy" in out2.results[0].reason and out2.results[0].observed < out2.results[0].threshold


def test_multiclass_macro_and_ovr(mlflow_conn, registered):
    from sklearn.metrics import precision_score, roc_auc_score

    reg = registered("multiclass")
    out = _run(mlflow_conn, reg, ["accuracy >= 0.8", "roc_auc >= 0.9"])
    y = reg.zoo.holdout["target"].to_numpy()
    ch = out.evidence.challenger
    assert ch.metrics.values["precision"] == pytest.approx(
        precision_score(y, ch.preds.y_pred, average="macro")
    )
    assert ch.metrics.values["roc_auc"] == pytest.approx(roc_auc_score(y, ch.preds.proba, multi_class="ovr"))
    assert out.blessed, [r.reason for r in out.results]
    html = render(out)
    assert "ROC curves (one-vs-rest)" in html and html.count("<figcaption>Confusion matrix (") == 2
    # relative improvement of 1 % over the depth-1 tree: passes (the tree cannot tell 3 classes apart)
    out = _run(
        mlflow_conn, reg, [{"kind": "change", "metric": "f1", "min_improvement": 0.01, "relative": True}]
    )
    assert out.blessed
    assert out.results[0].threshold == pytest.approx(out.evidence.champion.metrics.values["f1"] * 1.01)


def test_regression_metrics_slices_and_kpi(mlflow_conn, registered):
    import numpy as np

    reg = registered("regression")
    out = _run(
        mlflow_conn,
        reg,
        {
            "criteria": [
                {"kind": "threshold", "metric": "rmse", "max": 70},
                {"kind": "change", "metric": "rmse", "min_improvement": 0.05, "relative": True},
                {
                    "kind": "slice",
                    "column": "group",
                    "metric": "mae",
                    "max": 60,
                    "max_gap": 15,
                    "min_rows": 10,
                },
                {"kind": "kpi", "function": "tests.integration.evaluation.kpis:within_25", "min": 0.3},
            ]
        },
    )
    y = reg.zoo.holdout["target"].to_numpy(dtype=float)
    pred = out.evidence.challenger.preds.y_pred
    assert out.evidence.challenger.metrics.values["rmse"] == pytest.approx(
        float(np.sqrt(np.mean((y - pred) ** 2)))
    )
    by_name = {r.name: r for r in out.results}
    # rmse: lower is better, so the requirement is champion * (1 - 5 %)
    champ = out.evidence.champion.metrics.values["rmse"]
    assert by_name["change.rmse"].threshold == pytest.approx(champ * 0.95)
    assert by_name["change.rmse"].passed
    bound = by_name["slice.mae.group.bound"]
    assert set(bound.details["values"]) == {"a", "b"}
    assert bound.details["too_small"] == {"tiny": 4}
    assert "tiny" in bound.reason and "< 10 rows" in bound.reason
    mask = reg.zoo.holdout["group"].to_numpy() == "a"
    assert bound.details["values"]["a"] == pytest.approx(float(np.mean(np.abs(y[mask] - pred[mask]))))
    gap = by_name["slice.mae.group.gap"]
    assert gap.observed == pytest.approx(abs(bound.details["values"]["a"] - bound.details["values"]["b"]))
    kpi = by_name["kpi.within_25"]
    assert kpi.observed == pytest.approx(float(np.mean(np.abs(y - pred) <= 25)))
    assert kpi.details["champion"] is not None
    assert out.blessed == all(r.passed for r in out.results)
    html = render(out)
    for title in ("Predicted vs actual", "Residuals", "mae per slice of group"):
        assert f"alt='{title}'" in html
    assert html.count("data:image/png;base64,") == 3


def test_no_champion_change_passes_with_reason(mlflow_conn, registered):
    reg = registered("binary", champion=None)
    out = _run(mlflow_conn, reg, [{"kind": "change", "metric": "accuracy", "min_improvement": 0.5}])
    assert out.blessed and out.champion_version is None
    assert "no champion yet" in out.results[0].reason


def test_challenger_that_already_is_the_champion_names_the_champion_version(mlflow_conn, registered):
    reg = registered("binary", challenger="strong", champion="strong")
    out = _run(mlflow_conn, reg, [{"kind": "change", "metric": "accuracy", "min_improvement": 0.5}])
    assert out.challenger_version == out.champion_version == reg.versions["strong"]
    assert out.blessed and "already is the champion" in out.results[0].reason


def test_no_predict_proba_is_reported_not_available(mlflow_conn, registered):
    reg = registered("binary", challenger="noproba")
    out = _run(mlflow_conn, reg, ["roc_auc >= 0.5", "accuracy >= 0.8"])
    r = {r.name: r for r in out.results}
    assert not r["threshold.roc_auc"].passed
    assert (
        "not available" in r["threshold.roc_auc"].reason and "predict_proba" in r["threshold.roc_auc"].reason
    )
    assert r["threshold.accuracy"].passed
    assert "roc_auc" in out.evidence.challenger.metrics.unavailable


@pytest.mark.parametrize(
    "mutate, error, words",
    [
        (lambda f: f.drop(columns=["target"]), DataError, ["label column 'target'"]),
        (lambda f: f.drop(columns=["group"]), DataError, ["slice column 'group'"]),
        (
            lambda f: f.drop(columns=["mean_radius"]),
            DataError,
            ["missing feature", "mean_radius", "challenger"],
        ),
        (
            lambda f: f.assign(mean_texture=f["mean_texture"].astype(str)),
            DataError,
            ["mean_texture", "double"],
        ),
    ],
    ids=["no-label", "no-slice-column", "missing-feature", "wrong-type"],
)
def test_bad_holdout(mlflow_conn, registered, tmp_path, mutate, error, words):
    reg = registered("binary")
    path = tmp_path / "bad.parquet"
    mutate(reg.zoo.holdout).to_parquet(path)
    config = ["accuracy >= 0.5", {"kind": "slice", "column": "group", "metric": "recall", "min": 0.1}]
    with pytest.raises(error) as info:
        _run(mlflow_conn, reg, config, holdout_uri=str(path))
    for w in words:
        assert w in str(info.value)


def test_metric_of_the_wrong_task_type(mlflow_conn, registered):
    reg = registered("regression")
    with pytest.raises(ConfigError, match="'roc_auc' does not exist for regression"):
        _run(mlflow_conn, reg, ["roc_auc >= 0.8"])
