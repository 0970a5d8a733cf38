"""Deadlines that stretch on a busy machine.

Waits in this project are on observable state; their deadlines only bound how long a wait may take
before it is called a failure. A deadline tuned on an idle machine fails spuriously when other work
competes for the cores, so every deadline is a base value scaled by the load seen when the wait
starts (1-minute load average per core, never below 1), times ``MLPIPE_TIMEOUT_SCALE`` when set (for
slow machines whose load does not show it, e.g. throttled containers).
"""

from __future__ import annotations

import os

#: environment variable with an extra, explicit factor for every deadline
SCALE_ENV = "MLPIPE_TIMEOUT_SCALE"
#: the load factor is capped: a deadline stays finite on a machine that is pathologically busy
MAX_LOAD_FACTOR = 4.0


def load_factor() -> float:
    """How much busier than one runnable task per core the machine is (≥ 1, ≤ ``MAX_LOAD_FACTOR``)."""
    try:
        load1 = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return 1.0
    cores = os.cpu_count() or 1
    return min(max(load1 / cores, 1.0), MAX_LOAD_FACTOR)


def explicit_scale() -> float:
    raw = os.environ.get(SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{SCALE_ENV} must be a number such as 2 or 1.5, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{SCALE_ENV} must be positive, got {raw!r}")
    return value


def scaled(seconds: float) -> float:
    """``seconds`` stretched by the machine's current load and ``MLPIPE_TIMEOUT_SCALE``."""
    return seconds * load_factor() * explicit_scale()
