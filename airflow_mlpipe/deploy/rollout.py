"""Rollout of a registry model version to a deployment target.

``deploy``: build (or reuse) the bento → start it beside stable → smoke test → canary window with a
share of live traffic → switch (graceful, old backend drained first) or roll back. A version that
fails the smoke test or the canary never keeps traffic; stable serves throughout. With
``keep_previous`` the former stable keeps running without traffic (the watch window of
:mod:`airflow_mlpipe.deploy.release` can switch back to it at once). ``ensure`` restarts backends
that health checks find dead. The registry is not touched here: :mod:`~airflow_mlpipe.deploy.release`
decides what the registry says.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.deploy import BatchingConfig, CanaryConfig, SmokeTestConfig
from airflow_mlpipe.config.monitoring import PredictionLogWriterConfig
from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.core import registry
from airflow_mlpipe.core.registry import RegistryModel
from airflow_mlpipe.core.results import jsonable
from airflow_mlpipe.deploy.bento import build_bento
from airflow_mlpipe.deploy.checks import (
    CanaryFailed,
    ServingError,
    SmokeTestFailed,
    analyse_canary,
    holdout_rows,
    smoke_test,
    snapshot,
    warm_up,
)
from airflow_mlpipe.deploy.targets.base import Backend, DeploymentTarget

if TYPE_CHECKING:
    from airflow_mlpipe.hooks.mlflow import MlflowHook

Log = Callable[[str], None]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def deploy(
    target: DeploymentTarget,
    hook: MlflowHook,
    model: RegistryModel,
    *,
    smoke: SmokeTestConfig | None,
    canary: CanaryConfig,
    online_spec: dict[str, Any] | None = None,
    batching: BatchingConfig | None = None,
    prediction_log: PredictionLogWriterConfig | None = None,
    status: str = "deployed",
    keep_previous: bool = False,
    log: Log = print,
) -> dict[str, Any]:
    """Roll ``model`` out on ``target``; return the deploy result (see docs/stages/deployment.md).

    :param batching: adaptive batching of the served bento (default: on, with
        :class:`~airflow_mlpipe.config.deploy.BatchingConfig`'s limits).
    :param prediction_log: the served bento logs its predictions there.
    :param keep_previous: leave the former stable backend running (without traffic) as
        ``state.previous``; the caller stops it with :func:`retire_previous` or switches back to it.

    :raises SmokeTestFailed: the new version never got traffic.
    :raises CanaryFailed: the canary was rolled back; stable serves as before.
    """
    bento = build_bento(
        hook, model, online_spec=online_spec, batching=batching, prediction_log=prediction_log
    )
    log(f"bento {bento.tag} ({'built' if bento.created else 'reused'})")
    result: dict[str, Any] = {
        "model_name": model.name,
        "version": model.version,
        "fingerprint": model.fingerprint,
        "bento_tag": bento.tag,
        "endpoint": target.endpoint,
        "canary": None,
    }
    with target.locked():
        state = _drop_orphaned_canary(target, log)
        stable = state.stable
        if stable is not None and stable.bento_tag == bento.tag:
            if not keep_previous and _kept_alive(target, state.previous, stable):
                target.stop(state.previous)  # left running by a run killed right after its switch
            restarted = _ensure_locked(target, log)["restarted"]
            log(f"{bento.tag} already serves {target.endpoint}: nothing to do")
            return {**result, "status": "noop", "deployed_at": stable.started_at, "restarted": restarted}

        candidate = target.start(bento.tag, model_name=model.name, model_version=model.version)
        state.candidate = candidate
        target.save_state(state)
        log(f"started {bento.tag} at {candidate.url}")
        try:
            if smoke is not None:
                frame = holdout_rows(smoke, model.features)
                with hook.activate():
                    estimator = registry.load_model(model)
                result["smoke_test"] = smoke_test(
                    candidate.url, estimator, frame, smoke, expect_version=model.version
                )
                log(f"smoke test passed on {len(frame)} holdout rows")
            if stable is not None and canary.enabled and target.health(stable).ok:
                if smoke is not None and canary.warmup_requests:
                    rows = jsonable(frame.head(20).to_dict(orient="records"))
                    result["warm_up"] = warm_up(
                        candidate.url, rows, canary.warmup_requests, budget_s=max(10.0, canary.window_seconds)
                    )
                    log(f"warmed up the new version: {result['warm_up']}")
                result["canary"] = _canary(target, stable, candidate, canary, log)
                if not result["canary"]["passed"]:
                    raise CanaryFailed(
                        f"Canary of {model.name} v{model.version} rolled back: "
                        + "; ".join(result["canary"]["reasons"]),
                        {**result, "status": "rolled_back"},
                    )
        except BaseException:
            # Never leave traffic on a version that failed: stable keeps (or gets back) everything.
            if stable is not None and target.proxy_running():
                target.route(stable)
            target.stop(candidate)
            state = target.load_state()
            state.candidate, state.canary, state.canary_share = None, None, 0.0
            target.save_state(state)
            raise

        target.route(candidate)  # graceful: returns once requests in flight on the old one finished
        # Recorded before anything is stopped: a rollout killed from here on leaves the former
        # stable as ``previous``, which the next rollout retires (or watches again).
        kept = state.previous
        state.previous, state.stable, state.canary, state.canary_share = stable, candidate, None, 0.0
        state.candidate = None
        target.save_state(state)
        if _kept_alive(target, kept, stable):
            target.stop(kept)  # a backend kept by an earlier run that never retired it
        if stable is not None and not keep_previous:
            target.stop(stable)
    log(f"{model.name} v{model.version} serves {target.endpoint}")
    result.update(status=status, deployed_at=candidate.started_at or _now())
    result["previous_version"] = stable.model_version if stable is not None else None
    return result


def _canary(
    target: DeploymentTarget, stable: Backend, candidate: Backend, cfg: CanaryConfig, log: Log
) -> dict[str, Any]:
    servers = {stable.server: stable.url, candidate.server: candidate.url}
    target.route(stable, candidate, cfg.share)
    state = target.load_state()
    state.canary, state.canary_share = candidate, cfg.share
    target.save_state(state)
    log(f"canary {candidate.bento_tag} gets {cfg.share:.0%} of traffic for {cfg.window_seconds:.0f}s")
    before, after, healthy = observe(target, candidate, servers, cfg.window_seconds)
    decision = analyse_canary(before, after, stable.server, candidate.server, cfg, canary_healthy=healthy)
    decision.update(share=cfg.share, window_seconds=cfg.window_seconds)
    state.canary, state.canary_share = None, 0.0
    target.save_state(state)
    log(f"canary {'passed' if decision['passed'] else 'failed'}: {decision}")
    return decision


def observe(
    target: DeploymentTarget, watched: Backend, servers: dict[str, str], window_seconds: float
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Snapshots at the start and end of a window over which ``watched`` serves traffic, and
    whether its process stayed alive (the window ends early when it dies)."""
    before = snapshot(target, servers)
    deadline = time.monotonic() + window_seconds
    healthy = True
    while time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        if not target.health(watched).alive:
            healthy = False
            break
    return before, snapshot(target, servers), healthy


def _drop_orphaned_canary(target: DeploymentTarget, log: Log) -> Any:
    """A candidate or canary left by a deployment killed before it recorded its switch (during the
    smoke test, the canary window or the switch itself): traffic back to stable, process stopped."""
    state = target.load_state()
    left: dict[tuple[int | None, int], Backend] = {}
    for backend in (state.canary, state.candidate):
        # (pid, port) identifies a backend: a container target's backends have no pid
        if backend is not None and (
            state.stable is None or (backend.pid, backend.port) != (state.stable.pid, state.stable.port)
        ):
            left[(backend.pid, backend.port)] = backend
    if state.canary is not None or state.candidate is not None:
        for backend in left.values():
            log(f"stopping {backend.bento_tag} left behind by an interrupted deployment")
        if left and state.stable is not None and target.proxy_running():
            target.route(state.stable)
        for backend in left.values():
            target.stop(backend)
        state.canary, state.candidate, state.canary_share = None, None, 0.0
        target.save_state(state)
    return state


def _kept_alive(target: DeploymentTarget, previous: Backend | None, stable: Backend | None) -> bool:
    """``previous`` is a running process of its own (not a record, not the stable one)."""
    if previous is None or (
        stable is not None and (previous.pid, previous.port) == (stable.pid, stable.port)
    ):
        return False
    return target.health(previous).alive


def retire_previous(target: DeploymentTarget, log: Log = print) -> None:
    """Stop the former stable backend kept for the watch window; ``previous`` stays as a record."""
    with target.locked():
        state = target.load_state()
        if state.previous is not None and _kept_alive(target, state.previous, state.stable):
            log(f"stopping former stable {state.previous.bento_tag}")
            target.stop(state.previous)


def ensure(target: DeploymentTarget, log: Log = print) -> dict[str, Any]:
    """Health-check every backend; restart dead ones on their port and the proxy if it is down.

    :raises ServingError: a backend could not be restarted (the message has its log tail).
    """
    with target.locked():
        return _ensure_locked(target, log)


def _ensure_locked(target: DeploymentTarget, log: Log) -> dict[str, Any]:
    state = target.load_state()
    report: dict[str, Any] = {"endpoint": target.endpoint, "backends": {}, "restarted": [], "healthy": True}
    for role in ("stable", "canary"):
        backend: Backend | None = getattr(state, role)
        if backend is None:
            continue
        health = target.health(backend)
        report["backends"][role] = {"bento_tag": backend.bento_tag, "url": backend.url, **vars(health)}
        if health.ok:
            continue
        report["healthy"] = False
        log(f"{role} backend {backend.bento_tag} is unhealthy ({health.detail}); restarting it")
        target.stop(backend)
        try:
            fresh = target.start(
                backend.bento_tag,
                model_name=backend.model_name,
                model_version=backend.model_version,
                port=backend.port,
            )
        except Exception as exc:
            raise ServingError(
                f"{role} backend {backend.bento_tag} is down and did not restart: {exc}"
            ) from exc
        setattr(state, role, fresh)
        report["restarted"].append(role)
    if state.stable is not None and not target.proxy_running():
        report["healthy"] = False
        log("the proxy is not running; starting it")
        target.route(state.stable, state.canary, state.canary_share)
        report["restarted"].append("proxy")
    target.save_state(state)
    if report["restarted"]:
        _wait_proxy_sees_up(target, [b for b in (state.stable, state.canary) if b is not None])
    return report


def _wait_proxy_sees_up(target: DeploymentTarget, backends: list[Backend], timeout: float = 20.0) -> None:
    """Return once the proxy's own health checks mark every backend UP again.

    A restarted backend answers ``/readyz`` before the proxy's next check (``inter 1s``) notices;
    until then the proxy still answers 503 for it, so "restarted" must mean "taking traffic again".
    """
    deadline = time.monotonic() + timeout
    wanted = {b.server for b in backends}
    while time.monotonic() < deadline:
        traffic = target.traffic()
        if all(str(traffic.get(name, {}).get("status", "")).startswith("UP") for name in wanted):
            return
        time.sleep(0.2)
    raise ServingError(f"the proxy did not mark {sorted(wanted)} UP within {timeout:.0f}s after the restart")


def record_deployment(hook: MlflowHook, result: dict[str, Any]) -> None:
    """Tag the served model version with when, where and which bento (lineage in the registry)."""
    registry.set_tags(
        hook.get_client(),
        result["model_name"],
        result["version"],
        {
            cv.TAG_DEPLOYED_AT: result["deployed_at"],
            cv.TAG_DEPLOY_ENDPOINT: result["endpoint"],
            cv.TAG_DEPLOY_BENTO: result["bento_tag"],
        },
    )


__all__ = [
    "CanaryFailed",
    "SmokeTestFailed",
    "check",
    "deploy",
    "ensure",
    "record_deployment",
    "retire_previous",
]


def check(target: DeploymentTarget) -> dict[str, Any]:
    """Health of every backend and of the proxy, without changing anything."""
    state = target.load_state()
    report: dict[str, Any] = {"endpoint": target.endpoint, "backends": {}, "restarted": [], "healthy": True}
    for role in ("stable", "canary"):
        backend: Backend | None = getattr(state, role)
        if backend is not None:
            health = target.health(backend)
            report["backends"][role] = {"bento_tag": backend.bento_tag, "url": backend.url, **vars(health)}
            report["healthy"] &= health.ok
    report["proxy_running"] = target.proxy_running()
    report["healthy"] &= report["proxy_running"] or state.stable is None
    return report
