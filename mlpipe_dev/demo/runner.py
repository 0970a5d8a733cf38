"""The reference loop, for real, on one machine: ``make demo``.

1. writes the seeded churn history (daily batches before the injected drift) and its reference;
2. starts a local ``mlflow server`` and an embedded Airflow (api-server, scheduler, dag-processor,
   triggerer; SQLite + LocalExecutor by default, or PostgreSQL + Redis + CeleryExecutor) on loopback;
3. runs ``churn_training``: validate → Feast training set → parallel candidates → gate → promote →
   deploy (HTTP service, and the stream scorer); queries the served model over HTTP and sends a
   few hundred events (some malformed) through the stream, waiting until each has a result;
4. lands the drifted batch; the ``churn_monitoring`` DAG starts from the asset watcher, detects the
   drift and emits the drift asset event, which starts ``churn_training`` again; its new champion
   takes over the HTTP endpoint and the stream (a second round of events shows the new version);
5. measures the served model's quality on drifted data before and after the retraining, from the
   scores the endpoint returns (:mod:`mlpipe_dev.demo.quality`);
6. prints a summary (runs, metrics, champion before/after, served quality before/after, endpoint,
   stream rounds, lineage, audit report of the new version), then — when run from a terminal —
   keeps everything up until Ctrl-C, and stops all it started.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_mlpipe.core.timing import scaled
from mlpipe_dev.demo import approval, streaming
from mlpipe_dev.demo.progress import RunProgress, RunStalled, wait_for_new_run
from mlpipe_dev.demo.quality import QualityProbe
from mlpipe_dev.local.mlflow_server import LocalMlflowServer
from mlpipe_dev.local.redis_server import LocalRedisServer
from mlpipe_dev.local.stack import AirflowApi, LocalAirflow

TRAINING_DAG = "churn_training"
#: events per round sent through the stream after a deployment (a few of them malformed)
STREAM_EVENTS = 300
MONITORING_DAG = "churn_monitoring"
REPO_DAGS = Path(__file__).resolve().parents[2] / "dags"


@dataclass
class DemoConfig:
    """Where and how the demo runs.

    :param workdir: everything the demo writes (data, Airflow home, artifacts, MLflow, bentos).
    :param dags_folder: the DAGs to run (the repository's ``dags/``).
    :param executor: ``LocalExecutor`` (SQLite) or ``CeleryExecutor`` (needs ``sql_alchemy_conn`` and broker).
    :param wait_for_ctrl_c: keep the stack up after the loop until Ctrl-C.
    :param run_timeout: how long a run may go without any task changing state (seconds, stretched
        by the machine's load when the wait starts); a run that keeps moving is never cut off.
    :param preload: task processes start with the stages' libraries imported (the provider's
        preloading executor settings, :mod:`airflow_mlpipe.executors`); ``False``: Airflow's own.
    """

    workdir: Path
    dags_folder: Path = REPO_DAGS
    executor: str = "LocalExecutor"
    sql_alchemy_conn: str | None = None
    celery_broker_url: str | None = None
    parallelism: int = 4
    history_days: int = 7
    run_timeout: float = 900
    wait_for_ctrl_c: bool = False
    preload: bool = True
    log: Callable[[str], None] = print
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class DemoResult:
    """What the loop did, for the summary and for the end-to-end tests."""

    workdir: str = ""
    airflow_url: str = ""
    mlflow_url: str = ""
    endpoint: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)
    champion_before: dict[str, Any] = field(default_factory=dict)
    champion_after: dict[str, Any] = field(default_factory=dict)
    prediction_before: Any = None
    prediction_after: Any = None
    drift: dict[str, Any] = field(default_factory=dict)
    traffic: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    #: the serving model's quality on drifted data before/after the retraining (see QualityProbe)
    quality: dict[str, Any] = field(default_factory=dict)
    #: one entry per round of events sent through the stream (see mlpipe_dev/demo/streaming.py)
    stream: list[dict[str, Any]] = field(default_factory=list)
    stream_enabled: bool = False
    #: seconds from the drifted batch landing to each reaction (see Demo._reaction)
    reaction: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def _post_json(url: str, payload: Any, timeout: float = 30) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def _task_results(api: AirflowApi, dag_id: str, run_id: str) -> dict[str, Any]:
    """The JSON results (XCom return values) of every successful task of a run, by task id."""
    out: dict[str, Any] = {}
    for ti in api.task_instances(dag_id, run_id):
        if ti["state"] != "success":
            continue
        try:
            value = api.xcom(dag_id, run_id, ti["task_id"], map_index=ti.get("map_index", -1))
        except Exception:  # tasks without a return value
            continue
        key = ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]"
        out[key] = value
    return out


def _find(results: dict[str, Any], key: str) -> dict[str, Any]:
    """The first task result that has ``key`` (e.g. the deploy result has ``endpoint``)."""
    for value in results.values():
        if isinstance(value, dict) and key in value:
            return value
    return {}


class Demo:
    """Runs the loop; see the module docstring."""

    def __init__(self, config: DemoConfig) -> None:
        self.cfg = config
        self.work = Path(config.workdir).resolve()
        self.data_dir = self.work / "data" / "churn"
        self.log = config.log
        self.approvals: list[dict[str, Any]] = []
        self.redis: LocalRedisServer | None = None
        self.stream: Any = None  # the StreamConfig of the reference config, when streaming is on

    # -- setup -------------------------------------------------------------------------------
    def prepare(self) -> None:
        from mlpipe_dev import churn_data as churn

        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        # One drifted day lands (it starts the retraining); the day after it is never landed: the
        # demo keeps it, with its labels, to measure the served models on drifted data neither saw.
        self.spec = churn.ChurnSpec(days=self.cfg.history_days + 2, drift_day=self.cfg.history_days)
        churn.write_batches(self.data_dir, self.spec, days=range(self.cfg.history_days))
        self.quality = QualityProbe.for_churn(self.spec, self.cfg.dags_folder)
        self.log(f"wrote {self.cfg.history_days} daily churn batches (before the drift) to {self.data_dir}")

    def env(self, mlflow_url: str) -> dict[str, str]:
        env = {
            "MLPIPE_DATA_DIR": str(self.data_dir),
            "MLPIPE_ARTIFACT_ROOT": f"file://{self.work / 'artifacts'}",
            "BENTOML_HOME": str(self.work / "bentoml"),
            "AIRFLOW_CONN_MLPIPE_MLFLOW_DEFAULT": json.dumps(
                {"conn_type": "mlpipe_mlflow", "host": mlflow_url}
            ),
        }
        if self.redis is not None:
            env["MLPIPE_STREAM_REDIS_URL"] = self.redis.url
        return {**env, **self.cfg.extra_env}

    def streaming_section(self) -> Any:
        """The ``streaming:`` section of the reference config the DAGs are built from."""
        from airflow_mlpipe.config.pipeline import PipelineConfig

        return PipelineConfig.from_yaml(self.cfg.dags_folder / "config" / "churn.yaml").streaming

    @contextlib.contextmanager
    def services(self) -> Iterator[tuple[LocalMlflowServer, LocalAirflow]]:
        cfg = self.cfg
        with contextlib.ExitStack() as running:
            section = self.streaming_section()
            if section.enabled:
                # The stream lives in a Redis of its own, gone with the demo (no shared keys).
                self.redis = running.enter_context(LocalRedisServer(self.work / "redis"))
                self.log(f"Redis for the stream ready at {self.redis.url}")
            self.log("starting a local MLflow server …")
            mlflow_server = running.enter_context(LocalMlflowServer(self.work / "mlflow"))
            self.log(f"MLflow server ready at {mlflow_server.url}")
            if section.enabled:
                self.stream = streaming.stream_config(section, self.env(mlflow_server.url))
            stack = LocalAirflow(
                home=self.work / "airflow",
                dags_folder=cfg.dags_folder,
                executor=cfg.executor,
                sql_alchemy_conn=cfg.sql_alchemy_conn,
                celery_broker_url=cfg.celery_broker_url,
                parallelism=cfg.parallelism,
                preload=cfg.preload,
                env=self.env(mlflow_server.url),
            )
            try:
                self.log(
                    f"starting Airflow ({cfg.executor}: api-server, scheduler, dag-processor, triggerer) …"
                )
                stack.start(timeout=scaled(180))
                self.log(f"Airflow ({cfg.executor}) ready at {stack.url}")
                yield mlflow_server, stack
            finally:
                stack.stop()
                self.stop_deployments()  # before Redis stops: a scorer commits its batch on SIGTERM

    def stop_deployments(self) -> None:
        """Stop every model service, proxy and stream scorer the deploy tasks started under the
        artifact root."""
        from airflow_mlpipe.deploy.targets.local import LocalTarget

        for state in sorted((self.work / "artifacts" / "deployments").glob("*/endpoint.json")):
            meta = json.loads(state.read_text())
            with contextlib.suppress(Exception):
                LocalTarget(
                    state.parent, name=meta["name"], bentoml_home=str(self.work / "bentoml")
                ).shutdown()
        streaming.stop_scorers(self.work / "artifacts", self.stream)

    # -- the loop ----------------------------------------------------------------------------
    def run_and_wait(self, api: AirflowApi, dag_id: str, run_id: str) -> dict[str, Any]:
        started = time.monotonic()
        progress = RunProgress(
            api,
            logs_dir=self.work / "airflow" / "logs",
            stall_timeout=scaled(self.cfg.run_timeout),
            on_awaiting_input=lambda d, r, ti: self.approve(api, d, r, ti),
        )
        state, instances = progress.wait(dag_id, run_id)
        took = time.monotonic() - started
        self.log(f"  {dag_id} {run_id}: {state} ({took:.0f} s)")
        if state != "success":
            failed = [t["task_id"] for t in instances if t["state"] == "failed"]
            raise RuntimeError(
                f"{dag_id} run {run_id} {state}; failed tasks: {failed} (log files named above); "
                f"Airflow home {self.work / 'airflow'}"
            )
        results = _task_results(api, dag_id, run_id)
        return {
            "dag_id": dag_id,
            "run_id": run_id,
            "state": state,
            "seconds": round(took, 1),
            "results": results,
            # each task's run time as Airflow recorded it (process start, imports and work)
            "task_seconds": {
                ti["task_id"] + ("" if ti.get("map_index", -1) < 0 else f"[{ti['map_index']}]"): ti[
                    "duration"
                ]
                for ti in instances
                if ti.get("duration") is not None
            },
        }

    def approve(self, api: AirflowApi, dag_id: str, run_id: str, ti: dict[str, Any]) -> None:
        """Answer a human-in-the-loop request through the REST API, as the demo's user."""
        log = self.work / "airflow" / "logs" / "scheduler.log"
        self.approvals.append(
            approval.answer(
                api,
                dag_id,
                run_id,
                ti,
                scheduler_log=lambda: log.read_text(errors="replace") if log.exists() else "",
                log=self.log,
            )
        )

    def sample_rows(self, n: int = 3) -> list[dict[str, Any]]:
        from mlpipe_dev import churn_data as churn

        rows = churn.load(self.data_dir, "features").head(n)
        return list(json.loads(rows.drop(columns=[churn.ENTITY, churn.TIMESTAMP]).to_json(orient="records")))

    def stream_round(self, result: DemoResult, tag: str) -> None:
        """Send a round of events through the stream the deployment handed to the champion and
        wait (deadline) until each has a result; record what the output streams say."""
        if self.stream is None:
            return
        rows = self.sample_rows(STREAM_EVENTS)
        r = streaming.produce_and_wait(self.stream, rows, tag, timeout=scaled(120))
        self.log(
            f"  stream {self.stream.input_stream}: {r['sent']} events → {r['scored']} scored, "
            f"{r['dead_lettered']} dead-lettered ({', '.join(r['dead_reasons'])}), by version "
            f"{r['versions']}, p50 latency {r['p50_latency_ms']} ms, all in {r['seconds']} s"
        )
        result.stream.append(r)

    def query_endpoint(self, endpoint: str) -> Any:
        return _post_json(f"{endpoint.rstrip('/')}/predict", {"rows": self.sample_rows()})

    def live_traffic(self, endpoint: str) -> Any:
        """Steady client traffic on the serving endpoint (~10 requests/s, loopback, bounded), so the
        canary of the next deployment has live requests to be judged on, and the summary can show
        that the rollout failed none of them."""
        from mlpipe_dev.loadgen import LoadLoop

        return LoadLoop(
            endpoint,
            self.sample_rows(1),
            concurrency=1,
            interval=0.1,
            max_seconds=3 * self.cfg.run_timeout,
            max_requests=100_000,
        ).start()

    def run(self) -> DemoResult:
        """Run the loop, print the summary (and wait for Ctrl-C if asked); stop everything."""
        with self.live() as (result, _stack):
            if self.cfg.wait_for_ctrl_c:
                self.log("Everything stays up until Ctrl-C.")
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(3600)
        return result

    @contextlib.contextmanager
    def live(self) -> Iterator[tuple[DemoResult, LocalAirflow]]:
        """Run the loop and keep MLflow, Airflow and the model services up while the ``with`` block
        runs (the browser tests look at the UI there); everything stops when it ends."""
        from mlpipe_dev import churn_data as churn

        t0 = time.monotonic()
        result = DemoResult(workdir=str(self.work))
        self.prepare()
        with self.services() as (mlflow_server, stack):
            api = stack.api
            result.airflow_url, result.mlflow_url = stack.url, mlflow_server.url
            result.stream_enabled = self.stream is not None
            self.log("waiting for the DAG files to be parsed …")
            api.wait_dags([TRAINING_DAG, MONITORING_DAG], timeout=scaled(180))
            known_training = {r["dag_run_id"] for r in api.runs(TRAINING_DAG)}

            self.log("1/3 first training run: validate → features → candidates → gate → promote → deploy")
            first = self.run_and_wait(api, TRAINING_DAG, api.trigger(TRAINING_DAG))
            result.runs.append(first)
            known_training.add(first["run_id"])
            deployed = _find(first["results"], "endpoint")
            result.champion_before = _find(first["results"], "fingerprint") | {"deployed": deployed}
            result.endpoint = deployed.get("endpoint", "")
            if result.endpoint:
                result.prediction_before = self.query_endpoint(result.endpoint)
                self.log(f"  model answers at {result.endpoint}: {result.prediction_before}")
                self.quality.measure("before", result.endpoint)
                self.log("\n".join(QualityProbe.summary_lines(self.quality.result())))
            self.stream_round(result, "before-drift")

            traffic = self.live_traffic(result.endpoint) if result.endpoint else None

            self.log("2/3 a drifted batch lands; monitoring starts from the asset watcher")
            known_monitoring = {r["dag_run_id"] for r in api.runs(MONITORING_DAG)}
            churn.write_day(self.data_dir, self.spec, self.cfg.history_days)
            landed = dt.datetime.now(dt.UTC)
            monitoring = self._wait_for_drift_run(api, known_monitoring)
            result.runs.append(monitoring)
            result.drift = _find(monitoring["results"], "drift_detected")

            self.log("3/3 the drift asset event starts retraining")
            retrain_id = self._wait_new_run(
                api, TRAINING_DAG, known_training, "retraining (drift asset event)"
            )
            second = self.run_and_wait(api, TRAINING_DAG, retrain_id)
            result.runs.append(second)
            result.reaction = _reaction(api, landed, monitoring, second)
            deployed = _find(second["results"], "endpoint")
            result.champion_after = _find(second["results"], "fingerprint") | {"deployed": deployed}
            if deployed.get("endpoint"):
                result.endpoint = deployed["endpoint"]
                result.prediction_after = self.query_endpoint(result.endpoint)
                self.quality.measure("after", result.endpoint)
            result.quality = self.quality.result()
            self.stream_round(result, "after-retrain")
            if traffic is not None:
                result.traffic = traffic.stop().summary()
            result.lineage = self.lineage(mlflow_server.url)
            if result.champion_after.get("version"):
                result.audit = self.audit(stack, str(result.champion_after["version"]))
            result.approvals = list(self.approvals)
            result.seconds = time.monotonic() - t0
            self.log(summary(result))
            yield result, stack

    def _wait_for_drift_run(self, api: AirflowApi, known: set[str]) -> dict[str, Any]:
        """Monitoring runs once per new batch; return the run that saw the drifted one."""
        deadline = time.monotonic() + scaled(self.cfg.run_timeout)
        while time.monotonic() < deadline:
            run_id = self._wait_new_run(api, MONITORING_DAG, known, "monitoring run (asset watcher)")
            known.add(run_id)
            run = self.run_and_wait(api, MONITORING_DAG, run_id)
            if _find(run["results"], "drift_detected").get("drift_detected"):
                return run
        raise RuntimeError("monitoring never reported the injected drift")

    def _wait_new_run(self, api: AirflowApi, dag_id: str, known: set[str], what: str) -> str:
        return wait_for_new_run(
            lambda: [r["dag_run_id"] for r in api.runs(dag_id)],
            known,
            what=f"{dag_id}: {what}",
            timeout=scaled(self.cfg.run_timeout),
        )

    def lineage(self, mlflow_url: str) -> dict[str, Any]:
        """What the registry says produced the serving model (``mlpipe lineage``)."""
        from mlflow import MlflowClient

        from airflow_mlpipe.provenance import model_lineage

        try:
            return dict(
                model_lineage(MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url), "churn")
            )
        except Exception as exc:  # the summary must still print
            return {"error": f"{type(exc).__name__}: {exc}"}

    def audit(self, stack: LocalAirflow, version: str) -> dict[str, Any]:
        """``mlpipe audit`` of the retrained version, run as a user would, against this stack."""
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "airflow_mlpipe.cli",
                "audit",
                "--model",
                "churn",
                "--version",
                version,
                "--json",
            ],
            env=stack.process_env,
            capture_output=True,
            text=True,
            timeout=self.cfg.run_timeout,
        )
        if proc.returncode not in (0, 1):  # 1: the audit found a changed record; still a report
            return {"error": proc.stderr[-2000:]}
        return dict(json.loads(proc.stdout))


