"""Monitoring runs that claim the same batch at the same moment: exactly one processes it.

Each claimant is its own OS process (as two runs on two workers are), released together by a
barrier right before the claim, so the exclusive create of the ledger marker is what decides.
"""

from __future__ import annotations

import multiprocessing

import pytest

pytestmark = pytest.mark.integration

CLAIMANTS = 4


def _claim(barrier, ledger: str, keys: list[str], out) -> None:
    from airflow_mlpipe.monitoring.files import claim

    barrier.wait(120)
    out.put(claim(keys, ledger))


def test_concurrent_claims_of_one_batch_have_one_winner_per_file(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(CLAIMANTS), ctx.Queue()
    keys = [f"/landing/day-{i}.parquet:{i}:1700000000.0" for i in range(5)]
    ledger = str(tmp_path / "claims")
    procs = [ctx.Process(target=_claim, args=(barrier, ledger, keys, out)) for _ in range(CLAIMANTS)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    claimed = [key for r in results for key in r]
    assert sorted(claimed) == sorted(keys), results  # every file claimed, none twice
    # a run that claims nothing skips; the batch is processed by the run(s) that won its files
    assert sum(1 for r in results if r) >= 1
