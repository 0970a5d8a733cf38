"""The request schema of a served model: value checks, the one error body and the OpenAPI spec.

Plain Python (no BentoML, pandas or provider imports): the HTTP service and batch scoring apply the
same checks to the same signature, and the module is copied into every bento next to the service.
``inputs`` is the model's signature as ``[{"name", "type" (MLflow type name), "required"}]``.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

#: report at most this many problems of one request (a huge bad batch must not produce a huge answer)
MAX_PROBLEMS = 20

INT_TYPES = {"integer", "long"}
FLOAT_TYPES = {"float", "double"}
_INT_BOUNDS = {"integer": 2**31, "long": 2**63}
_FLOAT32_MAX = 3.4028234663852886e38


class RequestError(ValueError):
    """A request the service refuses; ``problems`` lists each thing that is wrong.

    :param status: the HTTP status of the answer: 400 (malformed) unless said otherwise.
    """

    def __init__(self, message: str, problems: list[str] | None = None, *, status: int = 400) -> None:
        super().__init__(message)
        self.problems = problems or [message]
        self.status = status


def check_value(value: Any, kind: str) -> str | None:
    """Why ``value`` is not acceptable for a column of MLflow type ``kind`` (``None``: it is)."""
    if value is None:
        return "is null"
    if kind in INT_TYPES:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expects {kind}, got {type(value).__name__} {value!r:.40}"
        if isinstance(value, float) and not value.is_integer():
            return f"expects {kind}, got non-integral number {value!r}"
        bound = _INT_BOUNDS[kind]
        if not -bound <= value < bound:
            return f"{value!r:.40} is out of range for {kind}"
        return None
    if kind in FLOAT_TYPES:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expects {kind}, got {type(value).__name__} {value!r:.40}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"expects a finite {kind}, got {value!r}"
        if kind == "float" and abs(value) > _FLOAT32_MAX:
            return f"{value!r:.40} is out of range for float (32-bit)"
        return None
    if kind == "boolean":
        return None if isinstance(value, bool) else f"expects boolean, got {type(value).__name__}"
    if kind in ("string", "datetime"):
        if not isinstance(value, str):
            return f"expects {kind} (a string), got {type(value).__name__}"
        if kind == "datetime":
            try:
                datetime.fromisoformat(value)
            except ValueError:
                return f"expects an ISO 8601 date-time, got {value!r:.40}"
        return None
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
                why = check_value(row[col["name"]], col["type"])
                if why and not (row[col["name"]] is None and not col.get("required", True)):
                    problems.append(f"{what}[{i}].{col['name']} {why}")
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise RequestError(f"invalid '{what}': {problems[0]}", problems[:MAX_PROBLEMS])


def error_body(message: str, problems: list[str], identity: dict[str, Any]) -> dict[str, Any]:
    """The body of every 4xx answer: ``{"error", "problems", "model_name", "model_version",
    "fingerprint"}`` (``ERROR_SCHEMA``)."""
    return {"error": message, "problems": list(problems)[:MAX_PROBLEMS] or [message], **identity}


def column_schema(kind: str, required: bool = True) -> dict[str, Any]:
    """The JSON schema (OpenAPI 3.0) of one column value of MLflow type ``kind``."""
    schema: dict[str, Any]
    if kind in INT_TYPES:
        bound = _INT_BOUNDS[kind]
        schema = {"type": "integer", "minimum": -bound, "maximum": bound - 1}
    elif kind == "float":
        schema = {"type": "number", "minimum": -_FLOAT32_MAX, "maximum": _FLOAT32_MAX}
    elif kind == "double":
        schema = {"type": "number"}
    elif kind == "boolean":
        schema = {"type": "boolean"}
    elif kind == "datetime":
        schema = {"type": "string", "format": "date-time"}
    elif kind == "string":
        schema = {"type": "string"}
    else:
        schema = {}
    if not required:
        schema["nullable"] = True
    return {**schema, "x-mlflow-type": kind}


def row_schema(inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """One request row: every column of the signature (optional ones may be null), nothing else."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [c["name"] for c in inputs],
        "properties": {c["name"]: column_schema(c["type"], c.get("required", True)) for c in inputs},
    }


