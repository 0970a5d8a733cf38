"""Promotion: move ``champion`` to a blessed version and keep the former one as ``previous``.

MLflow has no compare-and-set for aliases and Airflow tasks have no database of their own, so two
runs promoting at once (different DAGs, where an Airflow pool cannot serialise them) would
interleave their ``previous``/``champion`` writes. Promotion therefore runs under a lock that lives
in the registry itself: creating a registered model is atomic in every MLflow backend (unique name
constraint — the second creator gets ``RESOURCE_ALREADY_EXISTS``), so the lock is a registered model
named :func:`lock_name` that the holder creates and deletes. A lock carries its owner
(``host:pid:nonce``) and an expiry time; a lock older than its TTL, or whose holder process on this
host is gone (a killed task), is broken. After writing, aliases are read back
and verified, so a writer bypassing the lock is detected instead of silently accepted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from airflow_mlpipe.core import conventions as cv
from airflow_mlpipe.core.conventions import (
    ALIAS_CHAMPION,
    ALIAS_PREVIOUS,
    TAG_BLESSED,
    TAG_LOCK_EXPIRES,
    TAG_LOCK_OWNER,
    TAG_PROMOTED_AT,
    TAG_PROMOTED_FROM,
)
from airflow_mlpipe.core.registry import get_version, set_tags, version_by_alias
from airflow_mlpipe.exceptions import MlpipeError


class PromotionError(MlpipeError):
    """Promotion could not be done safely (lock not acquired, aliases changed under us, not blessed)."""


def lock_name(model_name: str) -> str:
    return f"{model_name}.mlpipe-promotion-lock"


_held = threading.local()  # lock names this thread holds: nested registry_lock blocks re-enter


def _code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", ""))


@contextlib.contextmanager
def registry_lock(
    client: Any, model_name: str, *, ttl: float = 300.0, timeout: float = 120.0, owner: str | None = None
) -> Iterator[str]:
    """Hold the promotion lock of ``model_name`` for the block; yield the owner id.

    :param ttl: seconds after which a lock is considered abandoned and may be broken.
    :param timeout: seconds to wait for the lock before raising :class:`PromotionError`.
    """
    from mlflow.exceptions import MlflowException

    name = lock_name(model_name)
    held: dict[str, str] = _held.__dict__.setdefault("names", {})
    if name in held:
        yield held[name]
        return
    owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        try:
            client.create_registered_model(
                name,
                tags={TAG_LOCK_OWNER: owner, TAG_LOCK_EXPIRES: f"{time.time() + ttl:.3f}"},
                description=f"Promotion lock of {model_name!r}; deleted when the promotion ends.",
            )
            break
        except MlflowException as exc:
            # The store answers a name clash by looking the existing model up; when its holder
            # deletes it at that moment the answer is RESOURCE_DOES_NOT_EXIST: contention as well.
            if _code(exc) not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                raise
        _break_if_stale(client, name)
        if time.monotonic() > deadline:
            raise PromotionError(
                f"Could not acquire the promotion lock {name!r} within {timeout:.0f}s; another promotion "
                f"holds it. If no promotion is running, delete that registered model."
            )
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.5)
    held[name] = owner
    try:
        yield owner
    finally:
        del held[name]
        _release(client, name, owner)


def _lock_tags(client: Any, name: str) -> dict[str, str] | None:
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_registered_model(name).tags or {})
    except MlflowException as exc:
        if _code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _delete_lock(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.delete_registered_model(name)
    except MlflowException as exc:
        if _code(exc) != "RESOURCE_DOES_NOT_EXIST":
            raise


def _break_if_stale(client: Any, name: str) -> None:
    tags = _lock_tags(client, name)
    if tags is None:
        return
    try:
        expires = float(tags.get(TAG_LOCK_EXPIRES, "0"))
    except ValueError:
        expires = 0.0
    if time.time() > expires or _holder_died(tags.get(TAG_LOCK_OWNER, "")):
        # Re-read just before deleting so that a lock taken over in the meantime survives.
        again = _lock_tags(client, name)
        if again is not None and again.get(TAG_LOCK_OWNER) == tags.get(TAG_LOCK_OWNER):
            _delete_lock(client, name)


def _holder_died(owner: str) -> bool:
    """The holder ran on this host and its process is gone (an Airflow task killed mid-rollout):
    its retry must not wait out the TTL."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _release(client: Any, name: str, owner: str) -> None:
    tags = _lock_tags(client, name)
    if tags is not None and tags.get(TAG_LOCK_OWNER) == owner:
        _delete_lock(client, name)


@dataclasses.dataclass
class PromotionResult:
    model_name: str
    version: str
    previous_version: str | None
    status: str  # "promoted" | "noop"
    promoted_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "version": self.version,
            "champion_version": self.version,
            "previous_version": self.previous_version,
            "status": self.status,
            "promoted_at": self.promoted_at,
        }


