"""Request validation of the generated BentoML service (the module ``bentoml serve`` runs)."""

from __future__ import annotations

import importlib
import json

import pytest

INPUTS = [
    {"name": "a", "type": "double", "required": True},
    {"name": "n", "type": "long", "required": True},
    {"name": "s", "type": "string", "required": True},
    {"name": "opt", "type": "double", "required": False},
]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    cfg = tmp_path_factory.mktemp("svc") / "mlpipe_service.json"
    cfg.write_text(
        json.dumps({"model_name": "m", "model_version": "1", "inputs": INPUTS, "framework": "sklearn"})
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("MLPIPE_SERVICE_CONFIG", str(cfg))
    try:
        yield importlib.import_module("airflow_mlpipe._serving.service")
    finally:
        mp.undo()


def test_valid_rows_pass_and_keep_dtypes(service):
    rows = [{"a": 1, "n": 2.0, "s": "x", "opt": None}, {"a": 1.5, "n": 3, "s": "y", "opt": 2.0}]
    service.validate_rows(rows, INPUTS, max_rows=10)
    df = service.to_frame(rows, INPUTS)
    assert list(df.columns) == ["a", "n", "s", "opt"]
    assert str(df["a"].dtype) == "float64" and str(df["n"].dtype) == "int64"


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        ([{"a": 1, "n": 1}], "lacks column(s) ['s', 'opt']"),
        ([{"a": "1", "n": 1, "s": "x", "opt": 1}], "a expects double, got str"),
        ([{"a": 1, "n": 1.5, "s": "x", "opt": 1}], "non-integral"),
        ([{"a": True, "n": 1, "s": "x", "opt": 1}], "expects double, got bool"),
        ([{"a": 1, "n": 1, "s": 3, "opt": 1}], "s expects string"),
        ([{"a": None, "n": 1, "s": "x", "opt": 1}], "a is null"),
        ([{"a": 1, "n": 1, "s": "x", "opt": 1, "zz": 0}], "unknown column(s) ['zz']"),
        ([], "empty"),
        ("nope", "must be a list"),
        ([[1, 2]], "must be an object"),
        ([{"a": 1, "n": 1, "s": "x", "opt": 1}] * 11, "at most 10"),
    ],
)
def test_bad_rows_name_the_problem(service, rows, needle):
    with pytest.raises(service.RequestError) as err:
        service.validate_rows(rows, INPUTS, max_rows=10)
    assert needle in str(err.value) + " ".join(err.value.problems)


def test_problems_are_capped(service):
    rows = [{"a": "x", "n": 1, "s": "x", "opt": 1}] * 100
    with pytest.raises(service.RequestError) as err:
        service.validate_rows(rows, INPUTS, max_rows=1000)
    assert len(err.value.problems) == service.MAX_PROBLEMS


def test_entity_rows_keep_join_keys_and_make_integral_keys_ints(service):
    schema = [{"name": "customer_id", "type": "long"}, {"name": "region", "type": "string"}]
    rows = [{"customer_id": 3.0, "region": "eu"}, {"customer_id": 4, "region": "us"}]
    service.validate_rows(rows, schema, what="entities", max_rows=10)
    out = service.entity_rows(rows, schema)
    assert out == [{"customer_id": 3, "region": "eu"}, {"customer_id": 4, "region": "us"}]
    assert all(type(r["customer_id"]) is int for r in out)
    with pytest.raises(service.RequestError, match="customer_id expects long"):
        service.validate_rows([{"customer_id": "3", "region": "eu"}], schema, what="entities", max_rows=10)


