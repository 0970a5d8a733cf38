"""Shared benchmark helpers: timing, peak memory of a child process, result rows."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass
class Result:
    """One comparison: the subject against a baseline measured in the same run.

    The ratio is ``subject / baseline``; it must be ``<= target``, or ``>= target`` when
    ``higher_is_better`` (a quality kept, not a cost).
    """

    name: str
    baseline: float
    subject: float
    unit: str = "s"
    target: float | None = None
    note: str = ""
    higher_is_better: bool = False

    @property
    def ratio(self) -> float:
        return self.subject / self.baseline if self.baseline else float("inf")

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(ratio=round(self.ratio, 4), met=self.met)
        return d


def timeit(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Median wall time of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def print_table(results: list[Result]) -> None:
    print(f"| {'benchmark':<48} | {'baseline':>10} | {'subject':>10} | {'ratio':>6} | {'target':>6} | met |")
    print(f"|{'-' * 50}|{'-' * 12}|{'-' * 12}|{'-' * 8}|{'-' * 8}|-----|")
    for r in results:
        target = f"{'≥' if r.higher_is_better else ''}{r.target:.2f}" if r.target is not None else "-"
        met = {True: "yes", False: "NO", None: "-"}[r.met]
        print(
            f"| {r.name:<48} | {r.baseline:>8.3f}{r.unit:>2} | {r.subject:>8.3f}{r.unit:>2} | "
            f"{r.ratio:>6.2f} | {target:>6} | {met:>3} |"
        )
        if r.note:
            print(f"|   {r.note}")


def json_child(script: str, args: list[str], *, timeout: float) -> dict[str, Any]:
    """Run ``python -c script *args`` (GE analytics off) and return the JSON of its last line."""
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "GX_ANALYTICS_ENABLED": "false"},
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))
