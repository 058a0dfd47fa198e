"""JSON text of the store's JSON columns: fast where it can be, the same text either way."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import pytest

from collector.store.columns import attribute_columns, from_json, from_json_exact, to_json

STDLIB = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)


@pytest.mark.parametrize(
    "value",
    [
        {"saga.id": "order-1", "n": 3, "ok": True, "amount": 12.5, "tags": ["a", "b"]},
        {"nested": {"k": [1, {"x": None}]}, "unicode": "züge ✓", "empty": {}},
        [{"name": "exception", "time_ns": 1_700_000_000_000_000_000, "attributes": {}}],
        {"big": 2**63 - 1, "small": -(2**63), "exp": 1e16, "tiny": 5e-324},
        "text",
        None,
    ],
)
def test_same_text_as_the_standard_library(value: Any) -> None:
    assert to_json(value) == STDLIB.encode(value)
    assert from_json(to_json(value)) == value


def test_non_finite_doubles_become_strings_not_null() -> None:
    text = to_json({"a": math.nan, "b": [math.inf, -math.inf], "c": None})
    assert json.loads(text) == {"a": "nan", "b": ["inf", "-inf"], "c": None}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"huge": 2**70}, {"huge": 2**70}),  # beyond 64 bits: written exactly
        ({1: "int key"}, {"1": "int key"}),  # keys that are not strings, as json does
        ({"when": object}, {"when": str(object)}),  # anything else through str()
    ],
)
def test_what_orjson_refuses_goes_the_standard_way(value: Any, expected: Any) -> None:
    assert json.loads(to_json(value)) == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"order":{"id":"o-1","amount":12.5,"items":[1,2,3]},"ok":true,"note":null}',
        '{"huge":123456789012345678901234567890,"neg":-9223372036854775809}',
        '{"max_u64":18446744073709551615,"over":18446744073709551616}',
        '{"digits":"12345678901234567890","pi":3.14159265358979323846}',
        '{"nan":NaN,"inf":Infinity,"big_exp":1e400}',
        '"\\ud800"',
        '{"a":1,"a":2}',
        "[]",
    ],
)
def test_exact_parse_reads_any_payload_as_the_standard_library(text: str) -> None:
    value, expected = from_json_exact(text), json.loads(text)
    # repr tells 1 from 1.0 and nan from nan, where == would not
    assert repr(value) == repr(expected)
    assert [type(v) for v in _leaves(value)] == [type(v) for v in _leaves(expected)]


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def test_attribute_columns_transpose_records_by_name() -> None:
    rows = [SimpleNamespace(a=1, b="x"), SimpleNamespace(a=2, b="y")]
    assert attribute_columns(rows, ["a", "b"]) == [(1, 2), ("x", "y")]
    assert attribute_columns(rows, ["b"]) == [("x", "y")]
    assert attribute_columns([], ["a", "b"]) == [(), ()]
