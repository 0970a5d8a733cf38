"""The bento build finds every tool it runs in the project's own environment, not on PATH."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

# What a freshly started machine has on PATH: system directories only (no pyenv, no ~/.local, no uv).
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_bentoml_uses_the_environments_uv_without_path():
    """BentoML's build looks up uv on PATH, else runs ``python -m uv``: the deploy extra provides it."""
    probe = (
        "import json, subprocess, shutil;"
        "from bentoml._internal.configuration import get_uv_command;"
        "cmd = get_uv_command();"
        "out = subprocess.run([*cmd, '--version'], capture_output=True, text=True, check=True).stdout;"
        "print(json.dumps({'cmd': cmd, 'version': out.strip(), 'on_path': shutil.which('uv')}))"
    )
    env = {"PATH": _SYSTEM_PATH, "HOME": "/nonexistent", "BENTOML_DO_NOT_TRACK": "true"}
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    if found["on_path"] is None:
        assert found["cmd"] == [sys.executable, "-m", "uv"]
    assert found["version"].startswith("uv ")