def _reaction(
    api: AirflowApi, landed: dt.datetime, monitoring: dict[str, Any], retraining: dict[str, Any]
) -> dict[str, float]:
    """Seconds from the drifted batch landing to: the monitoring run starting, the drift being
    detected (the monitoring run's end) and the retraining run starting (Airflow's run times)."""

    def at(run: dict[str, Any], key: str) -> float:
        value = api.run(run["dag_id"], run["run_id"]).get(key)
        return round((dt.datetime.fromisoformat(str(value)) - landed).total_seconds(), 1) if value else -1.0

    return {
        "monitoring started": at(monitoring, "start_date"),
        "drift detected": at(monitoring, "end_date"),
        "retraining started": at(retraining, "start_date"),
    }


def summary(r: DemoResult) -> str:
    def model(d: dict[str, Any]) -> str:
        if not d:
            return "-"
        metrics = ", ".join(
            f"{k}={v:.3f}" for k, v in sorted((d.get("metrics") or {}).items()) if isinstance(v, float)
        )
        return f"{d.get('model_name')} v{d.get('version')} ({metrics})"

    answered = ", ".join("{task_id} → {chosen} by {by}".format(**a) for a in r.approvals)
    lines = ["", "=" * 72, "airflow-mlpipe demo: the loop ran end to end", "=" * 72]
    for run in r.runs:
        lines.append(f"  {run['dag_id']:<18} {run['run_id']:<48} {run['state']} in {run['seconds']} s")
    lines += [
        f"  champion before drift : {model(r.champion_before)}",
        f"  drift detected        : {r.drift.get('drift_detected')} (share {r.drift.get('drift_share')}, "
        f"columns {r.drift.get('drifted_columns')})",
        f"  champion after retrain: {model(r.champion_after)}",
        f"  serving endpoint      : {r.endpoint}  (POST /predict)",
        f"  prediction before/after: {r.prediction_before} / {r.prediction_after}",
        *QualityProbe.summary_lines(r.quality),
        "  drifted batch landed → "
        + ", ".join(f"{what} after {seconds} s" for what, seconds in r.reaction.items()),
        f"  live traffic during the rollout: {r.traffic.get('total')} requests, {r.traffic.get('failed')} failed, "
        f"by version {r.traffic.get('versions')}",
        f"  approvals answered    : {answered or 'none asked'}",
        _stream_summary(r),
        f"  lineage of the serving model: {json.dumps(r.lineage, default=str)[:600]}",
        f"  audit report of the serving model: {r.audit.get('html_uri') or r.audit.get('error')}",
        "",
        f"  Airflow UI : {r.airflow_url}  (user admin; password in {r.workdir}/airflow/passwords.json)",
        f"  MLflow UI  : {r.mlflow_url}",
        f"  total      : {r.seconds:.0f} s",
    ]
    return "\n".join(lines)


