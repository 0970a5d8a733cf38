"""Release: a candidate becomes champion only once it serves; automatic and manual rollback.

The registry must name what serves. :func:`release` is one transaction under the registry lock of
the model (:func:`airflow_mlpipe.evaluation.promotion.registry_lock`)::

    candidate ─► smoke test ─► canary ─► full switch ─► watch window ─► serving (champion)
        │            │            │                          │
        └────────────┴────────────┴─► rejected               └─► rolled_back (traffic back)

Nothing moves ``champion``/``previous`` before the watch window passed, so any failure leaves the
aliases exactly as they were; the version that failed is tagged with the check, the reasons and
the measured figures (``mlpipe.rollout.*``), and its ``candidate`` alias is removed. Errors that
say nothing about the version (registry or proxy unreachable) leave it ``candidate``, so an
Airflow retry of the task takes the rollout up where it stopped.

:func:`roll_back` is the one way back: the failed watch window and the manual rollback operator
both use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_mlpipe.config.deploy import BatchingConfig, CanaryConfig, SmokeTestConfig, WatchConfig
from airflow_mlpipe.config.monitoring import PredictionLogWriterConfig
from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.core.registry import RegistryModel, resolve_model, version_by_alias
from airflow_mlpipe.deploy.checks import CanaryFailed, SmokeTestFailed, analyse_watch
from airflow_mlpipe.deploy.rollout import deploy, observe, retire_previous
from airflow_mlpipe.deploy.targets.base import Backend, BackendStartError, DeploymentTarget
from airflow_mlpipe.evaluation.promotion import (
    PromotionError,
    mark_rollout,
    promote,
    registry_lock,
    withdraw_candidate,
)
from airflow_mlpipe.exceptions import QualityGateFailed

if TYPE_CHECKING:
    from airflow_mlpipe.hooks.mlflow import MlflowHook

Log = Callable[[str], None]


class WatchWindowFailed(QualityGateFailed):
    """The new version failed its watch window after the full switch and was rolled back."""


_FAILED_CHECK: dict[type[Exception], cv.RolloutCheck] = {
    SmokeTestFailed: cv.RolloutCheck.SMOKE,
    CanaryFailed: cv.RolloutCheck.CANARY,
    BackendStartError: cv.RolloutCheck.START,
}


def _lock_ttl(target: DeploymentTarget, canary: CanaryConfig, watch: WatchConfig) -> float:
    """Long enough for the whole rollout: two backend starts, both windows and a margin."""
    ready = float(getattr(target, "ready_timeout", 180.0))
    windows = (canary.window_seconds if canary.enabled else 0.0) + (
        watch.window_seconds if watch.enabled else 0.0
    )
    return 2 * ready + windows + 300.0


def aliases(client: Any, model_name: str) -> dict[str, str | None]:
    """``champion`` and ``previous`` of ``model_name`` now."""
    return {a: version_by_alias(client, model_name, a) for a in (cv.ALIAS_CHAMPION, cv.ALIAS_PREVIOUS)}


def release(
    target: DeploymentTarget,
    hook: MlflowHook,
    model: RegistryModel,
    *,
    smoke: SmokeTestConfig | None,
    canary: CanaryConfig,
    watch: WatchConfig,
    online_spec: dict[str, Any] | None = None,
    batching: BatchingConfig | None = None,
    prediction_log: PredictionLogWriterConfig | None = None,
    require_blessed: bool = True,
    log: Log = print,
) -> dict[str, Any]:
    """Roll ``model`` out and make it champion once it serves; see the module docstring.

    :raises SmokeTestFailed, CanaryFailed: rejected before it served all traffic.
    :raises WatchWindowFailed: it served all traffic, failed the watch window and was rolled back.
    :raises PromotionError: the aliases did not read back as written.
    """
    client = hook.get_client()
    ttl = _lock_ttl(target, canary, watch)
    with registry_lock(client, model.name, ttl=ttl, timeout=ttl):
        before = aliases(client, model.name)
        try:
            result = deploy(
                target,
                hook,
                model,
                smoke=smoke,
                canary=canary,
                online_spec=online_spec,
                batching=batching,
                prediction_log=prediction_log,
                keep_previous=watch.enabled,
                log=log,
            )
        except (SmokeTestFailed, CanaryFailed, BackendStartError) as exc:
            # Any other error says nothing about the version: it stays candidate for a retry.
            check = next(c for kind, c in _FAILED_CHECK.items() if isinstance(exc, kind))
            summary = getattr(exc, "summary", {})
            figures = summary.get("canary") or summary
            _reject(client, model, cv.RolloutStatus.REJECTED, check, [str(exc)], figures, before, log)
            summary.update(status=cv.RolloutStatus.REJECTED.value, check=check.value)
            raise
        if watch.enabled and _watching(target, model):
            result["watch"] = decision = watch_window(target, watch, log)
            if not decision["passed"]:
                previous = target.load_state().previous
                back = roll_back(
                    target,
                    hook,
                    model.name,
                    to_version=previous.model_version if previous else before[cv.ALIAS_CHAMPION],
                    check=cv.RolloutCheck.WATCH,
                    reasons=decision["reasons"],
                    figures=decision,
                    online_spec=online_spec,
                    prediction_log=prediction_log,
                    log=log,
                )
                _verify_unchanged(client, model.name, before)
                raise WatchWindowFailed(
                    f"{model.name} v{model.version} failed its watch window and was rolled back to "
                    f"v{back['version']}: " + "; ".join(decision["reasons"]),
                    {
                        **result,
                        "status": "rolled_back",
                        "check": cv.RolloutCheck.WATCH.value,
                        "rollback": back,
                    },
                )
            retire_previous(target, log)
        promoted = promote(client, model.name, model.version, require_blessed=require_blessed)
        mark_rollout(client, model.name, model.version, cv.RolloutStatus.SERVING)
    result.update(
        champion_version=promoted.version,
        registry_previous_version=promoted.previous_version,
        promotion_status=promoted.status,
    )
    log(f"{model.name} v{model.version} is champion (previous: {promoted.previous_version})")
    return result


def _watching(target: DeploymentTarget, model: RegistryModel) -> bool:
    """The new version serves and a former stable is kept for the window (a first deployment has
    nothing to roll back to, and a no-op deployment of the serving version has nothing to watch
    unless an interrupted run left the former stable running)."""
    state = target.load_state()
    return (
        state.stable is not None
        and state.stable.model_version == model.version
        and state.previous is not None
        and state.previous.model_version != model.version
        and target.health(state.previous).alive
    )


def watch_window(target: DeploymentTarget, cfg: WatchConfig, log: Log = print) -> dict[str, Any]:
    """Watch the stable backend (all traffic) for ``cfg.window_seconds``; the decision."""
    stable = target.load_state().stable
    assert stable is not None
    log(f"watching {stable.bento_tag} for {cfg.window_seconds:.0f}s with all traffic")
    before, after, healthy = observe(target, stable, {stable.server: stable.url}, cfg.window_seconds)
    decision = analyse_watch(before, after, stable.server, cfg, healthy=healthy)
    decision["window_seconds"] = cfg.window_seconds
    log(f"watch window {'passed' if decision['passed'] else 'failed'}: {decision}")
    return decision


def _reject(
    client: Any,
    model: RegistryModel,
    status: cv.RolloutStatus,
    check: cv.RolloutCheck,
    reasons: list[str],
    figures: Any,
    before: dict[str, str | None],
    log: Log,
) -> None:
    mark_rollout(client, model.name, model.version, status, check=check, reasons=reasons, figures=figures)
    withdraw_candidate(client, model.name, model.version)
    _verify_unchanged(client, model.name, before)
    log(f"{model.name} v{model.version} {status.value} by the {check.value} check: {'; '.join(reasons)}")


def _verify_unchanged(client: Any, model_name: str, before: dict[str, str | None]) -> None:
    now = aliases(client, model_name)
    if now != before:
        raise PromotionError(
            f"The aliases of {model_name} changed during the rollout ({before} → {now}) although the "
            "registry lock was held: something wrote them without it."
        )


def roll_back(
    target: DeploymentTarget,
    hook: MlflowHook,
    model_name: str,
    *,
    to_version: str | None,
    check: cv.RolloutCheck,
    reasons: list[str],
    figures: Any = None,
    smoke: SmokeTestConfig | None = None,
    online_spec: dict[str, Any] | None = None,
    prediction_log: PredictionLogWriterConfig | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Serve ``to_version`` again in one step and make the registry name it, under the lock.

    Traffic: the kept former backend when it still runs (one proxy switch), else a fresh backend of
    that version (smoke test, no canary). Registry: when ``champion`` named the replaced version it
    moves to ``to_version`` and ``previous`` is removed (the next rollback needs a new one); when it
    already names ``to_version`` (a release that never committed) the aliases stay as they are.
    The replaced version is tagged ``rolled_back`` with ``check`` and ``reasons``.

    :raises PromotionError: there is no version to roll back to.
    """
    client = hook.get_client()
    if not to_version:
        raise PromotionError(f"{model_name} has no version to roll back to (no {cv.ALIAS_PREVIOUS!r} alias).")
    with registry_lock(client, model_name):
        replaced = target.load_state().stable
        result = _serve_again(target, hook, model_name, to_version, smoke, online_spec, prediction_log, log)
        before = aliases(client, model_name)
        if replaced is not None and replaced.model_version != to_version:
            if before[cv.ALIAS_CHAMPION] == replaced.model_version:
                client.set_registered_model_alias(model_name, cv.ALIAS_CHAMPION, to_version)
                if before[cv.ALIAS_PREVIOUS] == to_version:
                    client.delete_registered_model_alias(model_name, cv.ALIAS_PREVIOUS)
            mark_rollout(
                client,
                model_name,
                replaced.model_version,
                cv.RolloutStatus.ROLLED_BACK,
                check=check,
                reasons=reasons,
                figures=figures,
            )
            withdraw_candidate(client, model_name, replaced.model_version)
            result["rolled_back_from"] = replaced.model_version
        champion = version_by_alias(client, model_name, cv.ALIAS_CHAMPION)
        if champion != to_version:
            raise PromotionError(
                f"After the rollback of {model_name}, champion is v{champion}, expected v{to_version}."
            )
    result.update(status="rolled_back", check=check.value, reasons=reasons)
    log(f"{model_name}: v{to_version} serves again ({check.value}: {'; '.join(reasons)})")
    return result


