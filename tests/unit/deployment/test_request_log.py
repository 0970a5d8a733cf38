"""The HTTP service's prediction log: the part format it shares with ``write_log``, the fields a
request carries, buffering, and writes that never fail a request (pure pandas, ~1 s)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from airflow_mlpipe._serving import request_log
from airflow_mlpipe._serving.request_log import RequestLog
from airflow_mlpipe.config.monitoring import PredictionLogWriterConfig
from airflow_mlpipe.config.streaming import StreamConfig
from airflow_mlpipe.exceptions import ConfigError
from airflow_mlpipe.monitoring import log_parts
from airflow_mlpipe.monitoring.log_parts import PredictionBuffer
from airflow_mlpipe.monitoring.prediction_log import read_log, write_log

INPUTS = [{"name": "x", "type": "double"}, {"name": "store_id", "type": "long"}]
T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _log(tmp_path: Path, counts: dict[str, int] | None = None, **spec: Any) -> RequestLog:
    spec = {"directory": str(tmp_path / "log"), "keys": ["customer_id"], "timestamp_column": "ts"} | spec

    def count(outcome: str, rows: int) -> None:
        if counts is not None:
            counts[outcome] = counts.get(outcome, 0) + rows

    return RequestLog(spec, INPUTS, ["customer_id"], "7", count=count)


def test_a_buffered_part_has_exactly_the_columns_and_types_write_log_writes(tmp_path: Path):
    buffer = PredictionBuffer(str(tmp_path / "a"), ["customer_id"], "ts", "7")
    buffer.add((1, "2026-01-02T03:04:05+01:00", 1, 0.75))
    buffer.add((2, "2026-01-02T03:04:05", 0, None))  # naive: UTC
    path = buffer.write(buffer.take(), now=T0)
    assert path is not None and Path(path).parent.name == "2026-01-02" and buffer.written == 2
    served = read_log(str(tmp_path / "a"))
    batch = pd.DataFrame(
        {"customer_id": [1, 2], "ts": pd.to_datetime(["2026-01-02T02:04:05Z"] * 2), "prediction": [1, 0]}
    ).assign(scores=[0.75, float("nan")])
    write_log(
        batch,
        str(tmp_path / "b"),
        keys=["customer_id"],
        model_version="7",
        timestamp_column="ts",
        score_column="scores",
        now=T0,
    )
    written = read_log(str(tmp_path / "b"))
    assert list(served.columns) == list(written.columns)
    assert served.dtypes.to_dict() == written.dtypes.to_dict()
    assert served["ts"].tolist() == [
        pd.Timestamp("2026-01-02T02:04:05Z"),
        pd.Timestamp("2026-01-02T03:04:05Z"),
    ]
    assert served["score"].iloc[0] == 0.75 and pd.isna(served["score"].iloc[1])
    assert served["model_version"].tolist() == ["7", "7"]
    assert (served["logged_at"] == pd.Timestamp(T0)).all()


def test_rows_carry_the_log_fields_beside_the_features_and_only_those_are_taken_out(tmp_path: Path):
    log = _log(tmp_path, keys=["customer_id", "store_id"])  # store_id is also a model input
    rows: list[Any] = [
        {"x": 1.0, "store_id": 3, "customer_id": "c1", "ts": "2026-01-02T03:04:05Z"},
        {"x": 2.0, "store_id": 4, "color": "red"},
        "not a row",
    ]
    fields = log.take_fields(rows, "rows")
    assert fields == [{"customer_id": "c1", "ts": "2026-01-02T03:04:05Z"}, {}, {}]
    # The model input stays; an unknown column stays too, for validation to refuse.
    assert rows[:2] == [{"x": 1.0, "store_id": 3}, {"x": 2.0, "store_id": 4, "color": "red"}]


def test_a_bad_timestamp_or_key_refuses_the_request(tmp_path: Path):
    log = _log(tmp_path)
    with pytest.raises(ValueError) as bad:
        log.take_fields([{"x": 1.0, "ts": "yesterday"}, {"x": 1.0, "customer_id": [1]}], "rows")
    problems = bad.value.args[0]
    assert problems[0] == "rows[0].ts must be an ISO 8601 time, got 'yesterday'"
    assert problems[1].startswith("rows[1] has key(s) ['customer_id']")


def test_scored_rows_are_buffered_with_key_time_prediction_score_and_written_on_close(tmp_path: Path):
    counts: dict[str, int] = {}
    log = _log(tmp_path, counts)
    rows = [
        {"x": 1.0, "store_id": 1, "customer_id": "a", "ts": "2026-01-02T00:00:00Z"},
        {"x": 2.0, "store_id": 1, "customer_id": "b"},
        {"x": 3.0, "store_id": 1},
    ]
    answer = {"predictions": [1, 0, 1], "scores": [0.9, 0.2, 0.8]}

    async def serve() -> None:
        fields = log.take_fields(rows, "rows")
        log.add(rows, fields, answer, arrived=T0.isoformat())
        assert log.buffer.rows and not (tmp_path / "log").exists()  # not written on the request's path
        await log.close()

    asyncio.run(serve())
    logged = read_log(str(tmp_path / "log")).sort_values("customer_id")
    assert logged["customer_id"].tolist() == ["a", "b"]
    assert logged["ts"].tolist() == [pd.Timestamp("2026-01-02T00:00:00Z"), pd.Timestamp(T0)]
    assert logged["prediction"].tolist() == [1, 0] and logged["score"].tolist() == [0.9, 0.2]
    assert counts == {"skipped": 1, "written": 2} and log.skipped == 1


def test_a_full_buffer_is_written_at_once_and_a_failing_write_is_counted_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(log_parts, "FLUSH_ROWS", 2)
    counts: dict[str, int] = {}
    (tmp_path / "log").write_text("a file where the log directory should be")
    log = _log(tmp_path, counts)
    rows = [{"x": 1.0, "store_id": 1, "customer_id": i} for i in range(2)]

    async def serve() -> None:
        log.add(rows, [{}, {}], {"predictions": [0, 1]}, arrived=T0.isoformat())
        assert not log.buffer.rows and log._timer is None  # handed to the writer at once
        await log.close()

    asyncio.run(serve())
    assert counts == {"failed": 2} and log.buffer.failed == 2


def test_a_part_is_due_flush_seconds_after_its_first_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(log_parts, "FLUSH_SECONDS", 0.05)
    log = _log(tmp_path)

    async def serve() -> None:
        log.add([{"customer_id": "a"}], [{}], {"predictions": [1]}, arrived=T0.isoformat())
        deadline = asyncio.get_running_loop().time() + 10
        while not read_log(str(tmp_path / "log")).shape[0]:
            assert asyncio.get_running_loop().time() < deadline, "no part was written"
            await asyncio.sleep(0.01)
        await log.close()

    asyncio.run(serve())
    assert read_log(str(tmp_path / "log"))["score"].isna().all()  # no scores: not a binary classifier


def test_the_writer_settings_are_validated_once_for_every_serving_path():
    with pytest.raises(ConfigError, match="keys"):
        PredictionLogWriterConfig.of({"uri": "/tmp/log", "keys": "customer_id"}, "prediction_log")
    with pytest.raises(ConfigError, match="uri"):
        PredictionLogWriterConfig.of({"keys": ["customer_id"]}, "prediction_log")
    with pytest.raises(ConfigError, match="also a key"):
        PredictionLogWriterConfig.of({"uri": "/l", "keys": ["t"], "timestamp_column": "t"}, "prediction_log")
    with pytest.raises(ConfigError, match="unknown key"):
        PredictionLogWriterConfig.of({"uri": "/l", "keys": ["k"], "label_column": "y"}, "prediction_log")
    cfg = PredictionLogWriterConfig.of({"uri": "/l", "keys": ["k"], "timestamp_column": None}, "p")
    assert cfg is not None and cfg.timestamp_column == "event_timestamp"
    with pytest.raises(ConfigError, match="StreamConfig.prediction_log"):
        StreamConfig(redis_url="redis://x", input_stream="a", output_stream="b", prediction_log={"uri": "/l"})


def test_the_deploy_operator_refuses_a_bad_prediction_log():
    from airflow_mlpipe.operators.bentoml import BentoDeployOperator

    with pytest.raises(ConfigError, match="prediction_log"):
        BentoDeployOperator(task_id="d", model_name="m", prediction_log={"uri": "/l", "keys": []})
    op = BentoDeployOperator(task_id="d", model_name="m", prediction_log={"uri": "/l", "keys": ["k"]})
    assert "prediction_log" in op.template_fields


def test_the_request_log_module_runs_without_the_provider():
    """It is copied into bentos: only the standard library and the copied format module."""
    source = Path(request_log.__file__).read_text() + Path(log_parts.__file__).read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert not [line for line in imports if "airflow" in line and "except" not in line]


def test_the_openapi_document_names_the_log_fields_a_row_may_carry():
    from airflow_mlpipe.deploy.schema import openapi_spec

    config = {"model_name": "m", "model_version": "1", "max_rows": 10}
    plain = openapi_spec(config, INPUTS, [])["components"]["schemas"]["Row"]
    assert set(plain["properties"]) == {"x", "store_id"}
    log = {"directory": "/l", "keys": ["customer_id", "store_id"], "timestamp_column": "ts"}
    row = openapi_spec({**config, "prediction_log": log}, INPUTS, [])["components"]["schemas"]["Row"]
    assert set(row["properties"]) == {"x", "store_id", "customer_id", "ts"}
    assert row["properties"]["store_id"] == plain["properties"]["store_id"]  # a model input stays one
    assert row["required"] == plain["required"] and row["additionalProperties"] is False


def test_an_entities_request_logs_its_entity_keys_and_keeps_them_for_the_online_store(tmp_path: Path):
    log = _log(tmp_path)  # customer_id is the entity key
    entities: list[Any] = [{"customer_id": 7, "ts": "2026-01-02T00:00:00+02:00"}, {"customer_id": 8}]
    fields = log.take_fields(entities, "entities")
    assert entities == [{"customer_id": 7}, {"customer_id": 8}]  # only the timestamp is taken out

    async def serve() -> None:
        log.add(entities, fields, {"predictions": [1.5, 2.5]}, arrived=T0.isoformat())
        await log.close()

    asyncio.run(serve())
    logged = read_log(str(tmp_path / "log")).sort_values("customer_id")
    assert logged["customer_id"].tolist() == [7, 8] and logged["prediction"].tolist() == [1.5, 2.5]
    assert logged["ts"].tolist() == [pd.Timestamp("2026-01-01T22:00:00Z"), pd.Timestamp(T0)]


def test_the_log_does_not_change_which_request_fields_are_required():
    """``rows`` alone without an online spec, one of ``rows``/``entities`` with one: with or
    without a prediction log."""
    from airflow_mlpipe.deploy.schema import openapi_spec

    config = {"model_name": "m", "model_version": "1", "max_rows": 10}
    log = {"directory": "/l", "keys": ["customer_id"], "timestamp_column": "ts"}
    keys = [{"name": "customer_id", "type": "long"}]
    for cfg in (config, {**config, "prediction_log": log}):
        rows_only = openapi_spec(cfg, INPUTS, [])["components"]["schemas"]["PredictRequest"]
        assert rows_only.get("required") == ["rows"] and "oneOf" not in rows_only, cfg
        either = openapi_spec(cfg, INPUTS, keys)["components"]["schemas"]["PredictRequest"]
        assert either["oneOf"] == [{"required": ["rows"]}, {"required": ["entities"]}], cfg
        assert "required" not in either