def _stream_summary(r: DemoResult) -> str:
    if not r.stream_enabled:
        return "  stream scoring        : off (streaming.enabled in dags/config/churn.yaml)"
    lines = ["  stream scoring        : events sent after each deployment, read back from the streams"]
    for s in r.stream:
        lines.append(
            f"    {s['tag']:<14}: {s['sent']} sent, {s['scored']} scored, {s['dead_lettered']} dead-lettered, "
            f"model version per scored event {s['versions']}, p50 latency {s['p50_latency_ms']} ms"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mlpipe_dev.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=".demo", help="where the demo writes everything (recreated)")
    parser.add_argument("--executor", default="LocalExecutor", choices=["LocalExecutor", "CeleryExecutor"])
    parser.add_argument(
        "--sql-alchemy-conn", default=None, help="metadata DB (default SQLite in the workdir)"
    )
    parser.add_argument("--broker", default=None, help="Celery broker URL, e.g. redis://127.0.0.1:6379/5")
    parser.add_argument("--no-wait", action="store_true", help="stop right after the summary")
    parser.add_argument(
        "--no-preload",
        action="store_true",
        help="Airflow's executors as they are: every task process imports its libraries itself",
    )
    args = parser.parse_args(argv)
    # Progress must show as it happens, also when stdout is a pipe or a CI log (block-buffered).
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    cfg = DemoConfig(
        workdir=Path(args.workdir),
        executor=args.executor,
        sql_alchemy_conn=args.sql_alchemy_conn,
        celery_broker_url=args.broker,
        wait_for_ctrl_c=not args.no_wait and sys.stdin.isatty(),
        preload=not args.no_preload,
    )
    try:
        Demo(cfg).run()
    except KeyboardInterrupt:
        print("interrupted: everything the demo started has been stopped")
        return 130
    except (RuntimeError, RunStalled) as exc:
        print(f"\nthe demo failed: {exc}", file=sys.stderr)
        return 1
    return 0
