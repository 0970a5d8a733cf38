"""DAG parse time: a DAG file using the provider's operators vs a hand-written TaskFlow DAG.

Both DAGs have the same number of tasks and do the same kind of work; the hand-written one imports
great_expectations/pandas inside its task bodies (what a careful user writes without the
provider). Each file is parsed in a fresh ``python`` subprocess, as a DAG processor child does:

* ``fresh process`` — wall time and CPU time (user + sys, from ``RUSAGE_CHILDREN``) of
  ``python -c 'import airflow.sdk; exec the file'``; CPU time is the steadier of the two on a
  shared machine, where wall time mostly measures waiting for a core;
* ``file only`` — time to execute the file after ``airflow.sdk`` is already imported (what the
  provider itself adds per parse; no target, the absolute difference is what matters).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench._util import Result

TASKS = 8

PROVIDER_DAG = """
import pendulum
from airflow.sdk import DAG, Asset
from airflow_mlpipe.operators.great_expectations import DataValidationOperator

with DAG("bench_provider", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
    previous = None
    for i in range({tasks}):
        op = DataValidationOperator(
            task_id=f"validate_{{i}}",
            dataset_uri=f"file:///data/part_{{i}}.parquet",
            suite=[{{"type": "expect_column_values_to_not_be_null", "kwargs": {{"column": "x"}}}}],
            reference_uri="file:///data/reference.parquet",
            outlets=[Asset(name=f"valid_{{i}}", uri=f"mlpipe://bench/valid_{{i}}")],
        )
        if previous is not None:
            previous >> op
        previous = op
"""

HANDWRITTEN_DAG = """
import pendulum
from airflow.sdk import DAG, Asset, task

def make(i):
    @task(task_id=f"validate_{{i}}", outlets=[Asset(name=f"valid_{{i}}", uri=f"mlpipe://bench/valid_{{i}}")])
    def validate():
        import great_expectations as gx
        import pandas as pd

        df = pd.read_parquet(f"/data/part_{{i}}.parquet")
        context = gx.get_context(mode="ephemeral")
        batch = context.data_sources.add_pandas("p").add_dataframe_asset("a").add_batch_definition_whole_dataframe("b")
        suite = context.suites.add(gx.ExpectationSuite(name="s"))
        suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column="x"))
        result = batch.get_batch(batch_parameters={{"dataframe": df}}).validate(suite)
        if not result.success:
            raise ValueError(str(result))
        return {{"success": True}}
    return validate()

with DAG("bench_handwritten", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
    previous = None
    for i in range({tasks}):
        op = make(i)
        if previous is not None:
            previous >> op
        previous = op
"""

_PROBE = r"""
import json, runpy, sys, time
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
ns = runpy.run_path(sys.argv[1], run_name="dag_parse_probe")
t2 = time.perf_counter()
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"great_expectations", "pandas", "pyarrow", "numpy"})
print(json.dumps({"file": t2 - t1, "heavy": heavy}))
"""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _parse(path: Path) -> tuple[float, float, float, list[str]]:
    cpu, started = _cpu(), time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, check=True, timeout=300
    )
    total, cpu = time.perf_counter() - started, _cpu() - cpu
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return total, cpu, data["file"], data["heavy"]


def run(quick: bool) -> list[Result]:
    repeat = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-parse-") as tmp:
        provider = Path(tmp) / "provider_dag.py"
        handwritten = Path(tmp) / "handwritten_dag.py"
        provider.write_text(textwrap.dedent(PROVIDER_DAG.format(tasks=TASKS)))
        handwritten.write_text(textwrap.dedent(HANDWRITTEN_DAG.format(tasks=TASKS)))
        samples: dict[str, list[tuple[float, float, float, list[str]]]] = {"p": [], "h": []}
        _parse(provider), _parse(handwritten)  # warm the OS file cache for both
        for _ in range(repeat):  # interleaved, so load changes on a shared machine hit both
            samples["p"].append(_parse(provider))
            samples["h"].append(_parse(handwritten))
    heavy = sorted({m for s in samples["p"] for m in s[3]})

    def med(key: str, idx: int) -> float:
        return statistics.median(float(s[idx]) for s in samples[key])  # type: ignore[arg-type]

    return [
        Result(
            name=f"DAG parse, fresh process, wall ({TASKS} tasks)",
            baseline=med("h", 0),
            subject=med("p", 0),
            target=1.10,
            note=f"median of {repeat}; heavy modules imported by the provider DAG: {heavy or 'none'}",
        ),
        Result(
            name=f"DAG parse, fresh process, CPU ({TASKS} tasks)",
            baseline=med("h", 1),
            subject=med("p", 1),
            target=1.10,
            note="user + sys time of the child",
        ),
        Result(
            name="DAG parse, file only (airflow imported)",
            baseline=med("h", 2) * 1000,
            subject=med("p", 2) * 1000,
            unit="ms",
            note="what importing the provider adds to each parse",
        ),
    ]
