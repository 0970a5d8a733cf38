"""The figures of the closed-loop benchmark, from its per-day rows (plain Python, unit-tested).

A day row is what the loop did with one landed batch: whether monitoring flagged it, the retraining
it started, and the served quality on that day's rows *before* anything the day triggered took
effect (what users experienced), next to the quality the first model would have had (no loop).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

#: the "done" condition of the loop
MAX_DETECTION_DELAY = 1
MAX_FALSE_ALARMS = 0
MAX_RECOVERY_BATCHES = 3
MIN_RECOVERED_SHARE = 0.95
#: served quality is judged over this many consecutive batches: the ROC AUC of one 600-row day
#: moves by about ±0.03 by chance (the same model's pre-drift days span 0.77 – 0.84), so a rule on
#: single days fails on noise alone, before as well as after a drift
QUALITY_WINDOW = 3


@dataclass
class Day:
    """One landed batch.

    :param index: the day's index in the scenario (0-based).
    :param flagged: monitoring asked for retraining (drift or degraded quality).
    :param reasons: why (``data_drift``, ``quality`` …).
    :param retrain_runs: training runs the day's monitoring started.
    :param gate: verdict of those runs' gates (``blessed``, ``blocked``, or ``-``).
    :param serving_version: the version that answered the day's requests.
    :param quality: ROC AUC of the served scores on the day's rows.
    :param baseline_quality: ROC AUC of the first model on the same rows (no loop).
    """

    index: int
    flagged: bool
    quality: float
    baseline_quality: float | None = None
    reasons: list[str] = field(default_factory=list)
    retrain_runs: int = 0
    gate: str = "-"
    serving_version: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Figures:
    """The scenario's figures and whether each meets the loop's target."""

    pre_drift_days: int
    detection_delay: int | None
    false_alarms: int
    pre_quality: float
    recovery_batches: int | None
    daily_recovery_batches: int | None
    min_day_ratio: float
    last_ratio: float
    baseline_last_ratio: float | None
    last_days: int

    @property
    def detected_in_time(self) -> bool:
        return self.detection_delay is not None and self.detection_delay <= MAX_DETECTION_DELAY

    @property
    def recovered_in_time(self) -> bool:
        return self.recovery_batches is not None and self.recovery_batches <= MAX_RECOVERY_BATCHES

    @property
    def met(self) -> bool:
        return self.detected_in_time and self.false_alarms <= MAX_FALSE_ALARMS and self.recovered_in_time

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def _recovery(post: list[Day], drift_day: int, floor: float, window: int) -> int | None:
    """Batches from the drift to the earliest day from which the served quality, averaged over
    ``window`` consecutive days, stays at or above ``floor`` (every window starting then or later).
    The windows are whole ones (the last starts ``window - 1`` days before the end), except when
    fewer days than that were landed: then all of them are one window."""
    quality = [d.quality for d in post]
    width = min(window, len(quality))
    starts = range(len(quality) - width + 1)
    recovery: int | None = None
    for start in reversed(starts):
        if statistics.fmean(quality[start : start + width]) < floor:
            break
        recovery = post[start].index - drift_day
    return recovery


def figures(days: list[Day], drift_day: int) -> Figures:
    """Detection delay (batches from the drift to the first flag), false alarms before the drift,
    recovery (batches after the drift until the served quality, as a mean over
    :data:`QUALITY_WINDOW` consecutive batches, stays at >= 95 % of the pre-drift level; the same
    rule on single days is reported next to it), the lowest single day after the drift ÷ the
    pre-drift level, and served quality over the last days (from ``drift_day +
    MAX_RECOVERY_BATCHES`` on) ÷ the pre-drift level, for the loop and for the first model kept
    serving.

    :raises ValueError: without a landed day before and after the drift.
    """
    days = sorted(days, key=lambda d: d.index)
    pre = [d for d in days if d.index < drift_day]
    post = [d for d in days if d.index >= drift_day]
    if not pre or not post:
        raise ValueError(f"need landed days before and after the drift day {drift_day}")
    flagged = [d.index - drift_day for d in post if d.flagged]
    pre_quality = statistics.fmean(d.quality for d in pre)
    floor = MIN_RECOVERED_SHARE * pre_quality
    last = [d for d in post if d.index >= drift_day + MAX_RECOVERY_BATCHES] or post[-1:]
    baseline_last: float | None = None
    if all(d.baseline_quality is not None for d in pre + last):
        baseline_pre = statistics.fmean(float(d.baseline_quality or 0.0) for d in pre)
        baseline_last = statistics.fmean(float(d.baseline_quality or 0.0) for d in last) / baseline_pre
    return Figures(
        pre_drift_days=len(pre),
        detection_delay=flagged[0] if flagged else None,
        false_alarms=sum(d.flagged for d in pre),
        pre_quality=pre_quality,
        recovery_batches=_recovery(post, drift_day, floor, QUALITY_WINDOW),
        daily_recovery_batches=_recovery(post, drift_day, floor, 1),
        min_day_ratio=min(d.quality for d in post[MAX_RECOVERY_BATCHES:] or post[-1:]) / pre_quality,
        last_ratio=statistics.fmean(d.quality for d in last) / pre_quality,
        baseline_last_ratio=baseline_last,
        last_days=len(last),
    )


def day_table(days: list[Day], drift_day: int) -> str:
    """The per-day rows as a Markdown table."""
    lines = [
        "| day | drift flagged | reasons | retraining runs | gate | serving version | served ROC AUC | first model ROC AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in sorted(days, key=lambda d: d.index):
        mark = " (drift)" if d.index == drift_day else ""
        base = f"{d.baseline_quality:.3f}" if d.baseline_quality is not None else "-"
        lines.append(
            f"| {d.index}{mark} | {'yes' if d.flagged else 'no'} | {', '.join(d.reasons) or '-'} | "
            f"{d.retrain_runs} | {d.gate} | v{d.serving_version} | {d.quality:.3f} | {base} |"
        )
    return "\n".join(lines)
