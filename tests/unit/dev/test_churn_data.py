from __future__ import annotations

import hashlib
import json

import pytest

from airflow_mlpipe.exceptions import ConfigError
from mlpipe_dev import churn_data as churn

SMALL = churn.ChurnSpec(seed=7, days=6, rows_per_day=300, customers=1200, drift_day=3)


def _digests(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_fixed_seed_gives_identical_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    churn.write_batches(a, SMALL)
    churn.write_batches(b, SMALL)
    assert _digests(a) == _digests(b)
    assert len(list((a / "features").glob("*.parquet"))) == SMALL.days
    other = tmp_path / "c"
    churn.write_batches(other, churn.ChurnSpec(seed=8, days=6, rows_per_day=300, customers=1200, drift_day=3))
    assert _digests(other)["features/2024-01-01.parquet"] != _digests(a)["features/2024-01-01.parquet"]


def test_adding_days_never_changes_earlier_days():
    longer = churn.ChurnSpec(seed=7, days=9, rows_per_day=300, customers=1200, drift_day=3)
    f1, l1 = churn.generate_day(SMALL, 2)
    f2, l2 = churn.generate_day(longer, 2)
    assert f1.equals(f2) and l1.equals(l2)


def test_schema_entities_and_timestamps():
    features, labels = churn.generate_day(SMALL, 0)
    assert list(features.columns) == [churn.ENTITY, churn.TIMESTAMP, *churn.FEATURES]
    assert str(features[churn.TIMESTAMP].dt.tz) == "UTC"
    assert features[churn.ENTITY].is_unique and len(features) == SMALL.rows_per_day
    assert (features[churn.TIMESTAMP].dt.date.astype(str) == "2024-01-01").all()
    # a label is always observed after the features it depends on (point-in-time joins need it)
    assert (labels[churn.LABEL_TIMESTAMP] > features[churn.TIMESTAMP]).all()
    assert set(labels[churn.LABEL].unique()) <= {0, 1}
    assert set(features["contract_type"]) <= set(churn.CONTRACTS)


def test_drift_is_injected_on_the_documented_day_only():
    import pandas as pd

    before = pd.concat([churn.generate_day(SMALL, i)[0] for i in range(SMALL.drift_day)])
    after = pd.concat([churn.generate_day(SMALL, i)[0] for i in range(SMALL.drift_day, SMALL.days)])
    before_labels = pd.concat([churn.generate_day(SMALL, i)[1] for i in range(SMALL.drift_day)])
    after_labels = pd.concat([churn.generate_day(SMALL, i)[1] for i in range(SMALL.drift_day, SMALL.days)])
    assert after["monthly_charges"].mean() > 1.2 * before["monthly_charges"].mean()
    assert after["support_calls_30d"].mean() > 1.6 * before["support_calls_30d"].mean()
    assert after["usage_gb"].mean() < 0.8 * before["usage_gb"].mean()
    assert (after["contract_type"] == "month-to-month").mean() > (
        before["contract_type"] == "month-to-month"
    ).mean() + 0.1
    # undrifted features keep their distribution
    assert abs(after["tenure_months"].mean() - before["tenure_months"].mean()) < 2.0
    assert after_labels[churn.LABEL].mean() > before_labels[churn.LABEL].mean() + 0.05


def test_no_drift_when_disabled():
    spec = churn.ChurnSpec(seed=7, days=6, rows_per_day=300, customers=1200, drift_day=None)
    first, last = churn.generate_day(spec, 0)[0], churn.generate_day(spec, 5)[0]
    assert abs(last["monthly_charges"].mean() - first["monthly_charges"].mean()) < 5.0


def test_manifest_and_load(tmp_path):
    info = churn.write_batches(tmp_path, SMALL)
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["drift_date"] == "2024-01-04" == info["drift_date"]
    assert on_disk["drifted_features"] == churn.DRIFTED_FEATURES
    frame = churn.load(tmp_path, "labels", days=["2024-01-01", "2024-01-02"])
    assert len(frame) == 2 * SMALL.rows_per_day
    import pandas as pd

    reference = pd.read_parquet(tmp_path / "reference" / "features.parquet")
    assert len(reference) == SMALL.drift_day * SMALL.rows_per_day  # only the undrifted days
    assert reference["event_timestamp"].max() < pd.Timestamp("2024-01-04", tz="UTC")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"days": 0}, "days"),
        ({"drift_day": 10}, "drift_day"),
        ({"start": "yesterday"}, "YYYY-MM-DD"),
        ({"customers": 100, "rows_per_day": 500}, "customers"),
    ],
)
def test_bad_spec_says_what_to_change(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        churn.ChurnSpec(**kwargs)


def test_load_missing_directory_is_a_data_error(tmp_path):
    from airflow_mlpipe.exceptions import DataError

    with pytest.raises(DataError, match="No features batches"):
        churn.load(tmp_path)


def test_churn_data_command(tmp_path, capsys):
    assert churn.main([str(tmp_path), "--days", "3", "--rows-per-day", "50", "--drift-day", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["drift_date"] == "2024-01-03"
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == [
        "2024-01-01.parquet",
        "2024-01-02.parquet",
        "2024-01-03.parquet",
    ]
