"""Test harness: a private AIRFLOW_HOME with a real metadata DB, set before Airflow is imported.

Environment variables are set at import time of this conftest (pytest imports it before any test
module), because Airflow reads its configuration once, when ``airflow`` is first imported.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

_HOME = Path(os.environ.get("MLPIPE_TEST_HOME") or tempfile.mkdtemp(prefix="mlpipe-test-"))
os.environ["AIRFLOW_HOME"] = str(_HOME / "airflow")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow/airflow.db"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
os.environ["MLPIPE_ARTIFACT_ROOT"] = f"file://{_HOME}/artifacts"
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ["BENTOML_HOME"] = str(_HOME / "bentoml")
(_HOME / "airflow").mkdir(parents=True, exist_ok=True)
# Libraries that default to the current directory (MLflow's ./mlruns for the Default experiment,
# BentoML build contexts, GE contexts) must never write into the checked-in tree.
(_HOME / "cwd").mkdir(exist_ok=True)
os.chdir(_HOME / "cwd")

import pytest  # noqa: E402

pytest_plugins = [
    "tests.fixtures.airflow",
    "tests.fixtures.services",
    "tests.fixtures.data",
    "tests.fixtures.mlflow",
    "tests.fixtures.features",
    "tests.fixtures.deployment",
    "tests.fixtures.training",
    "tests.fixtures.validation",
    "tests.fixtures.evaluation",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test without an explicit marker is a unit test.
    for item in items:
        if not any(item.iter_markers(name=m) for m in ("integration", "unit", "e2e", "browser")):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def test_home() -> Path:
    """The session's scratch directory (AIRFLOW_HOME, artifact root and BentoML home live here)."""
    return _HOME


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0
