"""Validation of a 1,000,000-row x 20-column parquet file: the provider vs Great Expectations directly.

* subject: the operator's validation function (``load_dataset`` + ``validate_frame`` with shift
  checks against a reference file, Data Docs built and made offline);
* baseline: a plain script calling Great Expectations on the same file with the same expectations
  (the KL partitions the provider computes from the reference are handed to it precomputed): a
  Checkpoint with an UpdateDataDocsAction writing a local site, i.e. the same outputs; and, as a
  second row, both without Data Docs (``ValidationDefinition.run`` vs ``docs_target=None``).

Each run is a fresh child process; wall time is measured inside it after the imports, and peak
memory is the child's own peak RSS (``ru_maxrss``). Data are generated with a fixed seed.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from bench._util import Result, json_child

COLUMNS = 20
SHIFT_COLUMNS = ["num_0", "num_1", "int_0", "cat_0", "cat_1"]

_CHILD = r"""
import json, resource, sys, time
mode, data, reference, suite_path, docs = sys.argv[1:6]
expectations = json.loads(open(suite_path).read())
if mode.startswith("provider"):
    from airflow.sdk import ObjectStoragePath
    from airflow_mlpipe.config.validation import ShiftConfig
    from airflow_mlpipe.validation.dataset import load_dataset, validate_frame
    from airflow_mlpipe.validation.suite import load_suite
    import great_expectations  # imported by validate_frame anyway; keep import time out of the timing
    t0 = time.perf_counter()
    df = load_dataset(data)
    summary = validate_frame(
        df,
        load_suite(expectations, name="bench"),
        dataset_uri=data,
        shift=ShiftConfig.build(reference, json.loads(sys.argv[6])),
        docs_target=ObjectStoragePath("file://" + docs) if docs else None,
    )
    success, evaluated = summary["success"], summary["statistics"]["evaluated_expectations"]
else:
    import great_expectations as gx
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    t0 = time.perf_counter()
    df = pd.read_parquet(data)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = context.data_sources.add_pandas("p").add_dataframe_asset("a").add_batch_definition_whole_dataframe("b")
    suite = context.suites.add(gx.ExpectationSuite(name="bench"))
    for e in expectations:
        suite.add_expectation(ExpectationConfiguration(type=e["type"], kwargs=e["kwargs"]).to_domain_obj())
    vd = context.validation_definitions.add(gx.ValidationDefinition(name="v", data=batch, suite=suite))
    if docs:
        context.add_data_docs_site(site_name="local", site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name="c", validation_definitions=[vd], result_format="SUMMARY",
            actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=["local"])],
        ))
        result = next(iter(checkpoint.run(batch_parameters={"dataframe": df}).run_results.values()))
    else:
        result = vd.run(batch_parameters={"dataframe": df}, result_format="SUMMARY")
    success, evaluated = result.success, result.statistics["evaluated_expectations"]
elapsed = time.perf_counter() - t0
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": elapsed, "peak_mb": peak_kb / 1024, "success": success, "evaluated": evaluated}))
"""


def make_data(path: Path, rows: int, seed: int, shift: float = 0.0) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    for i in range(14):
        cols[f"num_{i}"] = rng.normal(10.0 * i, 1.0 + i, rows) + shift
    for i in range(3):
        cols[f"int_{i}"] = rng.integers(0, 100, rows)
    for i in range(3):
        cols[f"cat_{i}"] = pd.Categorical(rng.choice(["red", "green", "blue", "black"], rows)).astype(str)
    df = pd.DataFrame(cols)
    assert df.shape[1] == COLUMNS
    df.to_parquet(path, index=False)


def suite() -> list[dict]:
    exps: list[dict] = [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {
                "column_set": [f"num_{i}" for i in range(14)]
                + [f"int_{i}" for i in range(3)]
                + [f"cat_{i}" for i in range(3)]
            },
        },
    ]
    for i in range(14):
        exps.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": f"num_{i}"}})
        exps.append(
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": f"num_{i}", "min_value": -1e6, "max_value": 1e6},
            }
        )
    for i in range(3):
        exps.append(
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": f"int_{i}", "min_value": 0, "max_value": 99},
            }
        )
        exps.append(
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": f"cat_{i}", "value_set": ["red", "green", "blue", "black"]},
            }
        )
    return exps


def _child(args: list[str]) -> dict:
    return json_child(_CHILD, args, timeout=1800)


def run(quick: bool) -> list[Result]:
    import pandas as pd

    from airflow_mlpipe.config.validation import ShiftConfig
    from airflow_mlpipe.validation.shift import shift_expectations

    rows = 200_000 if quick else 1_000_000
    repeat = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-validation-") as tmp:
        base = Path(tmp)
        data, reference = base / "data.parquet", base / "reference.parquet"
        make_data(data, rows, seed=42)
        make_data(reference, rows // 10, seed=7)
        # The baseline gets the very expectations the provider builds, shift partitions included.
        shift = ShiftConfig.build(str(reference), SHIFT_COLUMNS)
        extra, _ = shift_expectations(
            pd.read_parquet(reference), pd.read_parquet(data, columns=SHIFT_COLUMNS), shift
        )
        plain = suite()
        (base / "suite.json").write_text(json.dumps(plain))
        (base / "full.json").write_text(json.dumps(plain + [e.as_dict() for e in extra]))
        runs: dict[str, list[dict]] = {
            "provider": [],
            "direct": [],
            "provider_nodocs": [],
            "direct_nodocs": [],
        }
        full, own = str(base / "full.json"), str(base / "suite.json")
        cols = json.dumps(SHIFT_COLUMNS)
        for i in range(repeat):  # interleaved so load changes on a shared machine hit all variants
            runs["direct"].append(_child(["direct", str(data), str(reference), full, str(base / f"gx{i}")]))
            runs["provider"].append(
                _child(["provider", str(data), str(reference), own, str(base / f"p{i}"), cols])
            )
            runs["direct_nodocs"].append(_child(["direct", str(data), str(reference), full, ""]))
            runs["provider_nodocs"].append(_child(["provider", str(data), str(reference), own, "", cols]))
    for r in [r for group in runs.values() for r in group]:
        if not r["success"]:
            raise RuntimeError(f"benchmark suite failed unexpectedly: {r}")
    assert runs["provider"][0]["evaluated"] == runs["direct"][0]["evaluated"]

    def med(key: str, field: str) -> float:
        return statistics.median(r[field] for r in runs[key])

    size = f"{rows:,} rows x {COLUMNS} cols, {runs['direct'][0]['evaluated']} expectations"
    return [
        Result(
            name="validation wall time (provider / GE direct)",
            baseline=med("direct", "seconds"),
            subject=med("provider", "seconds"),
            target=1.2,
            note=f"{size}; median of {repeat}; both build Data Docs (provider: made offline)",
        ),
        Result(
            name="validation wall time, no Data Docs",
            baseline=med("direct_nodocs", "seconds"),
            subject=med("provider_nodocs", "seconds"),
            target=1.2,
            note="provider: load_dataset + checks + shift partitions + run; GE: read_parquet + run",
        ),
        Result(
            name="validation peak RSS (provider / 2 GB budget)",
            baseline=2048.0,
            subject=max(r["peak_mb"] for r in runs["provider"] + runs["provider_nodocs"]),
            unit="MB",
            target=1.0,
            note=f"GE direct peak: {max(r['peak_mb'] for r in runs['direct'] + runs['direct_nodocs']):.0f} MB",
        ),
    ]
