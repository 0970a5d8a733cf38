"""Prometheus text exposition: parse samples, sum histogram buckets, compute quantiles.

Both the deployment stage (canary latency) and the monitoring stage (serving health) read the
``/metrics`` endpoint of a BentoML service. Counters and histograms grow from process start, so a
*window* is the difference of two scrapes (:func:`bucket_delta`).
"""

from __future__ import annotations

import math
import re
import urllib.request
from collections.abc import Callable, Iterable

from airflow_mlpipe.exceptions import DataError

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

#: ``(metric name, labels, value)``
Sample = tuple[str, dict[str, str], float]
Buckets = dict[float, float]


def parse(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition: ``(name, labels, value)``.

    :raises DataError: a line that is not a sample, a comment or blank (e.g. an HTML error page).
    """
    samples: list[Sample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise DataError(f"Not Prometheus text format: {line[:200]!r}")
        name, _, labels, value, _ts = match.groups()
        parsed = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(labels or "")}
        try:
            number = float(value)
        except ValueError:
            raise DataError(f"Bad sample value in {line[:200]!r}") from None
        samples.append((name, parsed, number))
    return samples


def scrape(url: str, timeout: float = 10.0) -> list[Sample]:
    """GET ``url`` and parse it.

    :raises DataError: the endpoint did not answer, or not with Prometheus text.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode("utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"Could not scrape metrics from {url}: {exc}") from exc
    return parse(text)


def histogram_buckets(
    samples: Iterable[Sample], histogram: str, where: Callable[[dict[str, str]], bool] = lambda _: True
) -> Buckets:
    """Cumulative buckets (upper bound → count) of ``histogram``, summed over the label sets
    ``where`` accepts."""
    out: Buckets = {}
    name = f"{histogram}_bucket"
    for sample, labels, value in samples:
        if sample == name and where(labels):
            le = float(labels["le"])  # float() reads "+Inf"
            out[le] = out.get(le, 0.0) + value
    return out


def bucket_delta(after: Buckets, before: Buckets) -> Buckets:
    """The observations between two snapshots of the same histogram."""
    return {le: n - before.get(le, 0.0) for le, n in after.items()}


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket holding rank q·n
    (``None`` when there is no observation)."""
    if not buckets:
        return None
    ordered = sorted(buckets.items())
    count = ordered[-1][1]
    if count <= 0:
        return None
    rank = q * count
    lower_bound, lower_count = 0.0, 0.0
    for bound, cumulative in ordered:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower_bound  # above the largest finite bucket: its bound is all we know
            if cumulative == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (cumulative - lower_count)
        lower_bound, lower_count = bound, cumulative
    return ordered[-1][0]
