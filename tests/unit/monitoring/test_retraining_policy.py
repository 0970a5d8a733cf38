"""Drift rules beyond a share of all columns, and the retraining cooldown (plain logic)."""

from __future__ import annotations

import pytest

from airflow_mlpipe.config.monitoring import DriftConfig
from airflow_mlpipe.exceptions import ConfigError, DataError
from airflow_mlpipe.monitoring.drift import drift_decision
from airflow_mlpipe.monitoring.retraining import cooldown_decision

FEATURES = [f"f{i}" for i in range(9)]


def test_two_of_nine_columns_fire_only_through_an_important_column_or_weights():
    drifted = ["f0", "f5"]
    share = 2 / 9
    assert drift_decision(share, drifted, FEATURES, DriftConfig(drift_share=0.3))["drift_detected"] is False
    by_importance = drift_decision(
        share, drifted, FEATURES, DriftConfig(drift_share=0.3, important_columns=["f0"])
    )
    assert by_importance["drift_detected"] is True and by_importance["drift_rules"] == ["important_column"]
    weights = {"f0": 5.0, "f5": 1.0}  # the rest weigh 1: weighted share 6 / 13
    weighted = drift_decision(share, drifted, FEATURES, DriftConfig(drift_share=0.3, column_weights=weights))
    assert weighted["weighted_share"] == pytest.approx(6 / 13)
    assert weighted["drift_detected"] is True and weighted["drift_rules"] == ["share"]
    assert weighted["drift_share"] == pytest.approx(share)  # Evidently's number is kept as is


def test_rules_on_columns_never_compared_or_bad_weights_are_refused():
    with pytest.raises(DataError, match="never fire"):
        drift_decision(0.0, [], FEATURES, DriftConfig(important_columns=["churned"]))
    with pytest.raises(ConfigError, match="weights >= 0"):
        DriftConfig(column_weights={"f0": -1})
    with pytest.raises(ConfigError, match="all zero"):
        DriftConfig(column_weights={"f0": 0})


def test_cooldown_lets_one_request_per_serving_version_through():
    state = None
    asked = []
    # v1 serves; drift on every batch; the retrained v2 takes over after the 3rd batch
    for serving in ["1", "1", "1", "2", "2"]:
        ask, state, _ = cooldown_decision(state, serving, True, cooldown_batches=3)
        asked.append(ask)
    assert asked == [True, False, False, True, False]


def test_cooldown_expires_when_the_request_was_not_answered():
    state = None
    asked = []
    for _ in range(6):  # the gate blocked the challenger: v1 keeps serving and drift persists
        ask, state, note = cooldown_decision(state, "1", True, cooldown_batches=2)
        asked.append(ask)
    assert asked == [True, False, False, True, False, False]
    assert "held for up to 2" in note


def test_without_cooldown_every_drifted_batch_asks():
    state = None
    for _ in range(3):
        ask, state, _ = cooldown_decision(state, "1", True, cooldown_batches=0)
        assert ask
    assert cooldown_decision(state, "1", False, cooldown_batches=3)[0] is False


def test_refresh_asks_again_on_the_next_batches_once_the_retrained_version_serves():
    state = None
    decisions = []
    # v1 serves; batch 0 drifts; v2 (trained on batch 0) serves for batch 1, v3 for batch 2 …
    for serving, drifts, start in [
        ("1", True, "d0"),
        ("2", False, "d1"),
        ("3", False, "d2"),
        ("4", False, "d3"),
    ]:
        ask, state, note = cooldown_decision(
            state, serving, drifts, cooldown_batches=3, refresh_batches=2, batch_start=start
        )
        decisions.append((ask, state.get("drift_since"), state.get("reason")))
    assert decisions == [
        (True, "d0", "checks"),
        (True, "d0", "refresh"),  # the window still starts at the drifted batch
        (True, "d0", "refresh"),
        (False, "d0", "refresh"),  # two refreshes, then nothing more to ask
    ]
    assert note == "no retraining needed" and state["refreshes_left"] == 0


def test_a_refresh_waits_for_the_version_asked_for_and_repeats_after_the_cooldown():
    state = None
    asked = []
    # the retraining after the drift is still running (v1 serves on), then the gate blocks it
    for serving in ["1", "1", "1", "1", "1"]:
        ask, state, note = cooldown_decision(
            state,
            serving,
            serving == "1" and not asked,
            cooldown_batches=2,
            refresh_batches=1,
            batch_start="d",
        )
        asked.append(ask)
    assert asked == [True, False, False, True, False]
    assert state["reason"] == "refresh" and state["drift_since"] == "d" and state["refreshes_left"] == 0


def test_without_refresh_a_served_retraining_ends_the_episode():
    state = None
    ask, state, _ = cooldown_decision(state, "1", True, cooldown_batches=3, batch_start="d0")
    assert ask and state["refreshes_left"] == 0
    assert cooldown_decision(state, "2", False, cooldown_batches=3)[0] is False


def test_a_new_drift_during_refreshes_starts_a_new_episode():
    state = None
    _, state, _ = cooldown_decision(state, "1", True, cooldown_batches=1, refresh_batches=3, batch_start="d0")
    _, state, _ = cooldown_decision(
        state, "2", False, cooldown_batches=1, refresh_batches=3, batch_start="d1"
    )
    ask, state, _ = cooldown_decision(
        state, "3", True, cooldown_batches=1, refresh_batches=3, batch_start="d2"
    )
    assert (
        ask and state["drift_since"] == "d2" and state["refreshes_left"] == 3 and state["reason"] == "checks"
    )
