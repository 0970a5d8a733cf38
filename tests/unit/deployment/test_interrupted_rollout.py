"""A rollout killed after it started a backend leaves it recorded; the next rollout stops it.

The real kill (a deploy task killed by ``SIGKILL`` during the traffic switch and retried by Airflow)
runs in ``tests/integration/faults/test_fault_injection.py``; this is the bookkeeping in isolation,
on an in-memory target that records what the rollout asked of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from airflow_mlpipe.deploy.rollout import _drop_orphaned_canary
from airflow_mlpipe.deploy.targets.base import Backend, DeploymentState, Health


def _backend(version: str, pid: int) -> Backend:
    return Backend(f"b_v{version}", f"m:v{version}", "m", version, f"http://127.0.0.1:{pid}", pid, pid)


class MemoryTarget:
    endpoint = "http://127.0.0.1:1"

    def __init__(self, state: DeploymentState) -> None:
        self.state, self.routes, self.stopped = state, [], []

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        yield

    def load_state(self) -> DeploymentState:
        return DeploymentState.from_dict(self.state.as_dict())

    def save_state(self, state: DeploymentState) -> None:
        self.state = DeploymentState.from_dict(state.as_dict())

    def route(self, stable: Backend, canary: Backend | None = None, share: float = 0.0) -> None:
        self.routes.append(stable.model_version)

    def stop(self, backend: Backend) -> None:
        self.stopped.append(backend.model_version)

    def health(self, backend: Backend) -> Health:
        return Health(alive=True, ready=True)

    def proxy_running(self) -> bool:
        return True


def test_a_candidate_left_by_a_killed_switch_is_stopped_and_traffic_returns_to_stable():
    target = MemoryTarget(DeploymentState(stable=_backend("1", 101), candidate=_backend("2", 102)))
    state = _drop_orphaned_canary(target, log=lambda _: None)
    assert target.routes == ["1"] and target.stopped == ["2"]
    assert state.candidate is None and target.state.candidate is None
    assert target.state.stable.model_version == "1"


def test_a_canary_is_stopped_once_although_it_is_also_the_candidate():
    canary = _backend("2", 102)
    target = MemoryTarget(DeploymentState(stable=_backend("1", 101), canary=canary, candidate=canary))
    _drop_orphaned_canary(target, log=lambda _: None)
    assert target.stopped == ["2"] and target.state.canary is None and target.state.candidate is None


def test_nothing_left_behind_changes_nothing():
    target = MemoryTarget(DeploymentState(stable=_backend("1", 101)))
    _drop_orphaned_canary(target, log=lambda _: None)
    assert target.routes == [] and target.stopped == []


def test_a_state_written_before_candidates_were_recorded_still_loads():
    old = {"stable": _backend("1", 101).as_dict(), "canary": None, "previous": None, "canary_share": 0.0}
    state = DeploymentState.from_dict(old)
    assert state.candidate is None and state.stable.model_version == "1"
    assert DeploymentState.from_dict(state.as_dict()) == state


def test_a_container_candidate_without_a_pid_is_stopped_too():
    """Container backends have no pid (``None`` for stable and candidate alike): the port tells
    them apart, so the orphaned candidate is not taken for the stable one and left running."""

    def container(version: str, port: int) -> Backend:
        return Backend(f"b_v{version}", f"m:v{version}", "m", version, f"http://127.0.0.1:{port}", port)

    target = MemoryTarget(DeploymentState(stable=container("1", 4001), candidate=container("2", 4002)))
    _drop_orphaned_canary(target, log=lambda _: None)
    assert target.routes == ["1"] and target.stopped == ["2"]
    assert target.state.candidate is None
