"""Training windows and holdouts chosen by event time (plain pandas, no store)."""

from __future__ import annotations

import datetime as dt

import pytest

from airflow_mlpipe.config.features import HoldoutConfig, TrainingWindowConfig
from airflow_mlpipe.exceptions import DataError
from airflow_mlpipe.features.window import holdout_mask, window_mask

DAY0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def _daily(days=10, per_day=10):
    import pandas as pd

    rows = [
        {"id": d * per_day + i, "ts": pd.Timestamp(DAY0) + pd.Timedelta(days=d, hours=i), "y": i % 2}
        for d in range(days)
        for i in range(per_day)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("cfg", "drift_since", "first_day", "rows"),
    [
        (TrainingWindowConfig(mode="all"), None, 0, 100),
        (TrainingWindowConfig(), None, 0, 100),  # auto without drift: all history
        (TrainingWindowConfig(), DAY0 + dt.timedelta(days=8), 8, 20),  # auto after drift
        (TrainingWindowConfig(mode="last_batches", batches=3), None, 7, 30),
        (TrainingWindowConfig(mode="last_days", days=2), None, 8, 20),
        # a drift one batch ago, widened back to the newest 25 rows
        (TrainingWindowConfig(mode="since_drift", min_rows=25), DAY0 + dt.timedelta(days=9), 7, 25),
    ],
)
def test_window_keeps_the_configured_rows(cfg, drift_since, first_day, rows):
    frame = _daily()
    keep, record = window_mask(frame, "ts", cfg, drift_since)
    kept = frame[keep]
    assert len(kept) == record["rows"] == rows
    assert kept["ts"].min().floor("D") == DAY0 + dt.timedelta(days=first_day)
    assert kept["ts"].max() == frame["ts"].max()  # a window always ends at the newest row


def test_time_holdout_is_the_newest_slice_and_ties_stay_together():
    frame = _daily()
    frame.loc[frame.index[75:85], "ts"] = frame["ts"].iloc[80]  # ten rows share the cut-off time
    held = holdout_mask(frame, "ts", HoldoutConfig(fraction=0.2), None)
    assert frame.loc[~held, "ts"].max() < frame.loc[held, "ts"].min()
    assert held.sum() >= 20 and held[75:85].all()


def test_holdout_of_last_batches_and_random_holdout_keep_duplicates_on_one_side():
    import pandas as pd

    frame = _daily()
    held = holdout_mask(frame, "ts", HoldoutConfig(batches=2), None)
    assert held.sum() == 20 and frame.loc[held, "ts"].min() == pd.Timestamp(DAY0) + pd.Timedelta(days=8)
    doubled = pd.concat([frame, frame], ignore_index=True)
    held = holdout_mask(doubled, "ts", HoldoutConfig(method="random", fraction=0.3, seed=1), None)
    train_ids, held_ids = set(doubled.loc[~held, "id"]), set(doubled.loc[held, "id"])
    assert not train_ids & held_ids and len(held_ids) == 30
    assert held.equals(
        holdout_mask(doubled, "ts", HoldoutConfig(method="random", fraction=0.3, seed=1), None)
    )


def test_impossible_splits_are_data_errors():
    frame = _daily(days=1, per_day=5)
    frame["ts"] = frame["ts"].iloc[0]  # every row at one instant: no time order to split on
    with pytest.raises(DataError, match="leaves no row for training"):
        holdout_mask(frame, "ts", HoldoutConfig(), None)
    with pytest.raises(DataError, match="selects none"):
        window_mask(frame, "ts", TrainingWindowConfig(mode="since_drift"), DAY0 + dt.timedelta(days=5))
