"""Feature stage pieces that need no Feast store: configs, hook resolution, definitions lookup, assets."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import yaml

from airflow_mlpipe.config.features import MaterializeConfig, TrainingSetConfig
from airflow_mlpipe.exceptions import ConfigError, DataError

UTC = dt.UTC


def test_materialize_config_window_and_errors():
    cfg = MaterializeConfig(
        start="2024-01-02T00:00:00+01:00", end=dt.datetime(2024, 1, 3, tzinfo=UTC), overlap_seconds=3600
    )
    assert cfg.start == dt.datetime(2024, 1, 1, 23, tzinfo=UTC)
    assert cfg.window_start == dt.datetime(2024, 1, 1, 22, tzinfo=UTC)
    with pytest.raises(ConfigError, match="overlap_seconds"):
        MaterializeConfig(start=cfg.start, end=cfg.end, overlap_seconds=-1)
    with pytest.raises(ConfigError, match="feature_views is empty"):
        MaterializeConfig(start=cfg.start, end=cfg.end, feature_views=[])
    with pytest.raises(ConfigError, match="not an ISO-8601"):
        MaterializeConfig(start="yesterday", end=cfg.end)


def test_training_set_config_errors():
    ok = TrainingSetConfig(feature_service="svc", entity_source="x.parquet", label="y")
    assert ok.naive_timestamps == "error"
    with pytest.raises(ConfigError, match="naive_timestamps"):
        TrainingSetConfig(feature_service="svc", entity_source="x", naive_timestamps="local")
    with pytest.raises(ConfigError, match="feature_service"):
        TrainingSetConfig(feature_service="", entity_source="x")
    with pytest.raises(ConfigError, match="output_name"):
        TrainingSetConfig(feature_service="s", entity_source="x", output_name="../x.csv")
    with pytest.raises(ConfigError, match="twice"):
        TrainingSetConfig(feature_service="s", entity_source="x", entity_columns=["a", "a"])


def test_hook_resolution_order(tmp_path, monkeypatch):
    from airflow_mlpipe.hooks.feast import FeastHook

    monkeypatch.setenv("MLPIPE_ARTIFACT_ROOT", f"file://{tmp_path}/artifacts")
    embedded = FeastHook("mlpipe_feast_missing").repo_config()
    assert embedded["online_store"] == {
        "type": "sqlite",
        "path": f"{tmp_path}/artifacts/feast/online_store.db",
    }
    assert embedded["registry"]["path"] == f"{tmp_path}/artifacts/feast/registry.db"

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        yaml.safe_dump({"project": "churn", "registry": "data/registry.db", "provider": "local"})
    )
    from_repo = FeastHook("mlpipe_feast_missing", repo_path=repo).repo_config()
    assert from_repo["registry"] == str(repo / "data" / "registry.db")  # absolute: valid in any process
    assert from_repo["repo_path"] == str(repo)

    conn = {"conn_type": "mlpipe_feast", "host": str(repo), "extra": {"project": "prod"}}
    monkeypatch.setenv("AIRFLOW_CONN_FEAST_UNIT", json.dumps(conn))
    merged = FeastHook("feast_unit").repo_config()
    assert merged["project"] == "prod" and merged["registry"] == from_repo["registry"]
    code = FeastHook("feast_unit", config={"project": "code", "registry": "r.db", "repo_path": str(tmp_path)})
    assert code.repo_config()["project"] == "prod"  # the connection's settings win
    with pytest.raises(ConfigError, match="No Feast configuration"):
        FeastHook("mlpipe_feast_missing", repo_path=tmp_path / "nowhere").repo_config()
    with pytest.raises(ConfigError, match="no 'registry'"):
        FeastHook("mlpipe_feast_missing", config={"project": "p"}).repo_config()
    behaviour = FeastHook.get_ui_field_behaviour()
    assert behaviour["relabeling"]["host"] == "Feast repository path"


def test_locate_definitions(tmp_path):
    from airflow_mlpipe.features.definitions import locate, source_digest

    (tmp_path / "features").mkdir()
    f = tmp_path / "features" / "churn.py"
    f.write_text("x = 1\n")
    assert locate("features/churn.py", [tmp_path / "other", tmp_path]) == f
    assert locate("my_pkg.features") == "my_pkg.features"
    with pytest.raises(ConfigError, match="not found"):
        locate("features/missing.py", [tmp_path])
    before = source_digest([f])
    f.write_text("x = 2\n")
    assert source_digest([f]) != before


def test_feature_view_assets_need_no_store():
    from airflow_mlpipe.features.materialize import feature_view_assets

    assets = feature_view_assets(["profile", "activity"], project="churn")
    assert [a.uri for a in assets] == ["mlpipe://features/churn.profile", "mlpipe://features/churn.activity"]


def test_online_spec_errors():
    from airflow_mlpipe.features.online import OnlineFeatureReader

    with pytest.raises(ConfigError, match="lacks"):
        OnlineFeatureReader.from_spec({"feature_service": "s"})
    with pytest.raises(ConfigError, match="not a Feast spec"):
        OnlineFeatureReader.from_spec(
            {"kind": "other", "repo_config": {"project": "p"}, "feature_service": "s"}
        )
    reader = OnlineFeatureReader({"project": "p", "registry": "r.db"}, "svc", version="sha256:1")
    spec = reader.to_spec()
    assert json.loads(json.dumps(spec))["feature_service_version"] == "sha256:1"
    assert OnlineFeatureReader.from_spec(spec).version == "sha256:1"


def test_normalise_timestamps():
    import pandas as pd

    from airflow_mlpipe.features.training_set import normalise_timestamps

    strings = pd.Series(["2024-01-01T01:00:00+01:00", "2024-01-02T00:00:00Z"])
    out = normalise_timestamps(strings, column="ts", naive="error")
    assert str(out.dt.tz) == "UTC" and out.iloc[0] == pd.Timestamp("2024-01-01T00:00:00Z")
    naive = pd.Series(pd.to_datetime(["2024-01-01 00:00"]))
    with pytest.raises(DataError, match="no time zone"):
        normalise_timestamps(naive, column="ts", naive="error")
    assert normalise_timestamps(naive, column="ts", naive="utc").iloc[0] == pd.Timestamp("2024-01-01T00:00Z")
    with pytest.raises(DataError, match="not timestamps"):
        normalise_timestamps(pd.Series([1, 2]), column="ts", naive="utc")
    with pytest.raises(DataError, match="not timestamps"):
        normalise_timestamps(pd.Series(["soon"]), column="ts", naive="utc")


def test_postgres_offline_store_settings_are_checked():
    from airflow_mlpipe.hooks.feast import check_offline_store, offline_store_type

    full = {"type": "postgres", "host": "pg", "database": "w", "user": "feast", "password": "${PW}"}
    assert offline_store_type({"offline_store": full}) == "postgres"
    assert offline_store_type({"project": "p"}) == "file"
    check_offline_store({"offline_store": full})  # complete: accepted, nothing expanded
    check_offline_store({"offline_store": {"type": "file"}})
    with pytest.raises(ConfigError, match=r"lacks \['database', 'user'\].*\"type\": \"postgres\""):
        check_offline_store({"offline_store": {"type": "postgres", "host": "pg", "password": ""}})
    with pytest.raises(ConfigError, match="port must be a port number"):
        check_offline_store({"offline_store": {**full, "port": "fivefour"}})
    with pytest.raises(ConfigError, match=r"\['user'\] must be strings"):
        check_offline_store({"offline_store": {**full, "user": 7}})
