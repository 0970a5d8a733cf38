"""DAG parsing must stay cheap: importing the provider and every DAG must not import heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = [
    "great_expectations",
    "feast",
    "mlflow",
    "sklearn",
    "bentoml",
    "evidently",
    "pandas",
    "pyarrow",
    "skops",
    "pyspark",
]

_PROBE = r"""
import importlib, json, pkgutil, runpy, sys, glob, os
import airflow_mlpipe
skip = {"_serving"}  # process entry points run by bentoml serve, never imported by DAG files
for mod in pkgutil.walk_packages(airflow_mlpipe.__path__, "airflow_mlpipe."):
    if any(part in skip for part in mod.name.split(".")) or mod.name.endswith("__main__"):
        continue
    importlib.import_module(mod.name)
import re
# Like the DAG processor, skip what .airflowignore excludes (regexp syntax, Airflow's default):
# e.g. Feast definitions, which only the features.apply task loads, when it runs.
ignore_file = os.path.join(sys.argv[1], ".airflowignore")
ignored = []
if os.path.exists(ignore_file):
    lines = open(ignore_file).read().splitlines()
    ignored = [re.compile(l.strip()) for l in lines if l.strip() and not l.strip().startswith("#")]
for path in sorted(glob.glob(os.path.join(sys.argv[1], "**", "*.py"), recursive=True)):
    if any(p.search(os.path.relpath(path, sys.argv[1])) for p in ignored):
        continue
    runpy.run_path(path, run_name="dag_import_probe")
heavy = json.loads(sys.argv[2])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def test_provider_and_dags_import_no_heavy_library():
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(ROOT / "dags"), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"heavy modules imported at parse time: {sorted({m.split('.')[0] for m in loaded})}"


def test_ruff_bans_module_level_heavy_imports(tmp_path):
    """The TID253 rule is configured: a module-level heavy import in the package is a lint error."""
    bad = ROOT / "airflow_mlpipe" / "_tid253_probe.py"
    bad.write_text("import pandas\n")
    try:
        out = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "TID253", str(bad)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    finally:
        bad.unlink()
    assert out.returncode != 0
    assert "TID253" in out.stdout


@pytest.mark.parametrize("module", ["airflow_mlpipe.get_provider_info"])
def test_provider_info_mirrors_provider_yaml(module):
    import yaml

    from airflow_mlpipe import __version__
    from airflow_mlpipe.get_provider_info import get_provider_info

    info = get_provider_info()
    assert info.pop("versions") == [__version__]  # from the distribution: the version lives once
    assert info == yaml.safe_load((ROOT / "airflow_mlpipe" / "provider.yaml").read_text())
    assert info["package-name"] == "airflow-mlpipe"
    # every class the provider declares is importable
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info.get(section, []):
            for path in entry["python-modules"]:
                __import__(path)
    for cls_path in info.get("extra-links", []) + [
        c["hook-class-name"] for c in info.get("connection-types", [])
    ]:
        mod, _, name = cls_path.rpartition(".")
        assert hasattr(__import__(mod, fromlist=[name]), name), cls_path
