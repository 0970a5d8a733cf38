"""The registry-tag contract: each tag is defined once, written by one module, read where declared."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from airflow_mlpipe.core import conventions as cv

PACKAGE = Path(cv.__file__).resolve().parents[1]
TAGS = sorted(
    name for name in vars(cv) if name.startswith("TAG_") and name not in ("TAG_PREFIX", "TAG_OWNERS")
)


def _modules() -> dict[str, ast.Module]:
    return {
        "airflow_mlpipe."
        + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__"): (
            ast.parse(p.read_text())
        )
        for p in PACKAGE.rglob("*.py")
    }


MODULES = _modules()


def _users(tag: str) -> set[str]:
    """Modules that name the constant (``TAG_X`` or ``cv.TAG_X``), apart from its definition."""
    found = set()
    for module, tree in MODULES.items():
        if module == cv.__name__:
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Name) and node.id == tag) or (
                isinstance(node, ast.Attribute) and node.attr == tag
            ):
                found.add(module)
    return found


def test_every_tag_has_an_owner_and_no_key_is_defined_twice():
    assert sorted(cv.TAG_OWNERS) == TAGS
    values = [getattr(cv, name) for name in TAGS]
    assert len(values) == len(set(values))
    assert all(v.startswith(cv.TAG_PREFIX) for v in values)
    # nowhere else in the package is a registry tag key spelled out: the constants are the only definitions
    spelled = {
        (module, node.value)
        for module, tree in MODULES.items()
        if module != cv.__name__
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith(("mlpipe.gate", "mlpipe.training", "mlpipe.search", "mlpipe.promotion",
                                   "mlpipe.lock", "mlpipe.deploy", "mlpipe.env"))
    }  # fmt: skip
    assert spelled == set()


@pytest.mark.parametrize("tag", TAGS)
def test_tag_is_written_by_its_owner_and_read_only_where_declared(tag):
    writer, readers = cv.TAG_OWNERS[tag]
    users = _users(tag)
    assert writer in users, f"{tag}: its writer {writer} does not use it"
    for reader in readers:
        assert reader in users, f"{tag}: declared reader {reader} does not use it"
    assert users <= {writer, *readers}, f"{tag}: used by undeclared modules {users - {writer, *readers}}"


def test_the_quality_baseline_reads_what_the_gate_writes():
    writer, readers = cv.TAG_OWNERS["TAG_GATE_METRIC_PREFIX"]
    assert writer == "airflow_mlpipe.operators.evaluation"
    assert "airflow_mlpipe.monitoring.baseline" in readers
    # the baseline no longer takes every numeric gate tag (e.g. champion_version) for a metric
    assert "TAG_GATE_PREFIX" not in {
        n.id for n in ast.walk(MODULES["airflow_mlpipe.monitoring.baseline"]) if isinstance(n, ast.Name)
    }
