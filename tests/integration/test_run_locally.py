"""The documented way to run a DAG file locally works: ``run_locally`` on an example DAG of dags/."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "dags" / "example_run_locally.py"


def test_example_dag_runs_locally(airflow_db):
    from airflow_mlpipe.dagtest import run_locally
    from tests.fixtures.airflow import DagRunResult

    dag = runpy.run_path(str(EXAMPLE))["dag"]
    result = DagRunResult(run_locally(dag))
    assert result.state == "success" and result.xcom("count_rows") == {"rows": 3}
