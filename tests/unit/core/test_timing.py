from __future__ import annotations

import os

import pytest

from airflow_mlpipe.core import timing

pytestmark = pytest.mark.unit


def test_deadline_grows_with_load(monkeypatch: pytest.MonkeyPatch) -> None:
    cores = os.cpu_count() or 1
    monkeypatch.delenv(timing.SCALE_ENV, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert timing.scaled(60) == 60
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0 * cores, 0.0, 0.0))
    assert timing.scaled(60) == pytest.approx(180)
    monkeypatch.setattr(os, "getloadavg", lambda: (100.0 * cores, 0.0, 0.0))
    assert timing.scaled(60) == pytest.approx(60 * timing.MAX_LOAD_FACTOR)


def test_explicit_scale_multiplies_and_rejects_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setenv(timing.SCALE_ENV, "2.5")
    assert timing.scaled(10) == pytest.approx(25)
    monkeypatch.setenv(timing.SCALE_ENV, "fast")
    with pytest.raises(ValueError, match="MLPIPE_TIMEOUT_SCALE"):
        timing.scaled(10)
    monkeypatch.setenv(timing.SCALE_ENV, "0")
    with pytest.raises(ValueError, match="positive"):
        timing.scaled(10)
