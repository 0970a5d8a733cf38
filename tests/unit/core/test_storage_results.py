from __future__ import annotations

import datetime as dt
import enum
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from airflow_mlpipe.core import storage
from airflow_mlpipe.core.deps import require
from airflow_mlpipe.core.results import jsonable
from airflow_mlpipe.exceptions import MissingDependencyError
from airflow_mlpipe.operators._context import task_dir


def test_artifact_root_from_env_and_task_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPIPE_ARTIFACT_ROOT", f"file://{tmp_path}/root")
    ti = SimpleNamespace(
        dag_id="my dag", run_id="manual__2024-01-01T00:00:00+00:00", task_id="train", map_index=3
    )
    path = task_dir({"ti": ti})
    assert Path(path.path) == tmp_path / "root" / "my_dag" / "manual__2024-01-01T00_00_00_00_00" / "train.3"
    assert Path(path.path).is_dir()


def test_artifact_root_default_is_under_airflow_home(tmp_path, monkeypatch):
    monkeypatch.delenv("MLPIPE_ARTIFACT_ROOT", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert Path(storage.artifact_root().path) == tmp_path / "mlpipe" / "artifacts"


def test_to_uri_and_safe_segment():
    assert storage.to_uri("/a/b") == "file:///a/b"
    assert storage.to_uri("s3://bucket/k") == "s3://bucket/k"
    assert storage.safe_segment("../..") == "_"
    assert "/" not in storage.safe_segment("a/b:c")


class Color(enum.Enum):
    RED = "red"


def test_jsonable_converts_numpy_and_friends():
    value = {
        "i": np.int64(3),
        "f": np.float32(0.5),
        "nan": float("nan"),
        "arr": np.arange(3),
        "when": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        "path": Path("/x"),
        "enum": Color.RED,
        1: (1, 2),
    }
    out = jsonable(value)
    assert json.loads(json.dumps(out)) == {
        "i": 3,
        "f": 0.5,
        "nan": None,
        "arr": [0, 1, 2],
        "when": "2024-01-01T00:00:00+00:00",
        "path": "/x",
        "enum": "red",
        "1": [1, 2],
    }
    assert jsonable(math.inf) is None


def test_require_names_the_extra():
    with pytest.raises(MissingDependencyError, match=r"pip install 'airflow-mlpipe\[all\]'"):
        require("surely_not_installed_pkg_xyz")
    assert require("json") is json
