"""The prediction log and its join with labels that arrive later (pure pandas, ~1 s)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from airflow_mlpipe.config.monitoring import PredictionLogConfig, QualityConfig
from airflow_mlpipe.exceptions import ConfigError, DataError
from airflow_mlpipe.monitoring.prediction_log import join_labels, read_labels, read_log, write_log
from airflow_mlpipe.monitoring.quality import check_quality

T0 = dt.datetime(2024, 1, 1, 8, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def _cfg(**kw) -> PredictionLogConfig:
    base = {
        "uri": "/unused",
        "labels_uri": "/unused",
        "keys": ["customer_id"],
        "label_column": "churned",
        "label_timestamp_column": "label_timestamp",
        "label_delay_seconds": 6 * 3600,
    }
    return PredictionLogConfig(**(base | kw))


def _preds(rows: list[tuple]) -> pd.DataFrame:
    """rows: (customer_id, event time, prediction[, model_version[, logged_at]])"""
    out = []
    for r in rows:
        key, t, p = r[:3]
        out.append(
            {
                "customer_id": key,
                "event_timestamp": pd.Timestamp(t),
                "prediction": p,
                "score": 0.9 if p else 0.1,
                "model_version": r[3] if len(r) > 3 else "1",
                "logged_at": pd.Timestamp(r[4] if len(r) > 4 else t),
            }
        )
    return pd.DataFrame(out)


def _labels(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"customer_id": k, "label_timestamp": pd.Timestamp(t), "churned": y} for k, t, y in rows]
    )


def test_a_delayed_label_is_pending_until_it_arrives_then_judges_its_prediction():
    preds = _preds([(1, T0, 1)])
    labels = _labels([(1, T0 + 2 * HOUR, 0)])
    joined, stats = join_labels(preds, labels, _cfg(), as_of=T0 + HOUR)
    assert joined.empty
    assert stats["pending"] == 1 and stats["missing_label"] == 0 and stats["labels_not_yet_known"] == 1

    joined, stats = join_labels(preds, labels, _cfg(), as_of=T0 + 3 * HOUR)
    assert stats["judged"] == 1 and stats["pending"] == 0
    assert joined[["customer_id", "prediction", "label"]].to_dict("records") == [
        {"customer_id": 1, "prediction": 1, "label": 0}
    ]


def test_a_prediction_older_than_the_label_delay_without_label_is_missing_not_judged():
    preds = _preds([(1, T0, 1), (2, T0, 0)])
    labels = _labels([(2, T0 + HOUR, 0)])
    joined, stats = join_labels(preds, labels, _cfg(), as_of=T0 + 24 * HOUR)
    assert list(joined["customer_id"]) == [2]
    assert stats["missing_label"] == 1 and stats["pending"] == 0 and stats["judged"] == 1


def test_a_label_later_than_the_delay_belongs_to_no_earlier_prediction():
    preds = _preds([(1, T0, 1)])
    labels = _labels([(1, T0 + 30 * HOUR, 0)])
    joined, stats = join_labels(preds, labels, _cfg(), as_of=T0 + 48 * HOUR)
    assert joined.empty and stats["missing_label"] == 1


def test_duplicate_predictions_and_labels_count_once_latest_write_and_last_label_winning():
    preds = _preds([(1, T0, 0, "1", T0), (1, T0, 1, "1", T0 + HOUR)])  # a retried write
    labels = _labels([(1, T0 + HOUR, 0), (1, T0 + HOUR, 1)])  # the same label delivered twice
    joined, stats = join_labels(preds, labels, _cfg(), as_of=T0 + 24 * HOUR)
    assert stats["duplicate_predictions"] == 1 and stats["duplicate_labels"] == 1
    assert joined[["prediction", "label"]].to_dict("records") == [{"prediction": 1, "label": 1}]


def test_one_label_judges_the_latest_prediction_of_its_key_the_older_is_superseded():
    preds = _preds([(1, T0, 0), (1, T0 + HOUR, 1), (2, T0, 1)])
    labels = _labels([(1, T0 + 2 * HOUR, 1), (2, T0 + 2 * HOUR, 1)])
    joined, stats = join_labels(preds, labels, _cfg(), as_of=T0 + 24 * HOUR)
    row = joined[joined["customer_id"] == 1].iloc[0]
    assert row["prediction"] == 1 and row["event_timestamp"] == pd.Timestamp(T0 + HOUR)
    assert stats["judged"] == 2 and stats["superseded"] == 1 and stats["missing_label"] == 0


def test_a_key_seen_on_two_days_gets_each_days_label():
    day = dt.timedelta(days=1)
    preds = _preds([(1, T0, 0), (1, T0 + day, 1)])
    labels = _labels([(1, T0 + HOUR, 0), (1, T0 + day + HOUR, 1)])
    joined, _ = join_labels(preds, labels, _cfg(), as_of=T0 + 3 * day)
    assert joined[["prediction", "label"]].to_dict("records") == [
        {"prediction": 0, "label": 0},
        {"prediction": 1, "label": 1},
    ]


def test_only_the_serving_versions_predictions_are_judged():
    preds = _preds([(1, T0, 1, "1"), (2, T0, 1, "2")])
    labels = _labels([(1, T0 + HOUR, 1), (2, T0 + HOUR, 0)])
    joined, stats = join_labels(preds, labels, _cfg(), as_of=T0 + 24 * HOUR, model_version="2")
    assert list(joined["customer_id"]) == [2] and stats["predictions"] == 1


def test_missing_columns_fail_with_the_columns_named():
    with pytest.raises(DataError, match="label table .*churned"):
        join_labels(_preds([(1, T0, 1)]), _labels([(1, T0, 1)]).drop(columns="churned"), _cfg(), as_of=T0)


def test_write_then_read_the_log(tmp_path):
    frame = pd.DataFrame(
        {"customer_id": [1, 2], "event_timestamp": [T0, T0], "pred": [0, 1], "s": [0.2, 0.8]}
    )
    uri = str(tmp_path / "log")
    first = write_log(
        frame, uri, keys=["customer_id"], model_version="3", prediction_column="pred", score_column="s"
    )
    write_log(frame.iloc[:1], uri, keys=["customer_id"], model_version="3", prediction_column="pred")
    assert first is not None and first.endswith(".parquet")
    log = read_log(uri)
    assert len(log) == 3
    assert list(log.columns) == [
        "customer_id",
        "event_timestamp",
        "prediction",
        "score",
        "model_version",
        "logged_at",
    ]
    assert sorted(log["score"].dropna()) == [0.2, 0.8] and set(log["model_version"]) == {"3"}
    assert read_log(str(tmp_path / "nothing")).empty
    with pytest.raises(DataError, match="customer_id"):
        write_log(frame.drop(columns="customer_id"), uri, keys=["customer_id"], model_version="3")


def test_labels_from_a_directory_of_daily_files(tmp_path):
    _labels([(1, T0, 0)]).to_parquet(tmp_path / "2024-01-01.parquet")
    _labels([(2, T0 + 24 * HOUR, 1)]).to_parquet(tmp_path / "2024-01-02.parquet")
    assert sorted(read_labels(str(tmp_path))["customer_id"]) == [1, 2]


def test_config_refuses_what_cannot_work():
    with pytest.raises(ConfigError, match="keys"):
        _cfg(keys=[])
    with pytest.raises(ConfigError, match="lookback_seconds must exceed"):
        _cfg(lookback_seconds=3600)
    with pytest.raises(ConfigError, match="roc_auc needs score_column"):
        QualityConfig(label_column="label", prediction_column="prediction", metrics=["roc_auc"])


def test_live_roc_auc_from_served_scores_degrades_when_the_scores_stop_ranking():
    cfg = QualityConfig(
        label_column="label",
        prediction_column="prediction",
        score_column="score",
        metrics=["roc_auc"],
        min_labelled_rows=4,
    )
    labels = [0, 0, 1, 1, 0, 1, 0, 1]
    good = pd.DataFrame(
        {"label": labels, "prediction": labels, "score": [0.1, 0.2, 0.8, 0.9, 0.3, 0.7, 0.2, 0.6]}
    )
    result = check_quality(good, cfg, {"roc_auc": 0.9})
    assert result["metrics"]["roc_auc"]["live"] == 1.0 and result["degraded"] is False
    bad = good.assign(score=[0.9, 0.8, 0.2, 0.1, 0.7, 0.3, 0.6, 0.4])
    result = check_quality(bad, cfg, {"roc_auc": 0.9})
    assert result["metrics"]["roc_auc"]["live"] == 0.0 and result["degraded"] is True


def test_served_answers_are_scored_as_training_scores_them():
    from airflow_mlpipe.core import metrics
    from airflow_mlpipe.monitoring.quality import served_predictions

    answers = [
        {"predictions": [0, 1], "classes": [0, 1], "probabilities": [[0.8, 0.2], [0.3, 0.7]]},
        {"predictions": [1], "classes": [0, 1], "probabilities": [[0.4, 0.6]]},
    ]
    preds = served_predictions(answers)
    assert preds.y_pred.tolist() == [0, 1, 1] and preds.classes == [0, 1]
    assert metrics.compute("classification", [0, 1, 0], preds, only=["roc_auc"]).get("roc_auc") == 1.0
    # an answer without probabilities: labels only, roc_auc reported as unavailable
    labels_only = served_predictions([*answers, {"predictions": [0]}])
    assert labels_only.proba is None
    assert (
        "roc_auc"
        in metrics.compute("classification", [0, 1, 0, 0], labels_only, only=["roc_auc"]).unavailable
    )
    with pytest.raises(DataError, match="No served answers"):
        served_predictions([])


def test_nothing_logged_or_no_labels_yet_is_not_judged(tmp_path):
    from airflow_mlpipe.monitoring.prediction_log import logged_quality

    (tmp_path / "labels").mkdir()
    log = _cfg(uri=str(tmp_path / "log"), labels_uri=str(tmp_path / "labels"))
    quality = QualityConfig.for_prediction_log({"metrics": ["roc_auc"]})
    result = logged_quality(log, quality, {"roc_auc": 0.8}, as_of=T0)
    assert result["judged"] is False and "no predictions logged" in result["reason"]
    frame = pd.DataFrame({"customer_id": [1], "event_timestamp": [T0], "prediction": [1]})
    write_log(frame, log.uri, keys=["customer_id"], model_version="1")
    result = logged_quality(log, quality, {"roc_auc": 0.8}, as_of=T0 + HOUR)
    assert result["judged"] is False and result["reason"] == "no labels yet"
