"""The wheel holds the provider only, installs into a clean venv with Airflow and registers with it.

Everything comes from the project's own uv (``.tools/bin/uv``, made by ``make venv``) and its cache,
offline: the pinned set of ``uv.lock`` without extras, then the wheel itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from airflow_mlpipe import __version__

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"
#: what must never ship: the development package and the modules that moved out of the provider
DEV_ONLY = ("mlpipe_dev/", "airflow_mlpipe/demo/", "airflow_mlpipe/local/", "loadgen", "churn")


def _uv(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the project's uv: from its cache only (fast, offline) and, when something is not cached
    yet, once more with the package index allowed."""
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    env.pop("VIRTUAL_ENV", None)
    for offline in ("1", "0"):
        out = subprocess.run(
            [str(UV), *args], cwd=cwd, env={**env, "UV_OFFLINE": offline},
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if out.returncode == 0:
            return out
    raise AssertionError(f"uv {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not UV.exists():
        pytest.fail(f"{UV} is missing: run `make venv` first (it installs the project's pinned uv).")
    out_dir = tmp_path_factory.mktemp("dist")
    _uv("build", "--wheel", "--out-dir", str(out_dir), str(ROOT), cwd=out_dir)
    (path,) = out_dir.glob("airflow_mlpipe-*.whl")
    return path


def test_wheel_holds_the_provider_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert f"airflow_mlpipe-{__version__}.dist-info/METADATA" in names
    assert "airflow_mlpipe/provider.yaml" in names and "airflow_mlpipe/get_provider_info.py" in names
    assert {n.split("/")[0] for n in names} == {"airflow_mlpipe", f"airflow_mlpipe-{__version__}.dist-info"}
    shipped = [n for n in names if any(part in n for part in DEV_ONLY)]
    assert shipped == []


def test_wheel_installs_cleanly_and_registers_with_airflow(wheel, tmp_path):
    requirements = tmp_path / "requirements.txt"
    exported = _uv(
        "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "--project", str(ROOT),
        cwd=tmp_path,
    )  # fmt: skip
    requirements.write_text(exported.stdout)
    venv = tmp_path / "venv"
    _uv("venv", "--python", sys.executable, str(venv), cwd=tmp_path)
    python = venv / "bin" / "python"
    _uv("pip", "install", "--python", str(python), "-r", str(requirements), str(wheel), cwd=tmp_path)

    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    probe = subprocess.run(
        [str(python), "-c", "import airflow_mlpipe, importlib.util as u; "
         "print(airflow_mlpipe.__file__, u.find_spec('mlpipe_dev'))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    location, dev_spec = probe.stdout.split()
    assert location.startswith(str(venv)) and dev_spec == "None"  # the wheel, not the source tree

    listed = subprocess.run(
        [str(venv / "bin" / "airflow"), "providers", "get", "airflow-mlpipe", "--output", "json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert '"airflow-mlpipe"' in listed.stdout and __version__ in listed.stdout
