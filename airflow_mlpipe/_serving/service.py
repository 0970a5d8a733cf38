"""The BentoML service that serves one registry model; copied into every bento the provider builds.

It runs only under ``bentoml serve`` (never imported by a DAG file) and depends on nothing but
BentoML, pandas and the model's framework, so a bento runs without the provider installed unless an
online-feature spec is configured. Its configuration is ``mlpipe_service.json`` next to this file
(written at build time): model identity, the request schema taken from the model signature, the
optional Feast online spec and the batching settings.

With batching on (the default), ``MlpipeModelService`` validates each request, then hands its rows to ``MlpipeModelBatcher``, a second service holding the model, whose
``@bentoml.api(batchable=True)`` method gets the rows of concurrent requests in one call (BentoML's
adaptive dispatcher). A bad request is refused before it reaches a batch; a row the model itself
cannot score fails only the request it came from. With batching off, the receiving process loads the
model and scores each request alone.

With a prediction log configured (``prediction_log`` in the configuration), every row scored is
logged by :class:`~airflow_mlpipe._serving.request_log.RequestLog` (``mlpipe_request_log``), off the
request's path.

API (see ``docs/stages/deployment.md``)::

    POST /predict  {"rows": [{col: value, ...}, ...]}      -> {"predictions": [...], "model_version": ...}
                                                               classifiers with predict_proba also
                                                               return "classes", "probabilities"
                                                               (per row, ordered as "classes") and,
                                                               binary only, "scores" (P(classes[1]))
    POST /predict  {"entities": [{key: value, ...}, ...]}   (when an online spec is configured)
    POST /predict  {"rows": [{col: value, ..., key: ..., ts: ...}]}  with a prediction log: its key
                                                               and timestamp fields beside the features
    POST /predict  {..., "return_features": true}           -> also {"features": [{col: value}, ...]},
                                                               the feature values the model was given
                   valid rows the model raises on           -> 500 naming those rows
                   the model's process died (restarting)    -> 503, at once: retry elsewhere
    GET  /info     model name, version, fingerprint, bento tag, request schema
    GET  /docs.json  the OpenAPI document: the request schema of the model signature
    GET  /readyz, /livez, /metrics                          (BentoML)

Every 4xx answer, and the 500 naming rows the model raised on, has one shape: ``{"error",
"problems", "model_name", "model_version", "fingerprint"}``, whoever refused the request (this service, or BentoML's request parser): a
malformed request never reaches the model. So does an entity the online store has no features for
(unknown key, or never materialized), a missing join key or a key of the wrong type.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp  # BentoML's client between services
import bentoml
from pydantic import ConfigDict, StrictBool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

try:  # inside a bento the schema module sits next to this file
    import mlpipe_schema as _schema  # type: ignore[import-not-found]
except ImportError:  # imported from the provider package
    from airflow_mlpipe.deploy import schema as _schema
try:  # in a bento: copied beside this file
    from mlpipe_scores import score_rows, scores_of
except ImportError:  # imported from the installed provider
    from airflow_mlpipe.core.class_scores import score_rows, scores_of
try:  # in a bento: copied beside this file
    from mlpipe_request_log import RequestLog  # type: ignore[import-not-found]
except ImportError:  # imported from the installed provider
    from airflow_mlpipe._serving.request_log import RequestLog

RequestError = _schema.RequestError
validate_rows = _schema.validate_rows
MAX_PROBLEMS = _schema.MAX_PROBLEMS
INT_TYPES, FLOAT_TYPES = _schema.INT_TYPES, _schema.FLOAT_TYPES

CONFIG_FILE = "mlpipe_service.json"
#: where the OpenAPI document is served (BentoML's own path; its generic spec is replaced)
SPEC_PATHS = ("/docs.json", "/openapi.json")


def load_config() -> dict[str, Any]:
    path = Path(os.environ.get("MLPIPE_SERVICE_CONFIG") or Path(__file__).with_name(CONFIG_FILE))
    return dict(json.loads(path.read_text()))


def to_frame(rows: list[dict[str, Any]], inputs: list[dict[str, Any]]) -> Any:
    """A DataFrame with the model's columns, in signature order and with its dtypes, from rows
    :func:`validate_rows` accepted.

    Each column becomes a numpy array of its signature dtype directly, and a model whose columns
    share one dtype (the usual all-double signature) gets a single 2-D block: pandas' record
    constructors infer types and consolidate blocks, which cost more than the model's ``predict``
    for a one-row request. An optional column holding a null becomes float64 with NaN (numbers)
    or object (others), as pandas would infer it.
    """
    import numpy as np
    import pandas as pd

    names = [c["name"] for c in inputs]
    dtypes = [_column_dtype(c, rows) for c in inputs]
    if len(set(dtypes)) == 1 and dtypes[0] not in ("object", "datetime"):
        block = np.array([[row[n] for n in names] for row in rows], dtype=dtypes[0])
        return pd.DataFrame(block, columns=names, copy=False)
    data: dict[str, Any] = {}
    for name, dtype in zip(names, dtypes, strict=True):
        values = [row[name] for row in rows]
        data[name] = pd.to_datetime(values) if dtype == "datetime" else np.array(values, dtype=dtype)
    return pd.DataFrame(data, columns=names, copy=False)


def _column_dtype(col: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    want = "datetime" if col["type"] == "datetime" else _DTYPES.get(col["type"], "object")
    if not col.get("required", True) and any(row[col["name"]] is None for row in rows):
        return "float64" if col["type"] in INT_TYPES | FLOAT_TYPES else "object"
    return want


def cast_frame(df: Any, inputs: list[dict[str, Any]]) -> Any:
    """``df`` (e.g. online feature values) with the signature's dtypes; only columns whose dtype
    differs are cast, in one ``astype`` call (per-column casts cost ~0.5 ms each)."""
    import pandas as pd

    casts: dict[str, str] = {}
    dtypes = {name: str(t) for name, t in df.dtypes.items()}  # computed once: df.dtypes is rebuilt per access
    for col in inputs:
        want = _DTYPES.get(col["type"])
        if want is None:
            if col["type"] == "datetime":
                df[col["name"]] = pd.to_datetime(df[col["name"]])
            continue
        if dtypes[col["name"]] != want and not (
            not col.get("required", True) and df[col["name"]].isna().any()
        ):
            casts[col["name"]] = want
    return df.astype(casts) if casts else df


_DTYPES = {
    "integer": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "boolean": "bool",
    "string": "object",
}


def load_model(config: dict[str, Any]) -> Any:
    """The model object from the BentoML model store (sklearn estimator or MLflow pyfunc)."""
    if config["framework"] == "sklearn":
        return bentoml.sklearn.load_model(config["bento_model"])
    return bentoml.mlflow.load_model(config["bento_model"])


_CONFIG = load_config()
#: bentos built before batching existed have no entry: they keep scoring each request alone
_BATCHING: dict[str, Any] = _CONFIG.get("batching") or {"enabled": False}
#: rows the prediction log wrote, failed to write, or skipped (no entity key), over every worker
_LOGGED = (
    bentoml.metrics.Counter(
        name="mlpipe_prediction_log_rows",
        documentation="Scored rows by what became of them in the prediction log",
        labelnames=["outcome"],
    )
    if _CONFIG.get("prediction_log")
    else None
)


def joined_scores(scored: list[dict[str, Any]], what: str = "rows") -> dict[str, Any]:
    """The answer's ``predictions`` and class-score fields from :func:`score_rows`' per-row results.

    :raises RequestError: (HTTP 500) some rows could not be scored, naming them: the request was
        valid, so the failure is the model's (and a canary or watch window counts it as one).
    """
    failed = [(i, r["error"]) for i, r in enumerate(scored) if "error" in r]
    if failed:
        raise RequestError(
            f"the model could not score {len(failed)} of {len(scored)} {what}: {failed[0][1]}",
            [f"{what}[{i}]: {error}" for i, error in failed[:MAX_PROBLEMS]],
            status=500,
        )
    body: dict[str, Any] = {"predictions": [r["prediction"] for r in scored]}
    if scored and scored[0]["classes"] is not None:
        body.update(scores_of(scored[0]["classes"], [r["probabilities"] for r in scored]))
    return body


class PredictInput(bentoml.IODescriptor):
    """The request body; unknown top-level keys are refused (HTTP 400 naming them)."""

    model_config = ConfigDict(extra="forbid")

    rows: list[Any] | None = None
    entities: list[Any] | None = None
    return_features: StrictBool = False


#: Feast entity value types → the request-schema types checked for entity keys
_FEAST_KEY_TYPES = {"INT32": "integer", "INT64": "long", "STRING": "string", "BOOL": "boolean"}


def entity_key_schema(reader: Any) -> list[dict[str, Any]]:
    """The request schema of an entity row: the reader's join keys with their Feast value types
    (keys of another type are passed through unchecked)."""
    kinds = {
        e.join_key: _FEAST_KEY_TYPES.get(e.value_type.name, "_any") for e in reader.store.list_entities()
    }
    return [{"name": k, "type": kinds.get(k, "_any")} for k in reader.entity_keys]


def entity_rows(entities: list[dict[str, Any]], schema: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validated entity rows reduced to their join keys; integral floats of integer keys become ints
    (JSON clients send ``3.0``; the online store would not find the key)."""
    ints = [c["name"] for c in schema if c["type"] in INT_TYPES]
    names = [c["name"] for c in schema]
    rows = [{k: row[k] for k in names} for row in entities]
    for row in rows:
        for k in ints:
            row[k] = int(row[k])
    return rows