def _add_log_fields(row: dict[str, Any] | None, log: dict[str, Any]) -> None:
    """A row may also carry the prediction log's keys and event time (optional; see
    ``airflow_mlpipe/_serving/request_log.py``)."""
    if row is None:
        return
    key = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}], "nullable": True}
    fields = {k: {**key, "description": "prediction log key"} for k in log["keys"]}
    fields[log["timestamp_column"]] = {
        "type": "string",
        "nullable": True,
        "description": "prediction log event time, ISO 8601 (UTC without an offset)",
    }
    for name, schema in fields.items():
        row["properties"].setdefault(name, schema)


_IDENTITY = {
    "model_name": {"type": "string"},
    "model_version": {"type": "string"},
    "fingerprint": {"type": "string", "nullable": True},
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "problems", "model_name", "model_version", "fingerprint"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong, in one line"},
        "problems": {"type": "array", "items": {"type": "string"}, "description": "each problem"},
        **_IDENTITY,
    },
}


def openapi_spec(
    config: dict[str, Any], inputs: list[dict[str, Any]], key_schema: list[dict[str, Any]]
) -> dict:
    """The service's OpenAPI 3.0 document: ``/predict`` with the request schema of the model
    signature, ``/info``, the health endpoints, and one error shape for every 4xx."""
    max_rows = int(config.get("max_rows", 10_000))
    batch = {"type": "array", "minItems": 1, "maxItems": max_rows}
    properties: dict[str, Any] = {
        "rows": {**batch, "items": {"$ref": "#/components/schemas/Row"}},
        "return_features": {"type": "boolean", "default": False},
    }
    request: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    schemas: dict[str, Any] = {"Row": row_schema(inputs), "Error": ERROR_SCHEMA}
    if key_schema:
        properties["entities"] = {**batch, "items": {"$ref": "#/components/schemas/EntityRow"}}
        schemas["EntityRow"] = row_schema(key_schema)
        request["oneOf"] = [{"required": ["rows"]}, {"required": ["entities"]}]
    else:
        request["required"] = ["rows"]
    if config.get("prediction_log"):
        for row in (schemas["Row"], schemas.get("EntityRow")):
            _add_log_fields(row, config["prediction_log"])
    schemas["PredictRequest"] = request
    schemas["PredictResponse"] = {
        "type": "object",
        "required": ["predictions", "model_name", "model_version", "fingerprint"],
        "properties": {
            "predictions": {"type": "array", "description": "one prediction per row"},
            "features": {
                "type": "array",
                "items": {"type": "object"},
                "description": "the feature values the model was given (return_features)",
            },
            "scores": {"type": "array", "description": "classifiers: a score per row"},
            "probabilities": {"type": "array", "description": "classifiers: class probabilities per row"},
            "classes": {"type": "array", "description": "classifiers: the class labels"},
            **_IDENTITY,
        },
    }
    schemas["Info"] = {
        "type": "object",
        "required": ["model_name", "model_version", "inputs", "online"],
        "properties": {
            **_IDENTITY,
            "task_type": {"type": "string", "nullable": True},
            "label": {"type": "string", "nullable": True},
            "bento_tag": {"type": "string", "nullable": True},
            "bento_model": {"type": "string", "nullable": True},
            "inputs": {"type": "array", "items": {"type": "object"}},
            "online": {"type": "boolean"},
            "entity_keys": {"type": "array", "items": {"type": "string"}, "nullable": True},
        },
    }
    error = {"description": "the request is refused", "content": _json("Error")}
    text = {"200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"{config.get('model_name')} v{config.get('model_version')}",
            "version": str(config.get("model_version")),
            "description": "A registry model served by airflow-mlpipe; the request schema is the "
            "model signature.",
        },
        "paths": {
            "/predict": {
                "post": {
                    "operationId": "predict",
                    "requestBody": {"required": True, "content": _json("PredictRequest")},
                    "responses": {
                        "200": {"description": "predictions", "content": _json("PredictResponse")},
                        "4XX": error,
                    },
                }
            },
            "/info": {
                "get": {
                    "operationId": "info",
                    "responses": {"200": {"description": "what serves", "content": _json("Info")}},
                }
            },
            "/readyz": {"get": {"operationId": "readyz", "responses": text}},
            "/livez": {"get": {"operationId": "livez", "responses": text}},
        },
        "components": {"schemas": schemas},
    }


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
