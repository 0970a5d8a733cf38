"""The deployment-target interface the rollout logic drives.

A target runs bentos as *backends* and routes the stable endpoint's traffic between at most two of
them (stable and canary). The rollout (:mod:`airflow_mlpipe.deploy.rollout`) only talks to this
protocol, so another target (docker compose, Kubernetes) plugs in without touching it.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from airflow_mlpipe.exceptions import MlpipeError


class BackendStartError(MlpipeError):
    """A bento did not become ready (it failed to load, crashed or timed out)."""


@dataclass
class Backend:
    """One running version of a model behind the proxy."""

    server: str  # proxy server name, unique per bento tag
    bento_tag: str
    model_name: str
    model_version: str
    url: str  # direct URL of the backend (not the stable endpoint)
    port: int = 0
    pid: int | None = None
    log: str | None = None
    started_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Backend | None:
        return None if not data else cls(**data)


@dataclass
class Health:
    """What a health check found: process alive, ``/livez`` and ``/readyz`` answering."""

    alive: bool
    ready: bool
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.alive and self.ready


@dataclass
class DeploymentState:
    """What serves right now: the stable backend, an optional canary, and the one before stable."""

    stable: Backend | None = None
    canary: Backend | None = None
    # the stable before this one: still running without traffic during the watch window, else a record
    previous: Backend | None = None
    canary_share: float = 0.0
    # the backend a rollout in progress started and has not made stable yet: recorded before it gets
    # any traffic, so a rollout killed at any later point (canary, switch) leaves no unknown process
    candidate: Backend | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "stable": self.stable.as_dict() if self.stable else None,
            "canary": self.canary.as_dict() if self.canary else None,
            "previous": self.previous.as_dict() if self.previous else None,
            "canary_share": self.canary_share,
            "candidate": self.candidate.as_dict() if self.candidate else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentState:
        return cls(
            stable=Backend.from_dict(data.get("stable")),
            canary=Backend.from_dict(data.get("canary")),
            previous=Backend.from_dict(data.get("previous")),
            canary_share=float(data.get("canary_share") or 0.0),
            candidate=Backend.from_dict(data.get("candidate")),
        )


@runtime_checkable
class DeploymentTarget(Protocol):
    """Where bentos are served and how the stable endpoint routes to them."""

    @property
    def endpoint(self) -> str:
        """The stable URL clients use (``POST <endpoint>/predict``)."""
        ...

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive access for one rollout step (two deploys of one deployment never interleave)."""
        ...

    def load_state(self) -> DeploymentState: ...

    def save_state(self, state: DeploymentState) -> None: ...

    def start(
        self, bento_tag: str, *, model_name: str, model_version: str, port: int | None = None
    ) -> Backend:
        """Start serving ``bento_tag``; return once it is ready or raise with the reason (log tail)."""
        ...

    def stop(self, backend: Backend) -> None:
        """Stop a backend that no longer receives traffic."""
        ...

    def health(self, backend: Backend) -> Health: ...

    def route(self, stable: Backend, canary: Backend | None = None, share: float = 0.0) -> None:
        """Send ``share`` of the traffic to ``canary`` and the rest to ``stable``; graceful, waits
        until requests in flight on servers that lost their traffic have finished."""
        ...

    def traffic(self) -> dict[str, dict[str, Any]]:
        """Per-backend counters of the proxy (``requests``, ``http_5xx``, ``connection_errors`` …)."""
        ...

    def proxy_running(self) -> bool: ...
