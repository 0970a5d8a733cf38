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