def promote(
    client: Any,
    model_name: str,
    version: str,
    *,
    require_blessed: bool = True,
    champion_alias: str = ALIAS_CHAMPION,
    previous_alias: str = ALIAS_PREVIOUS,
    lock_ttl: float = 300.0,
    lock_timeout: float = 120.0,
) -> PromotionResult:
    """Point ``champion_alias`` at ``version`` and ``previous_alias`` at the former champion.

    Idempotent: promoting the current champion again changes nothing (``status="noop"``). The
    champion alias is written last, so a crash in between leaves the old champion serving.

    :raises PromotionError: the version is not blessed (with ``require_blessed``), the lock could
        not be acquired, or the aliases read back differ from what was written.
    """
    version = str(version)
    _check_blessed(client, model_name, version, require_blessed)
    with registry_lock(client, model_name, ttl=lock_ttl, timeout=lock_timeout):
        now = dt.datetime.now(dt.UTC).isoformat()
        current = version_by_alias(client, model_name, champion_alias)
        if current == version:
            return PromotionResult(
                model_name, version, version_by_alias(client, model_name, previous_alias), "noop", now
            )
        if current is not None:
            client.set_registered_model_alias(model_name, previous_alias, current)
        client.set_registered_model_alias(model_name, champion_alias, version)
        champion_now = version_by_alias(client, model_name, champion_alias)
        previous_now = version_by_alias(client, model_name, previous_alias)
        if champion_now != version or (current is not None and previous_now != current):
            raise PromotionError(
                f"Aliases of {model_name} changed during promotion (champion={champion_now}, "
                f"previous={previous_now}; expected {version}/{current}): something wrote them without the lock."
            )
        set_tags(
            client,
            model_name,
            version,
            {TAG_PROMOTED_AT: now} | ({TAG_PROMOTED_FROM: current} if current else {}),
        )
        withdraw_candidate(client, model_name, version)
        return PromotionResult(model_name, version, current, "promoted", now)


def nominate(client: Any, model_name: str, version: str, *, require_blessed: bool = True) -> dict[str, Any]:
    """Make a blessed version the ``candidate``: it becomes champion only once it serves.

    :raises PromotionError: the version is not blessed (with ``require_blessed``).
    """
    version = str(version)
    _check_blessed(client, model_name, version, require_blessed)
    with registry_lock(client, model_name):
        client.set_registered_model_alias(model_name, cv.ALIAS_CANDIDATE, version)
        if version_by_alias(client, model_name, cv.ALIAS_CANDIDATE) != version:
            raise PromotionError(f"The {cv.ALIAS_CANDIDATE!r} alias of {model_name} did not stick.")
        mark_rollout(client, model_name, version, cv.RolloutStatus.CANDIDATE)
    return {
        "model_name": model_name,
        "version": version,
        "candidate_version": version,
        "champion_version": version_by_alias(client, model_name, ALIAS_CHAMPION),
        "status": "nominated",
        "nominated_at": dt.datetime.now(dt.UTC).isoformat(),
    }


def withdraw_candidate(client: Any, model_name: str, version: str) -> None:
    """Remove the ``candidate`` alias when it still names ``version`` (a newer nomination stays)."""
    if version_by_alias(client, model_name, cv.ALIAS_CANDIDATE) == str(version):
        client.delete_registered_model_alias(model_name, cv.ALIAS_CANDIDATE)


def mark_rollout(
    client: Any,
    model_name: str,
    version: str,
    status: cv.RolloutStatus,
    *,
    check: cv.RolloutCheck | None = None,
    reasons: list[str] | None = None,
    figures: Mapping[str, Any] | None = None,
) -> None:
    """The one writer of the ``mlpipe.rollout.*`` tags of a model version."""
    tags = {cv.TAG_ROLLOUT_STATUS: status.value, cv.TAG_ROLLOUT_AT: dt.datetime.now(dt.UTC).isoformat()}
    if check is not None:
        tags[cv.TAG_ROLLOUT_CHECK] = check.value
        tags[cv.TAG_ROLLOUT_REASON] = "; ".join(reasons or [])[:4000]
        tags[cv.TAG_ROLLOUT_FIGURES] = json.dumps(figures or {}, default=str, sort_keys=True)[:4000]
    set_tags(client, model_name, version, tags)


def _check_blessed(client: Any, model_name: str, version: str, require_blessed: bool) -> None:
    mv = get_version(client, model_name, version=version)
    if require_blessed and (mv.tags or {}).get(TAG_BLESSED) != "true":
        raise PromotionError(
            f"{model_name} v{version} is not blessed by the evaluation gate "
            f"({TAG_BLESSED}={(mv.tags or {}).get(TAG_BLESSED)!r}); run the gate first or set require_blessed=False."
        )
