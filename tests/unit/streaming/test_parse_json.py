"""The stream scorer's event parser gives exactly what ``json.loads`` gives, faster."""

from __future__ import annotations

import json
import math

import pytest

from airflow_mlpipe.streaming.scorer import parse_json

SAME_AS_THE_STANDARD_LIBRARY = [
    '{"a": 1, "b": -2.5, "c": "x", "d": null, "e": true, "f": [1, {"g": 0.1}]}',
    '{"a": 123456789012345678901234567890}',  # beyond 64 bits
    '{"a": -9223372036854775809}',
    '{"a": 5e-324, "b": 2.2250738585072011e-308, "c": 1.0000000000000002, "d": -0.0, "e": 1E5}',
    '{"a": 1, "a": 2}',  # the last duplicate key wins
    ' {"a": "\\u0000\\u00e9\\ud83d\\ude00"} ',
    '"\\ud800"',  # a lone surrogate: msgspec refuses it, the standard library reads it
    '{"a": 1e400}',  # overflows to inf in the standard library
]


@pytest.mark.parametrize("raw", SAME_AS_THE_STANDARD_LIBRARY)
def test_values_and_types_are_the_standard_librarys(raw):
    got, expected = parse_json(raw), json.loads(raw)
    assert repr(got) == repr(expected)
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_nan_and_infinity_are_read_as_the_standard_library_reads_them():
    got = parse_json('{"a": NaN, "b": Infinity, "c": -Infinity}')
    assert math.isnan(got["a"]) and got["b"] == math.inf and got["c"] == -math.inf


@pytest.mark.parametrize("raw", ['{"a": 1', "", "{'a': 1}", '\ufeff{"a": 1}', '{"a": "x\ty"}', "[1, 2,]"])
def test_invalid_json_raises_the_standard_librarys_reason(raw):
    with pytest.raises(ValueError) as err:
        json.loads(raw)
    reason = str(err.value)
    with pytest.raises(ValueError, match="'data' is not valid JSON") as got:
        parse_json(raw)
    assert reason in str(got.value)
