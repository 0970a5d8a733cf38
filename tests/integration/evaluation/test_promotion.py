"""Promotion against a real mlflow server: idempotence, blessing required, concurrent promoters."""

from __future__ import annotations

import contextlib
import threading

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from airflow_mlpipe.core.conventions import TAG_BLESSED
from airflow_mlpipe.core.registry import version_by_alias
from airflow_mlpipe.evaluation.promotion import PromotionError, lock_name, promote, registry_lock

pytestmark = pytest.mark.integration


@pytest.fixture
def client(mlflow_server):
    return MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)


def _bless(client, reg, *roles):
    for role in roles:
        client.set_model_version_tag(reg.name, reg.versions[role], TAG_BLESSED, "true")


def test_promote_is_idempotent_and_requires_blessing(client, registered):
    reg = registered("binary", challenger="strong", champion=None)
    v_strong = reg.versions["strong"]
    with pytest.raises(PromotionError, match="not blessed"):
        promote(client, reg.name, v_strong)
    assert version_by_alias(client, reg.name, "champion") is None
    _bless(client, reg, "strong")
    first = promote(client, reg.name, v_strong)
    assert (first.status, first.previous_version) == ("promoted", None)
    again = promote(client, reg.name, v_strong)
    assert again.status == "noop"
    assert version_by_alias(client, reg.name, "champion") == v_strong
    assert version_by_alias(client, reg.name, "previous") is None
    with pytest.raises(MlflowException, match="not found|RESOURCE_DOES_NOT_EXIST"):  # the lock is gone
        client.get_registered_model(lock_name(reg.name))


@contextlib.contextmanager
def _held_elsewhere(client, name: str, *, ttl: float, owner: str):
    """Hold the registry lock from another thread (the lock is re-entrant within one thread)."""
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with registry_lock(client, name, ttl=ttl, owner=owner):
            held.set()
            release.wait(120)

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    try:
        assert held.wait(120), "the other holder never got the lock"
        yield
    finally:
        release.set()
        thread.join(120)


def test_stale_lock_is_broken_and_held_lock_times_out(client, registered):
    reg = registered("regression", champion=None)
    with _held_elsewhere(client, reg.name, ttl=0.0, owner="crashed"):
        # a holder that "crashed" (expired TTL) does not block the next promotion
        with registry_lock(client, reg.name, ttl=60, timeout=10, owner="next") as owner:
            assert owner == "next"
    with _held_elsewhere(client, reg.name, ttl=60, owner="holder"):
        with pytest.raises(PromotionError, match="Could not acquire"):
            with registry_lock(client, reg.name, ttl=60, timeout=0.5):
                pass