def test_frame_has_the_signature_dtypes_for_every_type(service):
    inputs = [
        {"name": "d", "type": "double"},
        {"name": "f", "type": "float"},
        {"name": "i", "type": "integer"},
        {"name": "l", "type": "long"},
        {"name": "b", "type": "boolean"},
        {"name": "s", "type": "string"},
        {"name": "t", "type": "datetime"},
        {"name": "opt_l", "type": "long", "required": False},
        {"name": "opt_s", "type": "string", "required": False},
    ]
    rows = [
        {
            "d": 1,
            "f": 0.5,
            "i": 2.0,
            "l": 2**40,
            "b": True,
            "s": "x",
            "t": "2024-01-01",
            "opt_l": None,
            "opt_s": None,
        },
        {
            "d": 1.5,
            "f": 2,
            "i": -3,
            "l": 7,
            "b": False,
            "s": "y",
            "t": "2024-01-02",
            "opt_l": 4,
            "opt_s": "z",
        },
    ]
    service.validate_rows(rows, inputs, max_rows=10)
    df = service.to_frame(rows, inputs)
    assert list(df.columns) == [c["name"] for c in inputs]
    assert {c: str(t) for c, t in df.dtypes.items()} == {
        "d": "float64", "f": "float32", "i": "int32", "l": "int64", "b": "bool", "s": "object",
        "t": "datetime64[ns]", "opt_l": "float64", "opt_s": "object",
    }  # fmt: skip
    assert df["l"].tolist() == [2**40, 7] and df["opt_l"].isna().tolist() == [True, False]
    assert df["s"].tolist() == ["x", "y"] and df["opt_s"].tolist() == [None, "z"]


@pytest.mark.parametrize("kind", ["double", "long", "integer"])
def test_single_dtype_models_get_one_block_with_the_values(service, kind):
    inputs = [{"name": n, "type": kind} for n in ("a", "b", "c")]
    rows = [{"a": 1, "b": 2.0, "c": -3}, {"a": 4, "b": 5, "c": 6}]
    df = service.to_frame(rows, inputs)
    assert set(map(str, df.dtypes)) == {service._DTYPES[kind]}
    assert df.to_dict(orient="records") == rows


def test_integers_out_of_range_are_refused(service):
    inputs = [{"name": "i", "type": "integer"}, {"name": "l", "type": "long"}]
    with pytest.raises(service.RequestError) as err:
        service.validate_rows([{"i": 2**31, "l": 2**63}], inputs, max_rows=10)
    assert "2147483648 is out of range for integer" in err.value.problems[0]
    assert "out of range for long" in err.value.problems[1]


class _FailsOnNegative:
    """A model that raises on any row with a negative ``a`` (a fault injected into one row)."""

    classes_ = [0, 1]

    def _check(self, frame):
        if (frame["a"] < 0).any():
            raise ValueError("negative a")

    def predict(self, frame):
        self._check(frame)
        return (frame["a"] > 1).astype(int).to_numpy()

    def predict_proba(self, frame):
        import numpy as np

        self._check(frame)
        p = (frame["a"] > 1).astype(float).to_numpy()
        return np.column_stack([1 - p, p])


def test_a_row_the_model_raises_on_fails_only_itself(service):
    import pandas as pd

    frame = pd.DataFrame({"a": [0.5, 2.0, -1.0, 3.0, 0.0]})
    scored = service.score_rows(_FailsOnNegative(), frame, True)
    assert [r.get("prediction") for r in scored] == [0, 1, None, 1, 0]
    assert scored[2] == {"error": "ValueError: negative a"}
    assert service.joined_scores(scored[:2]) == {
        "predictions": [0, 1],
        "classes": [0, 1],
        "probabilities": [[1.0, 0.0], [0.0, 1.0]],
        "scores": [0.0, 1.0],
    }
    with pytest.raises(service.RequestError) as err:
        service.joined_scores(scored)
    assert err.value.status == 500  # a server error: canaries and watch windows count it
    assert err.value.problems == ["rows[2]: ValueError: negative a"]


