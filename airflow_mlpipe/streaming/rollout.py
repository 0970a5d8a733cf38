"""Roll a model version out to a stream: start its scorer, canary by key hash, hand over, or roll back.

Each served version scores in its own consumer group; which one *owns* an event is decided by the
routing epoch current when the event arrived (see :mod:`airflow_mlpipe.streaming.redis_streams`).
A switch appends an epoch for the events that arrive after it, so an event is owned by exactly one
scorer whenever it is processed: the old scorer finishes the events before the switch (``drained``)
and only then stops. The canary owns a share of the buckets of the event keys' hash; its decision
uses the HTTP canary's rules (:func:`airflow_mlpipe.deploy.checks.analyse_canary`) on the scorers'
metrics: error rate (model failures) and p95 scoring latency.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from airflow_mlpipe.config.deploy import CanaryConfig
from airflow_mlpipe.config.streaming import StreamConfig
from airflow_mlpipe.core.prometheus import histogram_buckets, scrape
from airflow_mlpipe.deploy.checks import CanaryFailed, ServingError, analyse_canary
from airflow_mlpipe.deploy.targets.local import free_port, http_ok, spawn_detached, wait_ready
from airflow_mlpipe.deploy.targets.state import FileStateStore, StateStore
from airflow_mlpipe.exceptions import DataError
from airflow_mlpipe.streaming.metrics import PREFIX
from airflow_mlpipe.streaming.redis_streams import RedisStreamTransport
from airflow_mlpipe.streaming.transport import BUCKETS

Log = Callable[[str], None]


@dataclass
class Scorer:
    """One running scorer process."""

    name: str
    bento_tag: str
    model_name: str
    model_version: str
    pid: int
    metrics_url: str
    log: str
    started_at: str

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Scorer | None:
        return cls(**data) if data else None


def scorer_name(bento_tag: str) -> str:
    """The scorer (and consumer-group suffix) of a bento: one per bento version."""
    return "s_" + "".join(c if c.isalnum() else "_" for c in bento_tag.split(":", 1)[-1])


class StreamDeployment:
    """The scorers of one stream, run as local processes; state in a state store.

    :param state_dir: directory of the scorers' logs (created), and of ``state.json`` by default.
    :param config: the stream's configuration.
    :param bentoml_home: BentoML store of the bentos (default ``$BENTOML_HOME``).
    :param ready_timeout: seconds a scorer may take to load its model.
    :param store: the stream's state and its lock (default ``state.json`` in ``state_dir``; the SQL
        store of :mod:`airflow_mlpipe.deploy.targets.state` for state every worker sees).
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        config: StreamConfig,
        *,
        bentoml_home: str | None = None,
        ready_timeout: float = 120.0,
        store: StateStore | None = None,
    ) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.transport = RedisStreamTransport(config)
        self.bentoml_home = bentoml_home or os.environ.get("BENTOML_HOME")
        self.ready_timeout = ready_timeout
        self.store = store if store is not None else FileStateStore(self.dir)

    # -- state ------------------------------------------------------------------------------------
    def load_state(self) -> dict[str, Any]:
        return self.store.load() or {"stable": None, "previous": None}

    def save_state(self, state: dict[str, Any]) -> None:
        self.store.save(state)

    # -- processes --------------------------------------------------------------------------------
    def start(
        self, bento_tag: str, *, model_name: str, model_version: str, start: str = "0", consumer: str = "c1"
    ) -> Scorer:
        """Start a scorer process for ``bento_tag`` and wait until it is ready."""
        name = scorer_name(bento_tag)
        port = free_port()
        logs = self.dir / "scorers"
        logs.mkdir(exist_ok=True)
        log_path = logs / f"{name}-{consumer}-{port}.log"
        cmd = [
            sys.executable,
            "-m",
            "airflow_mlpipe._serving.stream",
            "--bento",
            bento_tag,
            "--stream-config",
            json.dumps(self.config.as_dict()),
            "--name",
            name,
            "--consumer",
            consumer,
            "--start",
            start,
            "--metrics-port",
            str(port),
        ]
        env = dict(os.environ, BENTOML_DO_NOT_TRACK="true", MLFLOW_DISABLE_TELEMETRY="true")
        if self.bentoml_home:
            env["BENTOML_HOME"] = self.bentoml_home
        env.pop("MLPIPE_SERVICE_CONFIG", None)
        proc = spawn_detached(cmd, log_path, env)
        scorer = Scorer(
            name, bento_tag, model_name, str(model_version), proc.pid, f"http://127.0.0.1:{port}",
            str(log_path), dt.datetime.now(dt.UTC).isoformat(),
        )  # fmt: skip
        what = f"stream scorer for {bento_tag}"
        wait_ready(
            proc,
            f"{scorer.metrics_url}/readyz",
            self.ready_timeout,
            what,
            log_path,
            lambda: self.stop(scorer),
        )
        return scorer

    def stop(self, scorer: Scorer, timeout: float = 30.0) -> None:
        """SIGTERM (the scorer commits its batch and exits), SIGKILL after ``timeout``."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(scorer.pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if _reaped(scorer.pid):
                    return
                time.sleep(0.05)

    def alive(self, scorer: Scorer) -> bool:
        return not _reaped(scorer.pid) and http_ok(f"{scorer.metrics_url}/livez")

    def snapshot(self, scorers: list[Scorer]) -> dict[str, Any]:
        """Counters and latency of each scorer in the shape :func:`analyse_canary` reads."""
        out: dict[str, Any] = {"proxy": {}, "latency": {}}
        for s in scorers:
            try:
                samples = scrape(f"{s.metrics_url}/metrics", timeout=3.0)
            except DataError:
                out["proxy"][s.name] = {"status": "DOWN"}
                continue
            codes: dict[str, float] = {}
            for name, labels, value in samples:
                if name == f"{PREFIX}request_total":
                    code = labels.get("http_response_code", "")
                    codes[code] = codes.get(code, 0.0) + value
            out["proxy"][s.name] = {
                "requests": sum(codes.values()),
                "http_5xx": sum(v for c, v in codes.items() if c.startswith("5")),
                "status": "UP",
            }
            out["latency"][s.name] = histogram_buckets(samples, f"{PREFIX}request_duration_seconds")
        return out

    # -- rollout ----------------------------------------------------------------------------------
    def wait_drained(self, scorer: Scorer, upto: str, timeout: float) -> None:
        """Return once ``scorer`` has committed every event up to ``upto``."""
        group = self.config.group(scorer.name)
        deadline = time.monotonic() + timeout
        while not self.transport.drained(group, upto):
            if time.monotonic() > deadline:
                raise ServingError(
                    f"scorer {scorer.name} did not finish the events up to {upto} within {timeout:.0f}s "
                    f"(group state {self.transport.group_state(group)}); it keeps running"
                )
            time.sleep(0.1)

    def retire(self, scorer: Scorer, upto: str, timeout: float) -> None:
        """Stop ``scorer`` once it owns nothing more and remove its consumer group."""
        self.wait_drained(scorer, upto, timeout)
        self.stop(scorer)
        self.transport.remove_group(self.config.group(scorer.name))

    def shutdown(self) -> None:
        """Stop every scorer of this stream (tests, demo teardown); groups and streams stay."""
        for role in ("canary", "stable"):
            scorer = Scorer.from_dict(self.load_state().get(role))
            if scorer is not None:
                self.stop(scorer)


def deploy_stream(
    deployment: StreamDeployment,
    bento_tag: str,
    *,
    model_name: str,
    model_version: str,
    canary: CanaryConfig,
    drain_timeout: float = 300.0,
    log: Log = print,
) -> dict[str, Any]:
    """Make ``bento_tag`` score the stream; return the result (see docs/stages/streaming.md).

    Holds the stream's state lock throughout: two hand-overs of one stream never interleave.

    :raises CanaryFailed: the canary was rolled back; the stable scorer owns every event again.
    """
    with deployment.store.locked():
        return _deploy_locked(
            deployment,
            bento_tag,
            model_name=model_name,
            model_version=model_version,
            canary=canary,
            drain_timeout=drain_timeout,
            log=log,
        )


def _deploy_locked(
    deployment: StreamDeployment,
    bento_tag: str,
    *,
    model_name: str,
    model_version: str,
    canary: CanaryConfig,
    drain_timeout: float,
    log: Log,
) -> dict[str, Any]:
    state = deployment.load_state()
    stable = Scorer.from_dict(state.get("stable"))
    cfg = deployment.config
    result: dict[str, Any] = {
        "model_name": model_name,
        "version": str(model_version),
        "bento_tag": bento_tag,
        "input_stream": cfg.input_stream,
        "output_stream": cfg.output_stream,
        "dead_letter_stream": cfg.dead_letter_stream,
        "canary": None,
        "previous_version": stable.model_version if stable else None,
    }
    name = scorer_name(bento_tag)
    if stable is not None and stable.name == name and deployment.alive(stable):
        return {**result, "status": "noop", "scorer": stable.name, "deployed_at": stable.started_at}
    everything = (0, BUCKETS)
    if stable is None or stable.name == name:  # first deploy, or the same version restarted
        candidate = deployment.start(bento_tag, model_name=model_name, model_version=model_version)
        result["switch_after"] = deployment.transport.set_route({name: everything})
        state.update(stable=asdict(candidate))
        deployment.save_state(state)
        log(f"{bento_tag} scores {cfg.input_stream} as {candidate.name}")
        return {**result, "status": "deployed", "scorer": candidate.name, "deployed_at": candidate.started_at}

    # The new group starts where the old one has unfinished events; the epochs keep it from
    # scoring those (they belong to the old scorer), and it skips them cheaply.
    start = deployment.transport.start_position(cfg.group(stable.name))
    candidate = deployment.start(bento_tag, model_name=model_name, model_version=model_version, start=start)
    log(f"started stream scorer {candidate.name} for {bento_tag} from {start}")
    try:
        if canary.enabled and deployment.alive(stable):
            cut = round(canary.share * BUCKETS)
            split = deployment.transport.set_route({candidate.name: (0, cut), stable.name: (cut, BUCKETS)})
            state.update(canary=asdict(candidate), canary_share=canary.share)
            deployment.save_state(state)
            # The window starts once the canary has passed the events before its epoch (not its
            # own): from then on it sees its share of live events, as an HTTP canary does.
            deployment.wait_drained(candidate, split, drain_timeout)
            log(
                f"canary {candidate.name} owns {canary.share:.0%} of event keys for {canary.window_seconds:.0f}s"
            )
            before = deployment.snapshot([stable, candidate])
            deadline = time.monotonic() + canary.window_seconds
            healthy = True
            while time.monotonic() < deadline and healthy:
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                healthy = deployment.alive(candidate)
            after = deployment.snapshot([stable, candidate])
            decision = analyse_canary(
                before, after, stable.name, candidate.name, canary, canary_healthy=healthy
            )
            decision.update(share=canary.share, window_seconds=canary.window_seconds)
            result["canary"] = decision
            log(f"canary {'passed' if decision['passed'] else 'failed'}: {decision}")
            if not decision["passed"]:
                upto = deployment.transport.set_route({stable.name: everything})
                state.update(canary=None, canary_share=0.0)
                deployment.save_state(state)
                deployment.retire(candidate, upto, drain_timeout)
                raise CanaryFailed(
                    f"Stream canary of {model_name} v{model_version} rolled back: "
                    + "; ".join(decision["reasons"]),
                    {**result, "status": "rolled_back", "switch_after": upto},
                )
    except CanaryFailed:
        raise
    except BaseException:
        deployment.transport.set_route({stable.name: everything})
        deployment.stop(candidate)
        raise
    upto = deployment.transport.set_route({candidate.name: everything})
    state.update(stable=asdict(candidate), previous=asdict(stable), canary=None, canary_share=0.0)
    deployment.save_state(state)
    deployment.retire(stable, upto, drain_timeout)
    log(f"{bento_tag} took over {cfg.input_stream} after {upto}")
    return {
        **result,
        "status": "deployed",
        "scorer": candidate.name,
        "switch_after": upto,
        "deployed_at": candidate.started_at,
    }


def _reaped(pid: int) -> bool:
    """True once ``pid`` has exited (reaping it when it is our child)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True
