"""What the preloading executors import, and that a missing or broken library never stops them."""

from __future__ import annotations

import logging
import sys

import pytest

from airflow_mlpipe.executors.preload import DEFAULT_MODULES, configured_modules, preload


def test_unset_option_preloads_the_stages_libraries(monkeypatch):
    monkeypatch.delenv("AIRFLOW__MLPIPE__PRELOAD_MODULES", raising=False)
    assert configured_modules() == list(DEFAULT_MODULES)


@pytest.mark.parametrize(
    ("value", "modules"),
    [(" pandas , sklearn.metrics,,", ["pandas", "sklearn.metrics"]), ("", [])],
)
def test_the_option_names_the_modules(monkeypatch, value, modules):
    monkeypatch.setenv("AIRFLOW__MLPIPE__PRELOAD_MODULES", value)
    assert configured_modules() == modules


def test_missing_and_broken_modules_are_skipped_and_logged(tmp_path, monkeypatch, caplog):
    (tmp_path / "mlpipe_broken_probe.py").write_text("raise RuntimeError('broken at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with caplog.at_level(logging.INFO, logger="airflow_mlpipe.executors.preload"):
        took = preload(["mlpipe_no_such_module", "mlpipe_broken_probe", "json"])
    assert list(took) == ["json"] and took["json"] >= 0
    assert "mlpipe_broken_probe" not in sys.modules
    assert "importing mlpipe_broken_probe failed (RuntimeError: broken at import)" in caplog.text
    assert "mlpipe_no_such_module is not installed; skipped" in caplog.text
