"""The seeded drift scenarios: same seed, same data; each drift kind changes what it says, only that."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airflow_mlpipe.exceptions import ConfigError
from mlpipe_dev import scenarios as sc


def _logit_fit(frame: pd.DataFrame, y: pd.Series) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    x = frame[sc.NUMERIC_FEATURES].to_numpy()
    return LogisticRegression(C=1e6, max_iter=1000).fit(x, y).coef_[0]


def _pooled(spec: sc.ScenarioSpec, days: range) -> tuple[pd.DataFrame, pd.DataFrame]:
    pairs = [sc.generate_day(spec, i) for i in days]
    return (
        pd.concat([f for f, _ in pairs], ignore_index=True),
        pd.concat([lab for _, lab in pairs], ignore_index=True),
    )


def test_same_seed_same_batches_other_seed_other_batches() -> None:
    spec = sc.ScenarioSpec(kind="both", days=4, drift_day=2, rows_per_day=50)
    first, again = sc.generate_day(spec, 3), sc.generate_day(spec, 3)
    pd.testing.assert_frame_equal(first[0], again[0])
    pd.testing.assert_frame_equal(first[1], again[1])
    other = sc.generate_day(sc.ScenarioSpec(kind="both", days=4, drift_day=2, rows_per_day=50, seed=8), 3)
    assert not np.allclose(first[0]["x1"], other[0]["x1"])
    assert (first[1][sc.LABEL_TIMESTAMP] > first[0][sc.TIMESTAMP]).all()


def test_covariate_drift_moves_features_and_keeps_the_label_relation() -> None:
    spec = sc.ScenarioSpec(kind="covariate", days=8, drift_day=4, rows_per_day=1500)
    before, before_y = _pooled(spec, range(0, 4))
    after, after_y = _pooled(spec, range(4, 8))
    assert after["x1"].mean() - before["x1"].mean() == pytest.approx(1.5, abs=0.1)
    assert after["x3"].mean() - before["x3"].mean() == pytest.approx(-1.0, abs=0.1)
    assert (after["segment"] == "c").mean() > (before["segment"] == "c").mean() + 0.2
    # The relation holds: the effect of x1 fitted after the drift is the one fitted before.
    assert _logit_fit(after, after_y[sc.LABEL])[0] == pytest.approx(
        _logit_fit(before, before_y[sc.LABEL])[0], abs=0.25
    )


def test_concept_drift_flips_an_effect_with_identical_features() -> None:
    concept = sc.ScenarioSpec(kind="concept", days=8, drift_day=4, rows_per_day=1500)
    none = sc.ScenarioSpec(kind="concept", days=8, drift_day=None, rows_per_day=1500)
    for day in (2, 6):  # features never change, before or after the drift
        pd.testing.assert_frame_equal(sc.features_of(concept, day), sc.features_of(none, day))
    before, before_y = _pooled(concept, range(0, 4))
    after, after_y = _pooled(concept, range(4, 8))
    effect_before = _logit_fit(before, before_y[sc.LABEL])[0]
    effect_after = _logit_fit(after, after_y[sc.LABEL])[0]
    assert effect_before == pytest.approx(sc.WEIGHTS["x1"], abs=0.25)
    assert effect_after == pytest.approx(-sc.WEIGHTS["x1"], abs=0.25)
    # The other effects stay.
    assert _logit_fit(after, after_y[sc.LABEL])[1] == pytest.approx(sc.WEIGHTS["x2"], abs=0.25)
    # Labels before the drift are those of the undrifted world.
    pd.testing.assert_frame_equal(sc.labels_of(concept, 3), sc.labels_of(none, 3))


def test_written_layout_and_invalid_specs(tmp_path) -> None:
    spec = sc.ScenarioSpec(days=3, drift_day=1, rows_per_day=20)
    sc.write_history(tmp_path, spec, range(2))
    assert sorted(p.name for p in (tmp_path / "features").iterdir()) == [
        "2024-03-01.parquet",
        "2024-03-02.parquet",
    ]
    assert len(pd.read_parquet(tmp_path / "reference" / "features.parquet")) == 40
    sc.write_features(tmp_path, spec, 2, extra={"prediction": [1] * 20})
    assert "prediction" in pd.read_parquet(tmp_path / "features" / "2024-03-03.parquet").columns
    with pytest.raises(ConfigError, match="kind"):
        sc.ScenarioSpec(kind="sudden")
    with pytest.raises(ConfigError, match="drift_day"):
        sc.ScenarioSpec(days=3, drift_day=3)
