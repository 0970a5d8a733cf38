"""The served model describes itself: OpenAPI spec from the signature, one error shape, fuzzed.

Runs against the session's real ``bentoml serve`` behind HAProxy on 127.0.0.1 (``live_deployment``).
The fuzzing is bounded by example counts, not by wall time, so a loaded machine only makes it slower.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from airflow_mlpipe.deploy.checks import post_json

pytestmark = pytest.mark.integration

#: examples per operation and generation mode (positive: valid per spec, negative: invalid)
EXAMPLES = {"/predict": 150, "/info": 10, "/readyz": 5, "/livez": 5}


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def test_spec_has_the_signature_info_and_one_error_shape(live_deployment, iris_registered):
    spec = _get(f"{live_deployment.endpoint}/docs.json")
    row = spec["components"]["schemas"]["Row"]
    assert row["required"] == list(iris_registered.X.columns)
    assert {c: s["type"] for c, s in row["properties"].items()} == dict.fromkeys(
        iris_registered.X.columns, "number"
    )
    assert row["additionalProperties"] is False
    assert spec["components"]["schemas"]["PredictRequest"]["required"] == ["rows"]
    assert "/info" in spec["paths"]
    assert spec["paths"]["/predict"]["post"]["responses"]["4XX"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "send {'rows'"),  # refused by the service
        ({"rows": None, "zz": 1}, "zz"),  # refused by BentoML's request parser
        ({"rows": "x"}, "rows"),
        ({"rows": [{"sepal_length": "1"}]}, "lacks column(s)"),
    ],
)
def test_every_4xx_has_the_documented_shape(live_deployment, body, needle):
    status, answer = post_json(f"{live_deployment.endpoint}/predict", body)
    assert status == 400, answer
    assert set(answer) == {"error", "problems", "model_name", "model_version", "fingerprint"}, answer
    assert isinstance(answer["problems"], list) and answer["problems"]
    assert needle in answer["error"] + " ".join(answer["problems"])


def test_fuzzing_finds_no_server_error_and_no_spec_violation(live_deployment):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    endpoint = live_deployment.endpoint
    schema = schemathesis.openapi.from_url(f"{endpoint}/docs.json", timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == set(EXAMPLES)
    calls = 0
    for op in operations:
        # Only /predict takes input: the GET operations have nothing to make invalid.
        modes = [schemathesis.GenerationMode.POSITIVE]
        if op.path == "/predict":
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES[op.path],
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: Any) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(base_url=endpoint, timeout=30)

            fuzz()
    assert calls >= EXAMPLES["/predict"]  # the bounds were reached: /predict alone got that many