def _info(_: Request) -> JSONResponse:
    keys = ("model_name", "model_version", "fingerprint", "task_type", "label", "bento_tag", "bento_model")
    body = {k: _CONFIG.get(k) for k in keys}
    body["inputs"] = _CONFIG["inputs"]
    body["online"] = _CONFIG.get("online_spec") is not None
    body["entity_keys"] = _CONFIG.get("entity_keys")
    return JSONResponse(body)


_info_app = Starlette(routes=[Route("/info", _info, methods=["GET"])])


def uniform_error(raw: bytes, status: int, identity: dict[str, Any]) -> dict[str, Any]:
    """Any 4xx body (ours, BentoML's pydantic ``{"error", "detail": [...]}``, its ``[{"error"}]``
    or plain text) as the one documented error shape."""
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode(errors="replace").strip()
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        problems = [
            f"{'.'.join(str(p) for p in d.get('loc', ())) or 'body'}: {d.get('msg', d)}"
            if isinstance(d, dict)
            else str(d)
            for d in body["detail"]
        ]
        return _schema.error_body(
            f"invalid request: {problems[0]}" if problems else str(body), problems, identity
        )
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        listed = body.get("problems")
        return _schema.error_body(body["error"], listed if isinstance(listed, list) else [], identity)
    return _schema.error_body(str(body or f"HTTP {status}"), [], identity)


