"""DAG parse time: a DAG file using the provider's operators vs a hand-written TaskFlow DAG.

Both DAGs have the same number of tasks and do the same kind of work; the hand-written one imports
great_expectations/pandas inside its task bodies (what a careful user writes without the
provider). Each file is parsed in a fresh ``python`` subprocess, as a DAG processor child does:

* ``fresh process`` — wall time and CPU time (user + sys, from ``RUSAGE_CHILDREN``) of
  ``python -c 'import airflow.sdk; exec the file'``; CPU time is the steadier of the two on a
  shared machine, where wall time mostly measures waiting for a core;
* ``file only`` — time to execute the file after ``airflow.sdk`` is already imported (what the
  provider itself adds per parse; no target, the absolute difference is what matters);
* ``factory`` — the reference ``churn_training`` DAG file (built from YAML by the training factory)
  against the same DAG written by hand: the same task ids, dependencies, mapped task, asset
  schedule and outlets, Airflow's ``ApprovalOperator``, and the provider operator modules that a
  hand-written DAG using them imports. Parsed as Airflow's DAG processor does it: ``DagBag`` on
  the file in a child whose heap was frozen (``gc.freeze()``) after importing Airflow, timed in
  CPU time of the fill. What remains is what the factory adds: YAML, config validation, graph
  building and rendering.
"""

from __future__ import annotations

import json
import re
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

REPO = Path(__file__).resolve().parent.parent

FACTORY_DAG = f"""
from airflow_mlpipe.factories.pipelines import training_dag

dag = training_dag({str(REPO / "dags" / "config" / "churn.yaml")!r})
"""

#: the factory DAG written by hand (task ids, edges, schedule and outlets as the factory renders them)
FACTORY_TWIN_DAG = """
import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, Asset, task
from airflow.sdk.definitions.asset import AssetAll

# the provider operator modules a hand-written DAG using them imports
import airflow_mlpipe.operators.bentoml
import airflow_mlpipe.operators.evaluation
import airflow_mlpipe.operators.feast
import airflow_mlpipe.operators.great_expectations
import airflow_mlpipe.operators.mlflow


def a(stage, name):
    return Asset(name=f"mlpipe.{stage}.churn.{name}", uri=f"mlpipe://{stage}/churn.{name}", group="mlpipe")


with DAG(
    "churn_training",
    schedule=AssetAll(a("validation", "validated"), a("monitoring", "drift")),
    start_date=pendulum.datetime(2024, 1, 1),
    catchup=False,
    tags=["mlpipe"],
):
    @task(task_id="validate.check_batch")
    def check_batch(): ...
    @task(task_id="features.apply")
    def apply(): ...
    @task(task_id="features.materialize")
    def materialize(): ...
    @task(task_id="features.training_set", outlets=[a("features", "training_set")])
    def training_set(): ...
    @task(task_id="train.search.start")
    def start(): return [{}]
    @task(task_id="train.search.candidate")
    def candidate(spec): ...
    @task(task_id="train.search.register_best", outlets=[a("training", "model")])
    def register_best(): ...
    @task(task_id="evaluate.gate")
    def gate(): ...
    @task(task_id="evaluate.promote")
    def promote(): ...
    @task(task_id="deploy.serve", outlets=[a("deployment", "deployment"), a("evaluation", "champion")])
    def serve(): ...
    @task(task_id="deploy.batch_score", outlets=[a("deployment", "predictions")])
    def batch_score(): ...

    features = training_set()
    specs = start()
    check_batch() >> apply() >> materialize() >> features >> specs
    candidates = candidate.expand(spec=specs)
    features >> candidates
    approval = ApprovalOperator(task_id="evaluate.approval", subject="Promote?", body="...")
    candidates >> register_best() >> gate() >> approval >> promote() >> serve() >> batch_score()
"""

#: as a DAG processor child: Airflow imported, heap frozen (``DagFileProcessorManager`` does
#: ``gc.freeze()`` before forking parsers), then ``DagBag`` on the one file, in CPU time
_DAGBAG_PROBE = r"""
import gc, json, logging, sys, time
import airflow.sdk
from airflow.dag_processing.dagbag import DagBag
logging.disable(logging.WARNING)
gc.freeze()
cpu, wall = time.process_time(), time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
if bag.import_errors or len(bag.dags) != 1:
    raise SystemExit(f"parse failed: {bag.import_errors} {list(bag.dags)}")
print(json.dumps({"cpu": cpu, "wall": wall, "tasks": len(next(iter(bag.dags.values())).tasks)}))
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


def _dagbag(path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _DAGBAG_PROBE, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _factory(tmp: Path, repeat: int) -> list[Result]:
    factory, twin, plain = tmp / "factory_dag.py", tmp / "factory_twin_dag.py", tmp / "plain_twin_dag.py"
    factory.write_text(FACTORY_DAG)
    twin.write_text(textwrap.dedent(FACTORY_TWIN_DAG))
    plain.write_text(re.sub(r"^import airflow_mlpipe.*$", "", textwrap.dedent(FACTORY_TWIN_DAG), flags=re.M))
    for path in (factory, twin, plain):  # warm the file cache and write byte code
        _dagbag(path)
    f_runs, t_runs, p_runs = [], [], []
    for _ in range(repeat):  # interleaved, so load changes on a shared machine hit all three
        f_runs.append(_dagbag(factory))
        t_runs.append(_dagbag(twin))
        p_runs.append(_dagbag(plain))
    tasks = {r["tasks"] for r in f_runs + t_runs + p_runs}
    if len(tasks) != 1:
        raise RuntimeError(f"the factory DAG and its hand-written twin differ in size: {tasks}")

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs) * 1000

    return [
        Result(
            name=f"factory DAG parse, DagBag CPU ({tasks.pop()} tasks)",
            baseline=med(t_runs, "cpu"),
            subject=med(f_runs, "cpu"),
            unit="ms",
            target=1.10,
            note=f"churn_training from YAML vs the same DAG by hand; median of {repeat}, heap frozen",
        ),
        Result(
            name="factory DAG parse vs plain TaskFlow, DagBag CPU",
            baseline=med(p_runs, "cpu"),
            subject=med(f_runs, "cpu"),
            unit="ms",
            note="the twin without the provider's operator modules: what the operators' imports cost",
        ),
        Result(
            name="factory DAG parse, DagBag wall",
            baseline=med(t_runs, "wall"),
            subject=med(f_runs, "wall"),
            unit="ms",
            note="wall time waits for a core on a busy machine; CPU time is the measure",
        ),
    ]


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
        factory = _factory(Path(tmp), repeat)
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
        *factory,
    ]
