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

from bench import _scale_offline, _scale_scoring, validation_sql
from bench._util import Result


def run(quick: bool) -> list[Result]:
    results: list[Result] = []
    for part in (validation_sql, _scale_scoring, _scale_offline):
        results += part.run(quick=quick)
    return results
