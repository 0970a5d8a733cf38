"""Example DAGs are tested documentation: every file in dags/ loads into a DagBag without errors."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.mark.integration
def test_every_dag_file_imports_without_errors():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    files = {Path(d.fileloc).name for d in bag.dags.values()}
    expected = {p.name for p in DAGS.glob("*.py") if not p.name.startswith("_")}
    assert expected <= files, f"DAG files without a DAG: {expected - files}"
