"""``python -m bench scale``: the work pushed to the engines built for it, against each engine's own
baseline in the same run.

- validation in the database (Great Expectations' SQL engine on PostgreSQL) against a plain GE SQL
  checkpoint of the same table, and the worker's peak memory against its budget
  (:mod:`bench.validation_sql`);
- batch scoring: in-process chunked scoring against raw ``model.predict`` over the same rows using
  all cores, its peak memory against its budget, and Spark local mode against in-process
  (:mod:`bench._scale_scoring`);
- training sets: Feast's PostgreSQL offline store (point-in-time join in the database, streamed to
  parquet) against the file offline store (:mod:`bench._scale_offline`).

``--quick`` runs each at a tenth (or less) of the full size.
"""

from __future__ import annotations

import time

from bench import _scale_offline, _scale_scoring, validation_sql
from bench._util import Result, print_table


def run(quick: bool) -> list[Result]:
    """Each part's table is printed as soon as it is measured (the parts take minutes each); a
    part that fails does not lose the others' figures, and fails the run at the end."""
    results: list[Result] = []
    failed: dict[str, BaseException] = {}
    for part in (validation_sql, _scale_scoring, _scale_offline):
        started = time.perf_counter()
        try:
            found = part.run(quick=quick)
        except Exception as exc:
            failed[part.__name__] = exc
            print(f"\n### {part.__name__}: FAILED after {time.perf_counter() - started:.0f} s: {exc!r}")
            continue
        print(f"\n### {part.__name__}  ({time.perf_counter() - started:.0f} s)")
        print_table(found)
        results += found
    if failed:
        raise RuntimeError(f"part(s) of the scale benchmark failed: {sorted(failed)}") from next(
            iter(failed.values())
        )
    return results