class SchemaMiddleware:
    """Serves the OpenAPI document and gives every 4xx answer the documented error shape."""

    def __init__(self, app: Any, spec: dict[str, Any], identity: dict[str, Any]) -> None:
        self.app = app
        self.spec = spec
        self.identity = identity

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in SPEC_PATHS and scope["method"] == "GET":
            await JSONResponse(self.spec)(scope, receive, send)
            return
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def send_uniform(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            payload = json.dumps(uniform_error(b"".join(chunks), start["status"], self.identity)).encode()
            skip = (b"content-length", b"content-type")
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in skip]
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": payload})

        await self.app(scope, receive, send_uniform)


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "model_name": config["model_name"],
        "model_version": str(config["model_version"]),
        "fingerprint": config.get("fingerprint"),
    }


class BatcherLink:
    """The front's calls to the batcher process, failing fast while that process is down.

    A call whose connection breaks is tried once more on a new connection: the batcher may have
    closed a kept-alive connection just as it was reused (scoring has no side effects). If it broke
    because the process died, BentoML restarts it and the replacement loads the model first; no
    request is held for that. The second try waits at most ``retry_s``; if it fails too, the link is
    *broken*: each request gets a 503 at once (the proxy retries it on another backend, a canary
    counts it), except one at a time that probes the batcher, again for at most ``retry_s``. The
    first call that succeeds mends the link.
    """

    def __init__(self, retry_s: float = 1.0) -> None:
        self.retry_s = retry_s
        self.broken = False
        self._probing = False

    async def call(self, send: Callable[[], Awaitable[Any]]) -> Any:
        """``await send()`` (a new call to the batcher each time), as described above.

        :raises RequestError: (HTTP 503) the batcher is not available.
        """
        if self.broken:
            if self._probing:
                raise self._unavailable("restarting")
            self._probing = True
            try:
                return await self._bounded(send)
            finally:
                self._probing = False
        try:
            return await send()
        except (aiohttp.ClientConnectionError, RuntimeError) as exc:
            if not _connection_broke(exc):
                raise
            return await self._bounded(send)

    async def _bounded(self, send: Callable[[], Awaitable[Any]]) -> Any:
        try:
            answer = await asyncio.wait_for(send(), self.retry_s)
        except (aiohttp.ClientConnectionError, RuntimeError, TimeoutError) as exc:
            if not _connection_broke(exc):
                raise
            self.broken = True
            raise self._unavailable(type(exc).__name__) from None
        self.broken = False
        return answer

    @staticmethod
    def _unavailable(why: str) -> Exception:
        return RequestError(f"the model process is not available ({why}); retry the request", status=503)