def test_concurrent_promotions_keep_one_champion_and_a_consistent_previous(client, registered, mlflow_server):
    """Two promoters race on different versions, many rounds; the aliases always form a chain."""
    reg = registered("binary", challenger="strong", champion="weak", noproba=True)
    _bless(client, reg, "strong", "noproba")
    v1, v2 = reg.versions["strong"], reg.versions["noproba"]
    history: list[tuple[float, str, str | None, str]] = []  # (time, version, replaced, status)
    errors: list[BaseException] = []
    lock = threading.Lock()
    rounds = 8

    def promoter(version: str) -> None:
        own = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
        try:
            for _ in range(rounds):
                r = promote(own, reg.name, version, lock_timeout=60)
                with lock:
                    history.append((r.promoted_at, version, r.previous_version, r.status))
        except BaseException as exc:
            errors.append(exc)

    for _ in range(2):  # two races, each checked for the invariants at the end
        history.clear()
        before = version_by_alias(client, reg.name, "champion")
        threads = [threading.Thread(target=promoter, args=(v,)) for v in (v1, v2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors
        champion = version_by_alias(client, reg.name, "champion")
        previous = version_by_alias(client, reg.name, "previous")
        assert champion in {v1, v2}
        assert previous != champion
        # promotions happened one at a time: each one replaced the champion of the one before it
        chain = sorted((h for h in history if h[3] == "promoted"), key=lambda h: h[0])
        expected_prev = before
        for _, version, replaced, _ in chain:
            assert replaced == expected_prev
            assert version != replaced
            expected_prev = version
        assert chain, "at least one real promotion"
        assert chain[-1][1] == champion
        assert chain[-1][2] == previous


class _Spy:
    """An MlflowClient that reports calls: ``after(name, args, ok)`` runs after each call, and
    ``before(name, args)`` before it (to hold one promoter at a chosen point)."""

    def __init__(self, inner, before=None, after=None):
        self._inner, self._before, self._after = inner, before, after

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self._before:
                self._before(name, args)
            ok = False
            try:
                result = attr(*args, **kwargs)
                ok = True
                return result
            finally:
                if self._after:
                    self._after(name, args, ok)

        return call


def _interleaved_promotions(mlflow_server, reg, v_a, v_b):
    """Promoter A reads the champion, then waits until B has either read it too (no lock) or
    found the lock taken; only then does A write. Returns both results (or errors)."""
    a_read, b_progress = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def a_after(name, args, ok):
        if name == "get_model_version_by_alias" and args[1] == "champion":
            a_read.set()

    def a_before(name, args):
        if name == "set_registered_model_alias" and not b_progress.is_set():
            assert b_progress.wait(120), "promoter B made no progress"

    def b_after(name, args, ok):
        if (name == "get_model_version_by_alias" and args[1] == "champion") or (
            name == "create_registered_model" and not ok
        ):
            b_progress.set()

    def run(key, client, version):
        try:
            results[key] = promote(client, reg.name, version, lock_timeout=120)
        except BaseException as exc:
            results[key] = exc

    new = lambda: MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)  # noqa: E731
    a = threading.Thread(target=run, args=("a", _Spy(new(), a_before, a_after), v_a))
    b = threading.Thread(target=run, args=("b", _Spy(new(), after=b_after), v_b))
    a.start()
    assert a_read.wait(120)
    b.start()
    a.join(300)
    b.join(300)
    return results


def _lost_update(client, reg, before, results) -> list[str]:
    """What went wrong: errors, or a ``previous`` that skips a champion that really was one."""
    problems = [f"{k}: {r}" for k, r in results.items() if isinstance(r, BaseException)]
    done = sorted(
        (r for r in results.values() if not isinstance(r, BaseException)), key=lambda r: r.promoted_at
    )
    expected = before
    for r in done:
        if r.previous_version != expected:
            problems.append(f"v{r.version} replaced v{r.previous_version}, but v{expected} was champion")
        expected = r.version
    if version_by_alias(client, reg.name, "previous") != (done[-2].version if len(done) == 2 else before):
        problems.append("previous does not name the champion before the last promotion")
    return problems


def test_interleaved_promotions_need_the_lock(client, registered, mlflow_server, monkeypatch):
    """The same interleaving with and without the lock: only the lock keeps the alias chain."""
    import contextlib

    from airflow_mlpipe.evaluation import promotion

    reg = registered("binary", challenger="strong", champion="weak", noproba=True)
    _bless(client, reg, "strong", "noproba")
    v_a, v_b = reg.versions["strong"], reg.versions["noproba"]

    before = version_by_alias(client, reg.name, "champion")
    assert _lost_update(client, reg, before, _interleaved_promotions(mlflow_server, reg, v_a, v_b)) == []

    client.set_registered_model_alias(reg.name, "champion", before)
    client.delete_registered_model_alias(reg.name, "previous")
    monkeypatch.setattr(promotion, "registry_lock", lambda *a, **k: contextlib.nullcontext("no-lock"))
    problems = _lost_update(client, reg, before, _interleaved_promotions(mlflow_server, reg, v_a, v_b))
    assert problems, "without the lock the interleaving must lose an update"