def _serve_again(
    target: DeploymentTarget,
    hook: MlflowHook,
    model_name: str,
    version: str,
    smoke: SmokeTestConfig | None,
    online_spec: dict[str, Any] | None,
    prediction_log: PredictionLogWriterConfig | None,
    log: Log,
) -> dict[str, Any]:
    with target.locked():
        state = target.load_state()
        kept: Backend | None = state.previous
        if kept is not None and kept.model_version == version and target.health(kept).ok:
            current = state.stable
            target.route(kept)
            if current is not None:
                target.stop(current)
            state.stable, state.previous = kept, current
            target.save_state(state)
            log(f"traffic switched back to the kept backend {kept.bento_tag}")
            return {
                "model_name": model_name,
                "version": version,
                "bento_tag": kept.bento_tag,
                "endpoint": target.endpoint,
                "deployed_at": kept.started_at,
                "fingerprint": None,
            }
    with hook.activate():
        model = resolve_model(hook.get_client(), model_name, version=version)
    return deploy(
        target,
        hook,
        model,
        smoke=smoke,
        canary=CanaryConfig(enabled=False),
        online_spec=online_spec,
        prediction_log=prediction_log,
        status="rolled_back",
        log=log,
    )


def manual_rollback(
    target: DeploymentTarget,
    hook: MlflowHook,
    model_name: str,
    *,
    smoke: SmokeTestConfig | None = None,
    online_spec: dict[str, Any] | None = None,
    prediction_log: PredictionLogWriterConfig | None = None,
    reason: str = "rolled back by hand",
    log: Log = print,
) -> dict[str, Any]:
    """Serve the registry's ``previous`` version again: :func:`roll_back` with the manual check."""
    client = hook.get_client()
    return roll_back(
        target,
        hook,
        model_name,
        to_version=version_by_alias(client, model_name, cv.ALIAS_PREVIOUS),
        check=cv.RolloutCheck.MANUAL,
        reasons=[reason],
        smoke=smoke,
        online_spec=online_spec,
        prediction_log=prediction_log,
        log=log,
    )