def _connection_broke(exc: BaseException) -> bool:
    """The call's connection to the batcher closed or timed out: aiohttp says so with a
    ``ClientConnectionError``, or with ``RuntimeError("Connection closed.")`` when it closed while
    the answer's body was being read."""
    if isinstance(exc, RuntimeError):
        return str(exc).startswith("Connection closed")
    return True


#: The front keeps its client session to the batcher for the process's lifetime. BentoML's default
#: (``runner_connection``: a new session every 100 calls or 300 s) closes the old session under the
#: calls still running on it: they fail, or one waits for an answer the batcher already sent until
#: the timeout (HTTP 504). Connections that break are still retried (:class:`BatcherLink`).
BATCHER_CONNECTION = {"max_requests": 2**31 - 1, "max_age": 10.0 * 365 * 24 * 3600}


@bentoml.service(
    name="mlpipe_model_batcher",
    workers=1,  # one model process: every request's rows meet in its batches
    traffic={"timeout": int(_CONFIG.get("timeout", 30))},
    runner_connection=BATCHER_CONNECTION,
)
class MlpipeModelBatcher:
    """Holds the model and scores the rows of concurrent requests in one call."""

    def __init__(self) -> None:
        self.model = load_model(_CONFIG)
        self.inputs: list[dict[str, Any]] = _CONFIG["inputs"]
        self.classifier = _CONFIG.get("task_type") == "classification"

    # Rows travel as a list of validated row mappings, not as a DataFrame: BentoML 1.4's DataFrame
    # container reports a batch's size as its shape tuple, which stops its dispatcher.
    @bentoml.api(
        batchable=True,
        max_batch_size=int(_BATCHING.get("max_batch_size", 64)),
        max_latency_ms=int(_BATCHING.get("max_latency_ms", 10_000)),
    )
    def score(self, rows: list[Any]) -> list[Any]:
        """:func:`score_rows` of the rows of the requests in this batch, in one frame."""
        return score_rows(self.model, to_frame(rows, self.inputs), self.classifier)


