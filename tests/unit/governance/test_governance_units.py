"""Snapshot store, comparison helpers and the audit page, without a registry."""

from __future__ import annotations

import re
import uuid

import pytest

from airflow_mlpipe.exceptions import ConfigError, DataError
from airflow_mlpipe.governance import snapshots
from airflow_mlpipe.governance.html import render
from airflow_mlpipe.training.reproduce import (
    ReproduceConfig,
    environment_differences,
    parameter_differences,
)


def test_snapshots_are_content_addressed_and_survive_the_source(tmp_path):
    model = f"m-{uuid.uuid4().hex[:6]}"
    source = tmp_path / "train.csv"
    source.write_text("a,b\n1,2\n")
    first = snapshots.take(str(source), model)
    again = snapshots.take(str(source), model)
    assert not first.reused and again.reused and again.uri == first.uri
    assert first.digest.split(":")[1] in first.uri
    source.write_text("a,b\n1,3\n")  # the source is overwritten by a later batch
    changed = snapshots.take(str(source), model)
    assert changed.digest != first.digest
    assert snapshots.verify(first.uri, first.digest) == first.digest
    assert snapshots.stored(model) == sorted([first.digest, changed.digest])
    # a partitioned parquet directory is copied whole, names included in the digest
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "p0.csv").write_text("x\n1\n")
    (folder / "p1.csv").write_text("x\n2\n")
    tree = snapshots.take(str(folder), model)
    assert snapshots.verify(tree.uri, tree.digest) == tree.digest
    (folder / "p1.csv").rename(folder / "p2.csv")
    assert snapshots.take(str(folder), model).digest != tree.digest


def test_a_changed_snapshot_is_detected(tmp_path):
    source = tmp_path / "t.csv"
    source.write_text("a\n1\n")
    snap = snapshots.take(str(source), f"m-{uuid.uuid4().hex[:6]}")
    path = snap.uri.removeprefix("file://")
    with open(path, "a") as fh:
        fh.write("2\n")
    assert snapshots.verify(snap.uri, snap.digest) not in (None, snap.digest)


def test_bad_input_gets_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        snapshots.take(str(tmp_path / "nope.parquet"), "m")
    with pytest.raises(ConfigError, match="keep_last"):
        snapshots.RetentionConfig(keep_last=0)
    with pytest.raises(ConfigError, match="previous"):
        snapshots.RetentionConfig(keep_aliases=("champion",))
    with pytest.raises(ConfigError, match="tolerance"):
        ReproduceConfig(tolerance=-1)


def test_parameter_and_environment_differences_are_precise():
    spec = {"estimator": "x.Y", "seed": 42, "params": {"max_depth": 2, "n_estimators": 10, "criterion": None}}
    logged = {
        "max_depth": "4",
        "n_estimators": "10",
        "criterion": "None",
        "training.seed": "42",
        "training.estimator": "x.Y",
        "training.n_train": "100",
    }
    assert parameter_differences(spec, logged) == [
        {"kind": "parameters", "name": "max_depth", "recorded": "4", "reproduced": "2"}
    ]
    diffs = environment_differences(
        {"sklearn": "1.8.0", "pandas": "2.2"}, {"sklearn": "1.9.1", "pandas": "2.2"}
    )
    assert diffs == [
        {
            "kind": "environment",
            "name": "scikit-learn",
            "recorded": "1.8.0",
            "reproduced": "1.9.1",
            "decisive": True,
        }
    ]


def _report(**over):
    base = {
        "generated_at": "2024-01-01T00:00:00+00:00",
        "model": {"name": "churn", "version": "2", "aliases": ["champion"]},
        "code_version": "c1",
        "data": {"uri": "file:///d.parquet", "snapshot": {}, "batches": []},
        "features": {"columns": ["a"], "definitions": []},
        "training": {"run": {"run_id": "r", "params": {"p": "<script>alert(1)</script>"}}, "environment": {}},
        "gate": {"metrics": {"challenger": {"accuracy": 0.9}, "champion": {"accuracy": 0.8}}, "criteria": []},
        "approvals": [],
        "triggered_by": [],
        "lifecycle": {},
        "deployments": [],
        "served": {"from": None},
        "drift_while_serving": [],
        "reproduction": None,
        "integrity": [
            {"record": "lineage tags", "uri": None, "recorded": "a", "actual": "a", "status": "ok"}
        ],
        "tampered": [],
    }
    return {**base, **over}


def test_audit_page_is_self_contained_and_escapes_values():
    page = render(_report())
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page and "&lt;script&gt;" in page
    assert page.count("<rect") == 2 and "every recorded digest matches" in page
    bad = render(
        _report(
            tampered=["gate report"],
            integrity=[
                {"record": "gate report", "uri": "u", "recorded": "a", "actual": "b", "status": "MISMATCH"}
            ],
        )
    )
    assert "changed after the fact" in bad and 'class="bad">MISMATCH' in bad
