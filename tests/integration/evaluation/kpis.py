"""Business KPI functions used by the tests (imported by path, as users configure them)."""

from __future__ import annotations

import numpy as np


def within_25(y_true, y_pred, frame) -> float:
    """Share of predictions within 25 units of the truth."""
    assert len(frame) == len(y_true)
    return float(np.mean(np.abs(np.asarray(y_true, dtype=float) - y_pred) <= 25))
