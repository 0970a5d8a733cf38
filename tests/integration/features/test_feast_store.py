"""The feature functions against a real Feast store (file offline store, SQLite online store)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from airflow_mlpipe.config.features import MaterializeConfig, TrainingSetConfig
from airflow_mlpipe.exceptions import ConfigError, DataError
from tests.fixtures.features import DAYS, START, expected_point_in_time

pytestmark = pytest.mark.integration
DAY = dt.timedelta(days=1)


def _applied(repo):
    from airflow_mlpipe.features.definitions import apply_definitions, load_definitions
    from airflow_mlpipe.hooks.feast import FeastHook

    hook = FeastHook("mlpipe_feast_absent", config=repo.config)
    store = hook.get_store()
    apply_definitions(store, load_definitions(str(repo.definitions)))
    return hook, store


def _window(day: int, days: int = 1, **kw) -> MaterializeConfig:
    return MaterializeConfig(start=START + day * DAY, end=START + (day + days) * DAY, **kw)


def _online(store, ids):
    from airflow_mlpipe.features.online import OnlineFeatureReader

    reader = OnlineFeatureReader(dict(store.config.model_dump(by_alias=True, mode="json")), "churn_service")
    reader._store = store
    return reader.read([{"customer_id": int(i)} for i in ids])


def test_training_set_is_point_in_time_correct_and_keeps_row_order(feast_repo):
    from airflow_mlpipe.features.training_set import retrieve

    _, store = _applied(feast_repo)
    cfg = TrainingSetConfig(
        feature_service="churn_service", entity_source=feast_repo.labels_uri, label="churned"
    )
    frame, info = retrieve(store, cfg, feast_repo.labels)

    assert info.features == ["calls", "spend", "tenure"]  # the service's order: activity, then profile
    assert info.entity_keys == ["customer_id"]
    assert list(frame.columns) == ["customer_id", "event_timestamp", "churned", "calls", "spend", "tenure"]
    # Row i of the training set is row i of the input.
    assert frame["customer_id"].tolist() == feast_repo.labels["customer_id"].tolist()
    assert frame["churned"].tolist() == feast_repo.labels["churned"].tolist()
    assert (frame["event_timestamp"] == feast_repo.labels["event_timestamp"]).all()

    ttl = dt.timedelta(days=30)
    want_profile = expected_point_in_time(feast_repo.labels, feast_repo.profile, ["spend", "tenure"], ttl)
    want_calls = expected_point_in_time(feast_repo.labels, feast_repo.activity, ["calls"], ttl)
    import pandas as pd

    pd.testing.assert_series_equal(frame["spend"].astype(float), want_profile["spend"], check_names=False)
    pd.testing.assert_series_equal(frame["tenure"].astype(float), want_profile["tenure"], check_names=False)
    pd.testing.assert_series_equal(frame["calls"].astype(float), want_calls["calls"], check_names=False)

    # A feature stamped one second after a label never reaches it: those rows see an older value.
    for _, exact in feast_repo.profile.iloc[[5]].iterrows():
        at = frame[
            (frame.customer_id == exact.customer_id) & (frame.event_timestamp == exact.event_timestamp)
        ]
        before = frame[
            (frame.customer_id == exact.customer_id)
            & (frame.event_timestamp == exact.event_timestamp - pd.Timedelta(seconds=1))
        ]
        assert at["spend"].tolist() == [exact.spend]  # stamped at the label's time: visible
        assert before["spend"].isna().all() or (before["spend"] != exact.spend).all()


def test_naive_timestamps_are_refused_or_declared_utc(feast_repo):
    from airflow_mlpipe.features.training_set import retrieve

    _, store = _applied(feast_repo)
    naive = feast_repo.labels.assign(
        event_timestamp=feast_repo.labels["event_timestamp"].dt.tz_localize(None)
    )
    cfg = TrainingSetConfig(feature_service="churn_service", entity_source="labels", label="churned")
    with pytest.raises(DataError, match="no time zone"):
        retrieve(store, cfg, naive)
    declared, _ = retrieve(store, TrainingSetConfig(**{**cfg.__dict__, "naive_timestamps": "utc"}), naive)
    aware, _ = retrieve(store, cfg, feast_repo.labels)
    assert declared.equals(aware)
    # Another zone is converted (same instants), never reinterpreted.
    tokyo = feast_repo.labels.assign(
        event_timestamp=feast_repo.labels["event_timestamp"].dt.tz_convert("Asia/Tokyo")
    )
    assert retrieve(store, cfg, tokyo)[0].equals(aware)


def test_bad_training_set_input_names_the_problem(feast_repo):
    from airflow_mlpipe.features.training_set import retrieve

    _, store = _applied(feast_repo)
    cfg = TrainingSetConfig(feature_service="churn_service", entity_source="labels.parquet", label="churned")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['customer_id'\]"):
        retrieve(store, cfg, feast_repo.labels.drop(columns=["customer_id"]))
    with pytest.raises(DataError, match="already has column"):
        retrieve(store, cfg, feast_repo.labels.assign(spend=1.0))
    with pytest.raises(DataError, match="missing value"):
        retrieve(store, cfg, feast_repo.labels.assign(event_timestamp=None))
    unknown = TrainingSetConfig(feature_service="nope", entity_source="labels.parquet")
    with pytest.raises(ConfigError, match=r"'nope' does not exist.*churn_service"):
        retrieve(store, unknown, feast_repo.labels)


def test_consecutive_windows_have_no_gap_and_no_double_count(feast_repo):
    from airflow_mlpipe.features.materialize import materialize_window

    _, store = _applied(feast_repo)
    totals = {"profile": 0, "activity": 0}
    for day in range(DAYS):
        for s in materialize_window(store, _window(day)):
            totals[s["feature_view"]] += s["rows_written"]
            frame = feast_repo.profile if s["feature_view"] == "profile" else feast_repo.activity
            lo, hi = START + day * DAY, START + (day + 1) * DAY
            in_window = frame[(frame.event_timestamp >= lo) & (frame.event_timestamp < hi)]
            assert s["rows_written"] == in_window.customer_id.nunique(), (day, s)
    # A profile customer appears at most once a day: every profile row — the ones exactly on a
    # midnight boundary included — was written exactly once over the consecutive runs.
    assert totals["profile"] == len(feast_repo.profile)
    assert (
        feast_repo.profile.event_timestamp.dt.hour.eq(0) & feast_repo.profile.event_timestamp.dt.minute.eq(0)
    ).any()

    latest = feast_repo.profile.sort_values("event_timestamp").groupby("customer_id").last()
    online = _online(store, latest.index)
    assert online["spend"].tolist() == latest["spend"].tolist()
    assert online["tenure"].tolist() == latest["tenure"].tolist()


def test_rematerializing_an_interval_is_idempotent(feast_repo):
    from airflow_mlpipe.features.materialize import materialize_window

    _, store = _applied(feast_repo)
    ids = sorted(feast_repo.profile.customer_id.unique())
    first = materialize_window(store, _window(1, overlap_seconds=3600))
    values_first = _online(store, ids)
    again = materialize_window(store, _window(1, overlap_seconds=3600))
    values_again = _online(store, ids)
    strip = [{k: v for k, v in s.items() if k != "materialized_at"} for s in first]
    assert strip == [{k: v for k, v in s.items() if k != "materialized_at"} for s in again]
    assert values_first.equals(values_again)
    assert sum(s["rows_written"] for s in first) > 0
    # The overlap re-reads late rows of the previous day: more rows than the bare interval.
    assert first[0]["window_start"] == (START + DAY - dt.timedelta(hours=1)).isoformat()


def test_online_values_equal_offline_values(feast_repo):
    import pandas as pd

    from airflow_mlpipe.features.materialize import materialize_window
    from airflow_mlpipe.features.online import OnlineFeatureReader
    from airflow_mlpipe.features.training_set import retrieve

    hook, store = _applied(feast_repo)
    materialize_window(store, _window(0, days=DAYS))
    ids = [int(i) for i in feast_repo.profile.customer_id.unique()[:40]]
    at = pd.Timestamp(START + DAYS * DAY)
    entities = pd.DataFrame({"customer_id": ids, "event_timestamp": [at] * len(ids)})
    cfg = TrainingSetConfig(feature_service="churn_service", entity_source="now")
    offline, info = retrieve(store, cfg, entities)

    spec = json.loads(
        json.dumps(
            {
                "repo_config": hook.repo_config(),
                "feature_service": "churn_service",
                "feature_service_version": info.version,
            }
        )
    )
    reader = OnlineFeatureReader.from_spec(spec)
    online = reader.read([{"customer_id": i} for i in ids])
    assert list(online.columns) == info.features == reader.features
    assert reader.entity_keys == ["customer_id"]
    pd.testing.assert_frame_equal(
        online.astype(float), offline[info.features].astype(float), check_dtype=False
    )
    assert reader.read([]).columns.tolist() == info.features
    assert OnlineFeatureReader.from_spec(reader.to_spec()).features == info.features
    with pytest.raises(DataError, match=r"entity_rows\[1\] lacks join key"):
        reader.read([{"customer_id": 1}, {"id": 2}])
    # An entity that was never materialized reads as missing, not as another entity's value.
    assert online.notna().all().all()
    assert reader.read([{"customer_id": 10_000}]).isna().all().all()


def test_empty_window_unknown_view_and_reversed_window(feast_repo):
    from airflow_mlpipe.features.materialize import materialize_window

    _, store = _applied(feast_repo)
    empty = materialize_window(store, _window(30))
    assert [s["rows_written"] for s in empty] == [0, 0]
    with pytest.raises(DataError, match="No feature rows"):
        materialize_window(store, _window(30, fail_on_empty=True))
    with pytest.raises(ConfigError, match=r"Unknown feature view\(s\) \['nope'\]"):
        materialize_window(store, _window(0, feature_views=["nope"]))
    with pytest.raises(ConfigError, match="empty or reversed"):
        MaterializeConfig(start=START + DAY, end=START)
    with pytest.raises(ConfigError, match="no time zone"):
        MaterializeConfig(start=dt.datetime(2024, 1, 1), end=START + DAY)


def test_service_version_follows_the_definitions(feast_repo):
    from airflow_mlpipe.features.definitions import apply_definitions, load_definitions
    from airflow_mlpipe.features.online import OnlineFeatureReader
    from airflow_mlpipe.features.registry import feature_service

    hook, store = _applied(feast_repo)
    version = feature_service(store, "churn_service")[1].version
    first_digest = load_definitions(str(feast_repo.definitions)).digest
    apply_definitions(store, load_definitions(str(feast_repo.definitions)))
    assert feature_service(store, "churn_service")[1].version == version  # same code, same version

    feast_repo.write_definitions(ttl_days=7)
    changed = load_definitions(str(feast_repo.definitions))
    assert changed.digest != first_digest
    apply_definitions(store, changed)
    assert feature_service(store, "churn_service")[1].version != version
    stale = OnlineFeatureReader(hook.repo_config(), "churn_service", version=version)
    with pytest.raises(ConfigError, match="trained on version"):
        stale.read([{"customer_id": 1}])


def test_runs_without_a_data_interval_catch_up_from_the_last_window(feast_repo):
    from airflow_mlpipe.features.materialize import catch_up_start, materialize_window
    from airflow_mlpipe.operators.feast import FeastMaterializeOperator

    _, store = _applied(feast_repo)
    end = START + DAYS * DAY
    assert catch_up_start(store, None, end) == end - dt.timedelta(days=30)  # never materialized: TTL
    materialize_window(store, _window(0, days=2))
    assert catch_up_start(store, None, end) == START + 2 * DAY  # resumes exactly at the last end
    op = FeastMaterializeOperator(task_id="m", config=feast_repo.config)
    # Airflow 3 manual runs have an empty data interval: the window becomes [last end, run time).
    cfg = op.window({"data_interval_start": end, "data_interval_end": end}, store)
    assert (cfg.start, cfg.end) == (START + 2 * DAY, end)
    materialize_window(store, cfg)
    assert op.window({"data_interval_start": end, "data_interval_end": end}, store) is None
