"""Stage results: small, JSON-serialisable dicts handed between tasks through XCom.

Stages never put DataFrames or library objects in XCom; :func:`jsonable` converts numpy scalars,
paths, datetimes and the like, and refuses what cannot be represented.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import os
from collections.abc import Mapping
from typing import Any


def jsonable(value: Any) -> Any:
    """Convert ``value`` recursively into JSON-compatible Python objects.

    NaN and infinities become ``None`` (JSON has no NaN).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        # float(): numpy.float64 subclasses float but Airflow's XCom serialiser tags it as numpy.
        return float(value) if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    # numpy / pandas scalars and arrays without importing them
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        return jsonable(value.item())
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return str(value)
