"""The one-table example DAG (dags/example_one_table.py, included by docs/howto/your-data.md) runs:
repeating entity ids, one timestamp per row, a text feature, the gate finding the trained version."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _transactions(rows: int = 400):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(11)
    start = pd.Timestamp("2024-03-01", tz="UTC")
    seconds = rng.choice(10 * 86_400, size=rows, replace=False)  # one timestamp per row
    category = rng.choice(["grocery", "travel", "online", "fuel"], size=rows)
    amount = rng.gamma(2.0, 40.0, rows).round(2)
    risk = 0.05 + 0.6 * ((category == "online") & (amount > 80))
    return pd.DataFrame(
        {
            "card_id": rng.integers(0, 60, rows).astype("int64"),  # ids repeat
            "event_timestamp": start + pd.to_timedelta(seconds, unit="s"),
            "amount": amount,
            "merchant_category": category,
            "fraud": (rng.random(rows) < risk).astype("int64"),
        }
    )


def test_one_table_example_dag_runs(run_dag, tmp_path, monkeypatch):
    from airflow_mlpipe.core.datasets import read_table

    table = _transactions()
    table.to_parquet(tmp_path / "transactions.parquet", index=False)
    monkeypatch.setenv("MLPIPE_DATA_DIR", str(tmp_path))  # read by the definitions and the templates
    dag = runpy.run_path(str(ROOT / "dags" / "example_one_table.py"))["dag"]
    result = run_dag(dag)
    assert result.state == "success", result.task_states

    training_set = result.xcom("training_set")
    assert training_set["row_count"] + training_set["holdout"]["rows"] == len(table)
    # each row got its own values: the latest at or before its time is the row itself
    joined = read_table(training_set["training_set_uri"]).merge(
        table, on=["card_id", "event_timestamp"], suffixes=("", "_source")
    )
    assert len(joined) == training_set["row_count"]
    assert (joined["amount"] == joined["amount_source"]).all()
    assert (joined["merchant_category"] == joined["merchant_category_source"]).all()

    trained = result.xcom("train")
    assert set(trained["features"]) == {"amount", "merchant_category"}
    assert result.xcom("gate")["challenger_version"] == trained["version"]
