"""The row screen passes only rows the request schema accepts, and passes the plainly valid ones."""

from __future__ import annotations

import math

import pytest

from airflow_mlpipe._serving.row_screen import RowScreen
from airflow_mlpipe.deploy.schema import RequestError, validate_rows

KINDS = ["double", "float", "integer", "long", "boolean", "string", "datetime", "binary"]
VALUES = [
    0, 1, -1, 7.0, 7.5, -0.0, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, -(2**63),
    10**400, 3.4028234663852886e38, 3.5e38, 1e308, math.inf, -math.inf, math.nan, True, False, None,
    "", "seven", "2026-12-03T08:00:00", "2026-13-45", [], {}, [1.0],
]  # fmt: skip


def _accepted(row: object, inputs: list[dict]) -> bool:
    try:
        validate_rows([row], inputs, what="data", max_rows=1)
    except RequestError:
        return False
    return True


@pytest.mark.parametrize("required", [True, False], ids=["required", "optional"])
@pytest.mark.parametrize("kind", KINDS)
def test_screen_passes_only_what_the_schema_accepts(kind, required):
    inputs = [{"name": "x", "type": kind, "required": required}, {"name": "y", "type": "double"}]
    screen = RowScreen(inputs)
    passed = 0
    for value in VALUES:
        row = {"x": value, "y": 1.5}
        if screen.passes(row):
            passed += 1
            assert _accepted(row, inputs), (kind, value)
    assert passed, f"the screen passed no {kind} value at all"


@pytest.mark.parametrize(
    "row",
    [
        {"a": 1.0, "b": 2},  # missing column
        {"a": 1.0, "b": 2, "c": "s", "d": True},  # unknown column
        {"a": "1.0", "b": 2, "c": "s"},  # a string for a number
        {"a": 1.0, "b": 2.0, "c": "s"},  # a float for an integer (accepted, but not by the screen)
        [1.0, 2, "s"],
        "not an object",
    ],
)
def test_rows_the_screen_does_not_pass_go_to_the_schema(row):
    inputs = [{"name": "a", "type": "double"}, {"name": "b", "type": "long"}, {"name": "c", "type": "string"}]
    assert RowScreen(inputs)([row]) == [False]


def test_plain_rows_pass():
    inputs = [{"name": f"f{i}", "type": "double"} for i in range(30)] + [
        {"name": "n", "type": "long"},
        {"name": "s", "type": "string"},
        {"name": "b", "type": "boolean"},
    ]
    rows = [{**{f"f{i}": i * 0.5 for i in range(30)}, "n": k, "s": "x", "b": k % 2 == 0} for k in range(50)]
    assert RowScreen(inputs)(rows) == [True] * 50
    assert all(_accepted(r, inputs) for r in rows)
