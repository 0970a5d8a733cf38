"""The BentoML service that serves one registry model; copied into every bento the provider builds.

It runs only under ``bentoml serve`` (never imported by a DAG file) and depends on nothing but
BentoML, pandas and the model's framework, so a bento runs without the provider installed unless an
online-feature spec is configured. Its configuration is ``mlpipe_service.json`` next to this file
(written at build time): model identity, the request schema taken from the model signature, and the
optional Feast online spec.

API (see ``docs/stages/deployment.md``)::

    POST /predict  {"rows": [{col: value, ...}, ...]}      -> {"predictions": [...], "model_version": ...}
                                                               classifiers with predict_proba also
                                                               return "classes", "probabilities"
                                                               (per row, ordered as "classes") and,
                                                               binary only, "scores" (P(classes[1]))
    POST /predict  {"entities": [{key: value, ...}, ...]}   (when an online spec is configured)
    POST /predict  {..., "return_features": true}           -> also {"features": [{col: value}, ...]},
                                                               the feature values the model was given
    GET  /info     model name, version, fingerprint, bento tag, request schema
    GET  /readyz, /livez, /metrics                          (BentoML)

A malformed request gets HTTP 400 with ``{"error": ..., "problems": [...]}`` that says what is wrong;
it never reaches the model. So does an entity the online store has no features for (unknown key, or
never materialized), a missing join key or a key of the wrong type.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import bentoml
from pydantic import ConfigDict, StrictBool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

try:  # in a bento: copied beside this file
    from mlpipe_scores import class_scores
except ImportError:  # imported from the installed provider
    from airflow_mlpipe.core.class_scores import class_scores

CONFIG_FILE = "mlpipe_service.json"
#: report at most this many problems of one request (a huge bad batch must not produce a huge answer)
MAX_PROBLEMS = 20

_INT_TYPES = {"integer", "long"}
_INT_BOUNDS = {"integer": 2**31, "long": 2**63}
_FLOAT_TYPES = {"float", "double"}


def load_config() -> dict[str, Any]:
    path = Path(os.environ.get("MLPIPE_SERVICE_CONFIG") or Path(__file__).with_name(CONFIG_FILE))
    return dict(json.loads(path.read_text()))


class RequestError(ValueError):
    """A request the service refuses; ``problems`` lists each thing that is wrong."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


def _check_value(value: Any, kind: str) -> str | None:
    """Why ``value`` is not acceptable for a column of MLflow type ``kind`` (``None``: it is)."""
    if value is None:
        return "is null"
    if kind in _INT_TYPES:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expects {kind}, got {type(value).__name__} {value!r:.40}"
        if isinstance(value, float) and not value.is_integer():
            return f"expects {kind}, got non-integral number {value!r}"
        bound = _INT_BOUNDS[kind]
        if not -bound <= value < bound:
            return f"{value!r:.40} is out of range for {kind}"
        return None
    if kind in _FLOAT_TYPES:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expects {kind}, got {type(value).__name__} {value!r:.40}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"expects a finite {kind}, got {value!r}"
        return None
    if kind == "boolean":
        return None if isinstance(value, bool) else f"expects boolean, got {type(value).__name__}"
    if kind in ("string", "datetime"):
        return None if isinstance(value, str) else f"expects {kind} (a string), got {type(value).__name__}"
    return None  # types without a JSON check (binary, …) go to the model as they are


def validate_rows(rows: Any, inputs: list[dict[str, Any]], *, what: str = "rows", max_rows: int) -> None:
    """Check a JSON batch against the request schema; raise :class:`RequestError` naming every problem."""
    if not isinstance(rows, list):
        raise RequestError(f"'{what}' must be a list of objects, got {type(rows).__name__}")
    if not rows:
        raise RequestError(f"'{what}' is empty: send at least one row")
    if len(rows) > max_rows:
        raise RequestError(f"'{what}' has {len(rows)} rows; at most {max_rows} per request")
    names = [c["name"] for c in inputs]
    known = set(names)
    problems: list[str] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(f"{what}[{i}] must be an object, got {type(row).__name__}")
            continue
        missing = [n for n in names if n not in row]
        if missing:
            problems.append(f"{what}[{i}] lacks column(s) {missing}")
        extra = sorted(k for k in row if k not in known)
        if extra:
            problems.append(f"{what}[{i}] has unknown column(s) {extra}; expected {names}")
        for col in inputs:
            if col["name"] in row:
                why = _check_value(row[col["name"]], col["type"])
                if why and not (row[col["name"]] is None and not col.get("required", True)):
                    problems.append(f"{what}[{i}].{col['name']} {why}")
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise RequestError(f"invalid '{what}': {problems[0]}", problems[:MAX_PROBLEMS])


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
        return "float64" if col["type"] in _INT_TYPES | _FLOAT_TYPES else "object"
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
    ints = [c["name"] for c in schema if c["type"] in _INT_TYPES]
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

    def __init__(self) -> None:
        self.config = _CONFIG
        self.inputs: list[dict[str, Any]] = self.config["inputs"]
        self.max_rows = int(self.config.get("max_rows", 10_000))
        self.model = load_model(self.config)
        self.classifier = self.config.get("task_type") == "classification"
        self.reader = None
        self.key_schema: list[dict[str, Any]] = []
        if self.config.get("online_spec") is not None:
            # Serving reads the same feature service as training did: no training/serving skew.
            from airflow_mlpipe.features.online import OnlineFeatureReader

            self.reader = OnlineFeatureReader.from_spec(self.config["online_spec"])
            # Resolves the feature service now: a version mismatch stops the service at start-up.
            self.key_schema = entity_key_schema(self.reader)
        self.identity = {
            "model_name": self.config["model_name"],
            "model_version": str(self.config["model_version"]),
            "fingerprint": self.config.get("fingerprint"),
        }

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
    def predict(
        self,
        ctx: bentoml.Context,
        rows: list[Any] | None = None,
        entities: list[Any] | None = None,
        return_features: bool = False,
    ) -> dict[str, Any]:
        try:
            if (rows is None) == (entities is None):
                raise RequestError(
                    "send exactly one of 'rows' (feature values) or 'entities' (entity keys)"
                    if self.reader is not None
                    else "send {'rows': [{column: value, ...}, ...]}"
                )
            if rows is not None:
                validate_rows(rows, self.inputs, max_rows=self.max_rows)
                frame = to_frame(rows, self.inputs)
            else:
                frame = self._features_for(entities)
        except RequestError as exc:
            ctx.response.status_code = 400
            return {"error": str(exc), "problems": exc.problems, **self.identity}
        predictions = self.model.predict(frame)
        values = predictions.tolist() if hasattr(predictions, "tolist") else list(predictions)
        scores = class_scores(self.model, frame) if self.classifier else {}
        if return_features:
            return {
                "predictions": values,
                **scores,
                "features": frame.to_dict(orient="records"),
                **self.identity,
            }
        return {"predictions": values, **scores, **self.identity}
