"""The SQL state store on the real PostgreSQL: its lock excludes other processes (and is released
when its holder dies), the state outlives the process that wrote it, bad connections are refused."""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_mlpipe.deploy.targets import resolve_target
from airflow_mlpipe.deploy.targets.base import Backend, DeploymentState
from airflow_mlpipe.deploy.targets.state import FileStateStore, SqlStateStore, StateStore
from airflow_mlpipe.exceptions import ConfigError
from tests.fixtures.services import fresh_database

pytestmark = pytest.mark.integration

CTX = mp.get_context("spawn")  # a fresh interpreter, like a second worker
TIMEOUT = 60.0  # generous: the machine is shared and loaded


@pytest.fixture(scope="module")
def state_url(postgres_dsn: str) -> Iterator[str]:
    with fresh_database(postgres_dsn, "mlpipe_statestore") as name:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"


class Unlocked:
    """The store without its lock: what the lock prevents."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def locked(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def load(self) -> dict[str, Any]:
        return self.store.load()

    def save(self, state: Any) -> None:
        self.store.save(state)


def _store(url: str, key: str, lock: bool = True) -> StateStore:
    store = SqlStateStore(url, key)
    return store if lock else Unlocked(store)


def _wait(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _step(url: str, key: str, lock: bool, name: str, entered: Any, release: Any) -> None:
    """One rollout step: lock, read the state, (work until released), write it back, unlock."""
    store = _store(url, key, lock)
    with store.locked():
        state = store.load()
        entered.set()
        if not release.wait(TIMEOUT):
            raise SystemExit(3)
        state["log"] = [*state.get("log", []), name]
        state["n"] = state.get("n", 0) + 1
        store.save(state)


def _waiting_for_advisory_lock(url: str) -> bool:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        waiting = conn.execute(
            sqlalchemy.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        ).scalar()
    engine.dispose()
    return bool(waiting)


@pytest.mark.parametrize("lock", [True, False], ids=["locked", "without-lock"])
def test_two_processes_never_interleave(state_url: str, lock: bool) -> None:
    key = f"contend-{lock}"
    a_in, a_go, b_in, b_go = (CTX.Event() for _ in range(4))
    a = CTX.Process(target=_step, args=(state_url, key, lock, "a", a_in, a_go))
    b = CTX.Process(target=_step, args=(state_url, key, lock, "b", b_in, b_go))
    a.start()
    try:
        assert a_in.wait(TIMEOUT), "process a never entered its step"
        b.start()
        b_go.set()  # b would finish its step at once if it got in
        if lock:
            # b is blocked on the server (observable in pg_locks), not merely slow
            _wait(lambda: _waiting_for_advisory_lock(state_url), "b to wait for the lock")
            assert not b_in.is_set(), "b entered its step while a held the lock"
            a_go.set()
            _wait(lambda: b_in.is_set(), "b to enter after a released")
        else:
            # Without the lock b enters, reads, writes and leaves while a is in the middle of its step.
            _wait(lambda: b_in.is_set(), "b to enter")
            b.join(TIMEOUT)
            assert b.exitcode == 0
            a_go.set()
        a.join(TIMEOUT)
        b.join(TIMEOUT)
        assert (a.exitcode, b.exitcode) == (0, 0)
    finally:
        for proc in (a, b):
            if proc.is_alive():
                proc.kill()
    state = SqlStateStore(state_url, key).load()
    if lock:
        assert state == {"log": ["a", "b"], "n": 2}
    else:
        assert state == {"log": ["a"], "n": 1}  # a read before b wrote, then overwrote b: a lost update


def _increments(url: str, key: str, lock: bool, count: int, start: Any) -> None:
    store = _store(url, key, lock)
    start.wait(TIMEOUT)
    for _ in range(count):
        with store.locked():
            state = store.load()
            state["n"] = state.get("n", 0) + 1
            store.save(state)


def test_concurrent_read_modify_write_loses_nothing(state_url: str) -> None:
    count = 40
    start = CTX.Event()
    procs = [
        CTX.Process(target=_increments, args=(state_url, "counter", True, count, start)) for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(TIMEOUT * 2)
        assert proc.exitcode == 0
    assert SqlStateStore(state_url, "counter").load()["n"] == 2 * count


def _hold(url: str, key: str, entered: Any) -> None:
    with SqlStateStore(url, key).locked():
        entered.set()
        time.sleep(TIMEOUT * 5)  # killed by the test long before


def test_lock_released_when_its_holder_dies(state_url: str) -> None:
    entered = CTX.Event()
    holder = CTX.Process(target=_hold, args=(state_url, "dies", entered))
    holder.start()
    try:
        assert entered.wait(TIMEOUT)
        os.kill(holder.pid or 0, signal.SIGKILL)
        holder.join(TIMEOUT)
        got = CTX.Event()
        taker = CTX.Process(target=_hold, args=(state_url, "dies", got))
        taker.start()
        assert got.wait(TIMEOUT), "the lock of a killed process was never released"
        taker.kill()
        taker.join(TIMEOUT)
    finally:
        if holder.is_alive():
            holder.kill()


def test_locks_of_different_deployments_are_independent(state_url: str) -> None:
    with SqlStateStore(state_url, "one").locked(), SqlStateStore(state_url, "two").locked():
        pass  # would block forever if both keys shared one lock


def _write_state(url: str, key: str) -> None:
    stable = Backend(server="b_v1", bento_tag="m:v1", model_name="m", model_version="1", url="http://x")
    SqlStateStore(url, key).save(DeploymentState(stable=stable).as_dict())


def test_state_survives_the_process_that_wrote_it(state_url: str) -> None:
    writer = CTX.Process(target=_write_state, args=(state_url, "survives"))
    writer.start()
    writer.join(TIMEOUT)
    assert writer.exitcode == 0
    state = DeploymentState.from_dict(SqlStateStore(state_url, "survives").load())
    assert state.stable is not None and state.stable.bento_tag == "m:v1"
    assert SqlStateStore(state_url, "someone-else").load() == {}


@pytest.fixture
def state_conn(state_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    conn_id = "mlpipe_state_test"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", state_url)
    return conn_id


def test_target_option_chooses_the_sql_store(state_conn: str, state_url: str, tmp_path: Any) -> None:
    spec = {"kind": "local", "state_dir": str(tmp_path), "state_conn_id": state_conn, "state_table": "t_x"}
    target = resolve_target(spec, deployment_name="churn")
    assert isinstance(target.store, SqlStateStore) and target.store.table == "t_x"
    with target.locked():
        target.save_state(DeploymentState(canary_share=0.25))
    assert not (tmp_path / "state.json").exists()
    assert SqlStateStore(state_url, "churn", table="t_x").load()["canary_share"] == 0.25
    default = resolve_target({"kind": "local", "state_dir": str(tmp_path)}, deployment_name="churn")
    assert isinstance(default.store, FileStateStore)


class StatelessTarget:
    """A target whose factory takes no state store."""

    def __init__(self, deployment_name: str) -> None:
        self.deployment_name = deployment_name


def test_a_factory_without_a_state_store_says_so(state_conn: str) -> None:
    spec = {"kind": f"{__name__}:StatelessTarget", "state_conn_id": state_conn}
    with pytest.raises(ConfigError, match="does not take a state store"):
        resolve_target(spec, deployment_name="churn")
    assert isinstance(resolve_target({"kind": spec["kind"]}, deployment_name="churn"), StatelessTarget)


def test_missing_connection_is_a_config_error(tmp_path: Any) -> None:
    spec = {"kind": "local", "state_dir": str(tmp_path), "state_conn_id": "mlpipe_state_missing"}
    with pytest.raises(ConfigError, match="'mlpipe_state_missing' does not exist"):
        resolve_target(spec, deployment_name="churn")


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("postgresql://postgres@127.0.0.1:5432/mlpipe_no_such_db", "cannot be reached.*Check the connection"),
        ("postgresql://postgres@127.0.0.1:1/test", "cannot be reached"),
        ("sqlite:////tmp/mlpipe-state.db", "cannot be used as a database"),
        ("mysql://root@127.0.0.1:1/x", "cannot be used as a database|needs PostgreSQL"),
    ],
    ids=["no-database", "no-server", "no-database-hook", "not-postgres"],
)
def test_bad_connection_is_a_config_error(uri: str, match: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLPIPE_STATE_BAD", uri)
    with pytest.raises(ConfigError, match=match):
        SqlStateStore.from_connection("mlpipe_state_bad", "churn")


def test_other_databases_are_refused() -> None:
    with pytest.raises(ConfigError, match="needs PostgreSQL"):
        SqlStateStore("sqlite:////tmp/mlpipe-state.db", "churn")


def test_bad_table_name_is_a_config_error(state_url: str) -> None:
    with pytest.raises(ConfigError, match="state_table"):
        SqlStateStore(state_url, "churn", table="x; DROP TABLE y")


def test_file_store_keeps_todays_layout(tmp_path: Any) -> None:
    store = FileStateStore(tmp_path)
    with store.locked():
        store.save({"canary_share": 0.5})
    assert json.loads((tmp_path / "state.json").read_text()) == {"canary_share": 0.5}
    assert FileStateStore(tmp_path).load() == {"canary_share": 0.5}


class _Reached(Exception):
    """Injected fault: the hand-over got past its lock and tried to start a scorer."""


def test_stream_handover_takes_the_stream_lock(
    state_url: str, redis_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import uuid

    from airflow_mlpipe.config.deploy import CanaryConfig
    from airflow_mlpipe.config.streaming import StreamConfig
    from airflow_mlpipe.streaming.rollout import StreamDeployment, deploy_stream

    prefix = f"mlpipe-ss-{uuid.uuid4().hex[:8]}"
    key = f"stream:{prefix}.in"
    config = StreamConfig(redis_url, f"{prefix}.in", f"{prefix}.out")
    deployment = StreamDeployment(tmp_path, config, store=SqlStateStore(state_url, key))
    reached: list[float] = []

    def start(*args: Any, **kwargs: Any) -> Any:
        reached.append(time.monotonic())
        raise _Reached

    monkeypatch.setattr(deployment, "start", start)
    entered, release = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=_step, args=(state_url, key, True, "holder", entered, release))
    holder.start()
    errors: list[BaseException] = []

    def handover() -> None:
        try:
            deploy_stream(deployment, "m:v1", model_name="m", model_version="1", canary=CanaryConfig())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=handover, daemon=True)
    try:
        assert entered.wait(TIMEOUT)
        thread.start()
        _wait(lambda: _waiting_for_advisory_lock(state_url), "the hand-over to wait for the stream's lock")
        assert not reached, "the hand-over started a scorer while another step held the lock"
        release.set()
        thread.join(TIMEOUT)
        assert len(reached) == 1 and isinstance(errors[0], _Reached), errors
    finally:
        release.set()
        holder.join(TIMEOUT)
    assert not (tmp_path / "state.json").exists()  # the state is the store's, not a file
    assert SqlStateStore(state_url, key).load()["log"] == ["holder"]
