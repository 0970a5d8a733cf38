"""A fast screen in front of the request schema's row checks, for micro-batches of events.

:func:`~airflow_mlpipe.deploy.schema.validate_rows` checks every value with a Python call per
value (30 columns × 100 events is 3,000 calls per micro-batch, more than the model's ``predict``).
Most events are plainly valid: a JSON object with exactly the model's columns, numbers where numbers
go. :class:`RowScreen` recognises those with a few builtins per row (key-set equality, the set of
value types, ``isfinite`` and range checks over a tuple of values). It only ever *passes* rows that
``validate_rows`` accepts; every other row goes to ``validate_rows`` itself, so every error (message
and problems) is the schema's own and the validation semantics stay those of the HTTP service.
``tests/unit/streaming/test_row_screen.py`` holds the screen to that, value kind by value kind.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import datetime
from operator import itemgetter
from typing import Any

_NUMBER = frozenset({float, int})
#: JSON types a value of each MLflow kind certainly may have (``bool`` is not a number here either)
_TYPES: dict[str, frozenset[type]] = {
    "double": _NUMBER,
    "float": _NUMBER,
    "integer": frozenset({int}),
    "long": frozenset({int}),
    "boolean": frozenset({bool}),
    "string": frozenset({str}),
    "datetime": frozenset({str}),
}
#: inclusive ranges of the integer kinds (int32 and int64)
_INT_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
#: the largest finite float32
_FLOAT32_MAX = 3.4028234663852886e38


def _check(kind: str) -> Callable[[tuple[Any, ...]], bool]:
    """Whether a tuple of values (types already screened) certainly passes for ``kind``; may raise
    (e.g. ``OverflowError`` for an int beyond float range), which also means "not certain"."""
    if kind == "double":
        return lambda values: all(map(math.isfinite, values))
    if kind == "float":
        return lambda values: all(map(math.isfinite, values)) and max(map(abs, values)) <= _FLOAT32_MAX
    if kind in _INT_RANGE:
        lo, hi = _INT_RANGE[kind]
        return lambda values: lo <= min(values) and max(values) <= hi
    if kind == "datetime":
        return lambda values: all(datetime.fromisoformat(v) is not None for v in values)
    if kind in _TYPES:  # boolean, string: the type is the whole check
        return lambda values: True
    # Kinds without a value check (binary, …) accept anything but null.
    return lambda values: values.count(None) == 0


def _getter(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """The values of ``names`` in a row, as a tuple (``itemgetter`` of one name returns the value)."""
    if len(names) == 1:
        name = names[0]
        return lambda row: (row[name],)
    return itemgetter(*names)


class RowScreen:
    """Screens rows against the request schema ``inputs`` (``[{"name", "type", "required"}]``).

    :param inputs: the model's request schema, as ``validate_rows`` takes it.
    """

    def __init__(self, inputs: list[dict[str, Any]]) -> None:
        self.names = frozenset(c["name"] for c in inputs)
        by_kind: dict[str, list[str]] = {}
        for col in inputs:
            by_kind.setdefault(str(col["type"]), []).append(col["name"])
        # One (values getter, allowed types, value check) per kind.
        self._groups = [(_getter(names), _TYPES.get(kind), _check(kind)) for kind, names in by_kind.items()]

    def passes(self, row: Any) -> bool:
        """``True`` only if ``validate_rows([row], inputs, …)`` certainly accepts ``row``."""
        if type(row) is not dict or row.keys() != self.names:
            return False
        try:
            for getter, types, check in self._groups:
                values = getter(row)
                if types is not None and not set(map(type, values)) <= types:
                    return False
                if not check(values):
                    return False
        except (ArithmeticError, TypeError, ValueError):
            return False
        return True

    def __call__(self, rows: Iterable[Any]) -> list[bool]:
        return [self.passes(row) for row in rows]