def test_batcher_link_retries_a_connection_closed_as_it_was_reused(service):
    """The first call's connection breaks (kept-alive, closed by the batcher): a second call on a
    new connection answers, and the link stays whole."""
    import asyncio

    import aiohttp

    for broke in (aiohttp.ServerDisconnectedError(), RuntimeError("Connection closed.")):
        calls = []

        async def send(broke=broke, calls=calls):
            calls.append(1)
            if len(calls) == 1:
                raise broke  # aiohttp's RuntimeError: closed while the answer's body was read
            return ["ok"]

        link = service.BatcherLink(retry_s=5)
        assert asyncio.run(link.call(send)) == ["ok"]
        assert len(calls) == 2 and not link.broken

    async def fails():
        raise RuntimeError("something else")  # not a connection: the error is the request's

    with pytest.raises(RuntimeError, match="something else"):
        asyncio.run(service.BatcherLink(retry_s=5).call(fails))


def test_batcher_link_fails_fast_while_the_batcher_process_is_down(service):
    """A batcher that died mid-call and whose replacement does not answer yet: the request gets a
    503 after ``retry_s``, not after the HTTP timeout; while one request probes, the others get
    their 503 at once; the first answer mends the link."""
    import asyncio
    import time

    import aiohttp

    async def scenario():
        replacement_ready = asyncio.Event()

        async def send():
            if not link.broken and not probing_started.is_set():
                probing_started.set()
                raise aiohttp.ServerDisconnectedError()  # the process died under the call
            await replacement_ready.wait()  # the replacement is loading the model
            return ["ok"]

        probing_started = asyncio.Event()
        link = service.BatcherLink(retry_s=0.3)
        started = time.monotonic()
        with pytest.raises(service.RequestError) as err:
            await link.call(send)
        assert err.value.status == 503 and link.broken
        assert time.monotonic() - started < 3
        probe = asyncio.create_task(link.call(send))  # waits on the replacement
        await asyncio.sleep(0)  # let the probe start (a scheduling step, not a wait on time)
        with pytest.raises(service.RequestError) as err:
            await link.call(send)  # another request meanwhile: refused at once
        assert err.value.status == 503
        replacement_ready.set()
        assert await probe == ["ok"]
        assert not link.broken
        assert await link.call(send) == ["ok"]

    asyncio.run(scenario())


def _calls_through_sessions(sock_path, connection: dict[str, float], calls: int = 240) -> list[str]:
    """``calls`` concurrent calls (4 at a time) through BentoML's client session manager, set up as
    the front's proxy to the batcher is from ``runner_connection``, against a real server on a UNIX
    socket; returns how the failed ones failed."""
    import asyncio

    from _bentoml_impl.client.proxy2 import SessionManager
    from aiohttp import web

    async def score(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(0.002)
        return web.json_response([1])

    async def run() -> list[str]:
        app = web.Application()
        app.router.add_post("/score", score)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.UnixSite(runner, str(sock_path)).start()
        sessions = SessionManager(
            f"file://{sock_path}",
            timeout=10,
            headers={},
            max_requests=int(connection["max_requests"]),
            max_age=float(connection["max_age"]),
        )
        failures: list[str] = []

        async def client() -> None:
            for _ in range(calls // 4):
                try:
                    session = await sessions.get_session()
                    async with session.post("/score", json={"rows": [1]}) as resp:
                        await resp.read()
                except Exception as exc:
                    failures.append(type(exc).__name__)

        try:
            await asyncio.gather(*(client() for _ in range(4)))
        finally:
            await sessions.close()
            await runner.cleanup()
        return failures

    return asyncio.run(run())


def test_the_front_never_recycles_its_session_to_the_batcher_under_running_calls(service, tmp_path):
    # BentoML's recycling (a new session every few calls) closes the old session under calls
    # still running on it: they fail (a call can also wait for an answer until the timeout)
    recycled = _calls_through_sessions(tmp_path / "recycled.sock", {"max_requests": 3, "max_age": 300.0})
    assert recycled, "recycling the session under running calls broke none of them"
    # the batcher's service config keeps one session for the process's lifetime: nothing breaks
    batcher = service.MlpipeModelBatcher.config["runner_connection"]
    assert batcher == service.BATCHER_CONNECTION
    assert _calls_through_sessions(tmp_path / "kept.sock", batcher) == []
