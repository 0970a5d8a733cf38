"""Airflow discovers the provider the standard way (entry point -> get_provider_info)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

from airflow_mlpipe import __version__
from airflow_mlpipe.get_provider_info import get_provider_info

pytestmark = pytest.mark.integration


def test_airflow_lists_provider_connection_types_and_links():
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "airflow-mlpipe" in pm.providers
    assert pm.providers["airflow-mlpipe"].version == metadata.version("airflow-mlpipe") == __version__
    assert get_provider_info()["versions"] == [__version__]
    hooks = pm.hooks
    assert hooks["mlpipe_mlflow"].hook_class_name == "airflow_mlpipe.hooks.mlflow.MlflowHook"
    assert hooks["mlpipe_feast"].hook_class_name == "airflow_mlpipe.hooks.feast.FeastHook"
    links = set(pm.extra_links_class_names)
    assert "airflow_mlpipe.operators.great_expectations.DataDocsLink" in links
    assert "airflow_mlpipe.operators.mlflow.MlflowRunLink" in links
    # the connection form is relabelled for users
    widgets = pm.field_behaviours
    assert widgets["mlpipe_mlflow"]["relabeling"]["host"] == "Tracking URI"


def test_airflow_cli_lists_the_provider():
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "get", "airflow-mlpipe", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"airflow-mlpipe"' in out.stdout
