"""Validation pushed down to PostgreSQL: a 20,000,000-row x 20-column table (``--quick``: 1,000,000).

* subject: the provider's ``validate_sql`` (pre-check aggregate, a 1,000-row type sample, the suite
  and the shift checks on GE's SQL engine, the database-computed content digest);
* baseline: a plain Great Expectations SQL validation of the same table with the very same
  expectations (the shift checks' partitions precomputed from the reference file, as the provider
  builds them).

The table is generated inside PostgreSQL (``generate_series``; the same distributions as
``bench/validation.py``), so no row passes through Python. Each run is a fresh child; wall time
is measured after the imports; memory is the child's peak RSS. PostgreSQL: 127.0.0.1:5432,
database ``test`` (``MLPIPE_BENCH_PG`` overrides the SQLAlchemy URL).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import uuid
from pathlib import Path

from bench._util import Result, json_child
from bench.validation import SHIFT_COLUMNS, make_data, suite

URL = os.environ.get("MLPIPE_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

_CHILD = r"""
import json, resource, sys, time
mode, url, table, reference, suite_path = sys.argv[1:6]
expectations = json.loads(open(suite_path).read())
import great_expectations as gx
if mode == "provider":
    from airflow_mlpipe.config.validation import ShiftConfig, ValidationOptions
    from airflow_mlpipe.validation.dataset import validate_sql
    from airflow_mlpipe.validation.sql import SqlData
    from airflow_mlpipe.validation.suite import load_suite
    from airflow.sdk import ObjectStoragePath  # a task process has Airflow imported: not timed
    ObjectStoragePath("file:///tmp").exists()
    t0 = time.perf_counter()
    summary = validate_sql(
        SqlData(url=url, table=table), load_suite(expectations, name="bench"), dataset_uri=table,
        shift=ShiftConfig.build(reference, json.loads(sys.argv[6])),
    )
    success, evaluated = summary["success"], summary["statistics"]["evaluated_expectations"]
else:
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    t0 = time.perf_counter()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = (context.data_sources.add_sql("pg", connection_string=url)
             .add_table_asset("t", table_name=table).add_batch_definition_whole_table("b"))
    gx_suite = context.suites.add(gx.ExpectationSuite(name="bench"))
    for e in expectations:
        gx_suite.add_expectation(ExpectationConfiguration(type=e["type"], kwargs=e["kwargs"]).to_domain_obj())
    vd = context.validation_definitions.add(gx.ValidationDefinition(name="v", data=batch, suite=gx_suite))
    result = vd.run(result_format="SUMMARY")
    success, evaluated = result.success, result.statistics["evaluated_expectations"]
elapsed = time.perf_counter() - t0
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": elapsed, "peak_mb": peak_kb / 1024, "success": success, "evaluated": evaluated}))
"""


def _normal(mean: float, sd: float) -> str:
    # Box-Muller on PostgreSQL's random() (random_normal() needs PostgreSQL 16)
    return f"{mean} + {sd} * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())"


def create_table(engine: object, table: str, rows: int) -> None:
    import sqlalchemy

    cols = [f"{_normal(10.0 * i, 1.0 + i)} AS num_{i}" for i in range(14)]
    cols += [f"floor(random() * 100)::int AS int_{i}" for i in range(3)]
    cols += [
        f"(ARRAY['red', 'green', 'blue', 'black'])[1 + floor(random() * 4)::int] AS cat_{i}" for i in range(3)
    ]
    with engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(
            sqlalchemy.text(
                f"CREATE TABLE {table} AS SELECT {', '.join(cols)} FROM generate_series(1, {rows})"
            )
        )
        conn.execute(sqlalchemy.text(f"ANALYZE {table}"))


def _child(args: list[str]) -> dict:
    return json_child(_CHILD, args, timeout=7200)


def run(quick: bool) -> list[Result]:
    import pandas as pd
    import sqlalchemy

    from airflow_mlpipe.config.validation import ShiftConfig, ValidationOptions
    from airflow_mlpipe.validation.shift import shift_expectations
    from airflow_mlpipe.validation.sql import SqlData, profile
    from airflow_mlpipe.validation.suite import load_suite

    rows = 1_000_000 if quick else 20_000_000
    repeat = 1 if quick else 2
    table = f"mlpipe_bench_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(URL)
    create_table(engine, table, rows)
    try:
        with tempfile.TemporaryDirectory(prefix="mlpipe-bench-validation-sql-") as tmp:
            base = Path(tmp)
            reference = base / "reference.parquet"
            make_data(reference, 100_000, seed=7)
            plain = suite()
            # the baseline gets the very expectations the provider builds, shift partitions included
            sample = profile(
                SqlData(url=URL, table=table),
                load_suite(plain),
                where=table,
                options=ValidationOptions(),
            ).sample
            shift = ShiftConfig.build(str(reference), SHIFT_COLUMNS)
            extra, _ = shift_expectations(pd.read_parquet(reference), sample, shift)
            (base / "suite.json").write_text(json.dumps(plain))
            (base / "full.json").write_text(json.dumps(plain + [e.as_dict() for e in extra]))
            runs: dict[str, list[dict]] = {"provider": [], "direct": []}
            for _ in range(repeat):  # interleaved so load changes on a shared machine hit both
                runs["direct"].append(_child(["direct", URL, table, str(reference), str(base / "full.json")]))
                runs["provider"].append(
                    _child(
                        [
                            "provider",
                            URL,
                            table,
                            str(reference),
                            str(base / "suite.json"),
                            json.dumps(SHIFT_COLUMNS),
                        ]
                    )
                )
    finally:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()
    if runs["provider"][0]["evaluated"] != runs["direct"][0]["evaluated"]:
        raise RuntimeError(f"the two sides evaluated different suites: {runs}")

    def med(key: str, field: str) -> float:
        return statistics.median(r[field] for r in runs[key])

    size = f"{rows:,} rows x 20 cols in PostgreSQL, {runs['direct'][0]['evaluated']} expectations"
    return [
        Result(
            name="SQL pushdown wall time (provider / GE SQL direct)",
            baseline=med("direct", "seconds"),
            subject=med("provider", "seconds"),
            target=1.2,
            note=f"{size}; median of {repeat}; provider adds the pre-check aggregate and the content digest",
        ),
        Result(
            name="SQL pushdown peak RSS (provider / 500 MB budget)",
            baseline=500.0,
            subject=med("provider", "peak_mb"),
            unit="MB",
            target=1.0,
            note=f"GE SQL direct peak: {med('direct', 'peak_mb'):.0f} MB",
        ),
    ]
