"""The closed-loop benchmark's figures, from per-day rows."""

from __future__ import annotations

import pytest

from bench._loop_figures import Day, day_table, figures


def _days(quality: list[float], flagged: set[int], baseline: list[float] | None = None) -> list[Day]:
    return [
        Day(index=i, flagged=i in flagged, quality=q, baseline_quality=baseline[i] if baseline else None)
        for i, q in enumerate(quality)
    ]


def test_a_loop_that_detects_at_once_and_recovers() -> None:
    #          pre-drift        drift   recovering  recovered
    quality = [0.80, 0.82, 0.81, 0.50, 0.70, 0.79, 0.80, 0.81]
    baseline = [0.80, 0.82, 0.81, 0.50, 0.49, 0.51, 0.50, 0.52]
    f = figures(_days(quality, {3}, baseline), drift_day=3)
    assert f.pre_drift_days == 3
    assert f.detection_delay == 0
    assert f.false_alarms == 0
    assert f.pre_quality == pytest.approx(0.81)
    assert f.recovery_batches == 2  # from day 5 on, every 3-day mean holds 0.95 × 0.81
    assert f.daily_recovery_batches == 2  # and so does every single day
    assert f.min_day_ratio == pytest.approx(0.80 / 0.81)
    assert f.last_days == 2  # days 6 and 7 (drift day + 3 on)
    assert f.last_ratio == pytest.approx(0.805 / 0.81)
    assert f.baseline_last_ratio == pytest.approx(0.51 / 0.81)
    assert f.met


def test_late_detection_false_alarms_and_no_recovery_miss_the_target() -> None:
    quality = [0.80, 0.80, 0.80, 0.50, 0.50, 0.79, 0.60, 0.80]
    f = figures(_days(quality, {1, 5}), drift_day=3)
    assert f.false_alarms == 1
    assert f.detection_delay == 2
    assert f.recovery_batches is None  # the 3-day mean of days 5-7 (0.73) is still below 0.76
    assert f.daily_recovery_batches == 4  # the dip on day 6 restarts the count
    assert f.baseline_last_ratio is None
    assert not f.met
    never = figures(_days([0.8, 0.8, 0.5, 0.5], set()), drift_day=2)
    assert never.detection_delay is None and never.recovery_batches is None and not never.met


def test_needs_days_on_both_sides_of_the_drift_and_prints_a_row_per_day() -> None:
    with pytest.raises(ValueError, match="before and after"):
        figures(_days([0.8, 0.8], set()), drift_day=5)
    table = day_table(_days([0.8, 0.5], {1}, [0.8, 0.4]), drift_day=1)
    assert "| 1 (drift) | yes |" in table
    assert table.count("\n") == 3


def test_recovery_is_judged_on_a_mean_of_batches_so_one_noisy_day_does_not_reset_it() -> None:
    #          pre-drift           drift  recovered, with one noisy day (0.74 < 0.95 × 0.80)
    quality = [0.78, 0.82, 0.80, 0.50, 0.79, 0.81, 0.74, 0.80, 0.81, 0.79]
    f = figures(_days(quality, {3}), drift_day=3)
    assert f.pre_quality == pytest.approx(0.80)
    assert f.recovery_batches == 1  # every 3-day mean from day 4 on is >= 0.76
    assert f.daily_recovery_batches == 4  # single days: day 6 restarts the count
    assert f.min_day_ratio == pytest.approx(0.74 / 0.80)
    assert f.met
    # a lasting dip is not noise: the mean of days 6-8 falls below the floor and restarts the count
    lasting = figures(_days([*quality[:6], 0.74, 0.74, 0.75, 0.80], {3}), drift_day=3)
    assert lasting.recovery_batches == 4 and not lasting.met


def test_with_fewer_days_than_the_window_all_of_them_are_one_window() -> None:
    assert figures(_days([0.80, 0.80, 0.76, 0.80], {2}), drift_day=2).recovery_batches == 0
    assert figures(_days([0.80, 0.80, 0.50, 0.90], {2}), drift_day=2).recovery_batches is None