@bentoml.asgi_app(_info_app, path="/")
@bentoml.service(
    name="mlpipe_model",
    workers=int(_CONFIG.get("workers", 1)),
    traffic={"timeout": int(_CONFIG.get("timeout", 30))},
    labels={
        "mlpipe.model_name": str(_CONFIG["model_name"]),
        "mlpipe.model_version": str(_CONFIG["model_version"]),
    },
)
class MlpipeModelService:
    """Serves one registry model version with a request schema taken from its signature."""

    if _BATCHING.get("enabled"):
        batcher = bentoml.depends(MlpipeModelBatcher)

    def __init__(self) -> None:
        self.config = _CONFIG
        self.inputs: list[dict[str, Any]] = self.config["inputs"]
        self.max_rows = int(self.config.get("max_rows", 10_000))
        self.batching = bool(_BATCHING.get("enabled"))
        self.link = BatcherLink()
        self.classifier = self.config.get("task_type") == "classification"
        self.reader = None
        self.key_schema: list[dict[str, Any]] = []
        if self.config.get("online_spec") is not None:
            # Serving reads the same feature service as training did: no training/serving skew.
            from airflow_mlpipe.features.online import OnlineFeatureReader

            self.reader = OnlineFeatureReader.from_spec(self.config["online_spec"])
            # Resolves the feature service now: a version mismatch stops the service at start-up.
            self.key_schema = entity_key_schema(self.reader)
        self.identity = _identity(self.config)
        self.log: RequestLog | None = None
        if self.config.get("prediction_log"):
            self.log = RequestLog(
                self.config["prediction_log"],
                self.inputs,
                [c["name"] for c in self.key_schema],
                self.identity["model_version"],
                count=_count_logged,
            )

    @bentoml.on_shutdown
    async def write_prediction_log(self) -> None:
        """The rows scored since the last log part are written before the process exits."""
        if self.log is not None:
            await self.log.close()

    @functools.cached_property
    def model(self) -> Any:
        """The model, loaded on first use: with batching on, the batcher's process scores and this
        one never loads it under ``bentoml serve`` (the stream scorer does, in its own process)."""
        return load_model(self.config)

    async def _score(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """:func:`score_rows` of validated ``rows``: in the batcher's next batch, or here."""
        if self.batching:
            return list(await self.link.call(lambda: self.batcher.to_async.score(rows=rows)))
        return await asyncio.to_thread(
            lambda: score_rows(self.model, to_frame(rows, self.inputs), self.classifier)
        )

    def _features_for(self, entities: Any) -> Any:
        if self.reader is None:
            raise RequestError("this service takes 'rows' (no online feature spec is configured)")
        validate_rows(entities, self.key_schema, what="entities", max_rows=self.max_rows)
        frame = self.reader.read(entity_rows(entities, self.key_schema))
        missing = [c["name"] for c in self.inputs if c["name"] not in frame.columns]
        if missing:
            raise RequestError(f"the online store has no value for feature(s) {missing}")
        names = [c["name"] for c in self.inputs]
        null_rows = [i for i, bad in enumerate(frame[names].isna().any(axis=1).tolist()) if bad]
        if null_rows:
            shown = [entities[i] for i in null_rows[:5]]
            raise RequestError(
                f"no online features for {len(null_rows)} entit(y/ies), e.g. {shown}; "
                "materialize them or check the keys",
                [f"entities[{i}] has no online features" for i in null_rows[:MAX_PROBLEMS]],
            )
        # The model sees the signature's dtypes whichever way the online store typed the values.
        return cast_frame(frame[names], self.inputs)

    @bentoml.api(input_spec=PredictInput)
    async def predict(
        self,
        ctx: bentoml.Context,
        rows: list[Any] | None = None,
        entities: list[Any] | None = None,
        return_features: bool = False,
    ) -> dict[str, Any]:
        logged: list[dict[str, Any]] = []  # the log's fields of each request row
        arrived = ""
        try:
            if self.log is not None:
                arrived = dt.datetime.now(dt.UTC).isoformat()
                try:
                    logged = self.log.take_fields(rows if entities is None else entities, _what(entities))
                except ValueError as exc:
                    raise RequestError(
                        f"invalid '{_what(entities)}': {exc.args[0][0]}", exc.args[0]
                    ) from None
            if (rows is None) == (entities is None):
                raise RequestError(
                    "send exactly one of 'rows' (feature values) or 'entities' (entity keys)"
                    if self.reader is not None
                    else "send {'rows': [{column: value, ...}, ...]}"
                )
            if rows is not None:
                validate_rows(rows, self.inputs, max_rows=self.max_rows)
            else:  # the online store is read with blocking I/O: off the event loop
                frame = await asyncio.to_thread(self._features_for, entities)
                rows = frame.to_dict(orient="records")
            answer = joined_scores(await self._score(rows), _what(entities))
        except RequestError as exc:
            ctx.response.status_code = exc.status
            return _schema.error_body(str(exc), exc.problems, self.identity)
        if self.log is not None:
            self.log.add(rows if entities is None else entities, logged, answer, arrived)
        if return_features:  # the values as the model was given them (signature dtypes)
            answer["features"] = to_frame(rows, self.inputs).to_dict(orient="records")
        return {**answer, **self.identity}


def _count_logged(outcome: str, rows: int) -> None:
    if _LOGGED is not None:
        _LOGGED.labels(outcome=outcome).inc(rows)


def _what(entities: Any) -> str:
    return "rows" if entities is None else "entities"


cast(Any, MlpipeModelService).add_asgi_middleware(  # a bentoml Service, not the class mypy sees
    SchemaMiddleware,
    spec=_schema.openapi_spec(
        _CONFIG, _CONFIG["inputs"], [{"name": k, "type": "_any"} for k in _CONFIG.get("entity_keys") or []]
    ),
    identity=_identity(_CONFIG),
)
