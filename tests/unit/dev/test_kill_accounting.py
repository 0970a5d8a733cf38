"""Which failed requests a backend killed under load explains (tests/fixtures/release.py)."""

from __future__ import annotations

from mlpipe_dev.loadgen import LoadStats
from tests.fixtures.release import Kill, unexplained_failures

KILL = Kill(target=123, at=1000.0)


def _stats(*failures: tuple[str, float]) -> LoadStats:
    """A run of 100 answered requests and these failures, counted as the load loop counts them."""
    stats = LoadStats(failures=list(failures))
    stats.statuses.update({200: 100})
    stats.statuses.update(kind for kind, _ in failures)
    return stats


def test_answers_cut_off_by_the_kill_are_explained_one_per_client():
    assert unexplained_failures(_stats(), KILL, clients=2) == []
    cut = _stats(("IncompleteRead", 999.9), ("RemoteDisconnected", 999.95))
    assert unexplained_failures(cut, KILL, clients=2) == []
    assert unexplained_failures(cut, KILL, clients=1)  # more than one request per client


def test_other_failures_and_failures_after_the_kill_are_not():
    assert unexplained_failures(_stats(("TimeoutError", 999.9)), KILL, clients=2)
    assert unexplained_failures(_stats(("ConnectionRefusedError", 999.9)), KILL, clients=2)
    assert unexplained_failures(_stats(("IncompleteRead", 1000.5)), KILL, clients=2)
    answered = LoadStats()
    answered.statuses.update({200: 5, 503: 1})
    assert unexplained_failures(answered, KILL, clients=2)  # an error answer is never explained
