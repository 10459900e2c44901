"""JSON text through pydantic-core reads exactly what ``json.loads`` reads, refuses what it
refuses, and writes compact UTF-8 that reads back to the same value."""

from __future__ import annotations

import json

import pytest

from imagerouter.jsontext import dump_bytes, dumps, loads

TEXTS = [
    '{"prompt": "a lighthouse", "n": 2, "size": "1024x1024", "seed": null}',
    '{"a": 1, "a": 2}',  # the last duplicate wins
    "12345678901234567890123",  # an integer past 64 bits
    "[1.5e-7, 0.1, -0.0, 1E2, 1e400]",
    "NaN",
    '"\\u00e9t\\u00e9 \\ud83c\\udf05"',  # a surrogate pair
    '"\\ud800"',  # a lone surrogate: only json.loads takes it
    '{"x": "\\u0000"}',
    " \n[ ]\t",
]
REFUSED = ["", "[1,]", "{'a': 1}", '{"a": 1}x', "01", ".5", "+1", '"a\tb"', "[1 2]", "nul"]


@pytest.mark.parametrize("text", TEXTS)
def test_reads_what_json_loads_reads(text: str) -> None:
    expected = json.loads(text)
    for given in (text, text.encode()):
        got = loads(given)
        assert repr(got) == repr(expected)  # repr: NaN is not equal to itself


@pytest.mark.parametrize("text", REFUSED)
def test_refuses_what_json_loads_refuses_with_its_error(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as ours:
        loads(text)
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert str(ours.value) == str(theirs.value)


def test_writes_compact_utf8_that_reads_back() -> None:
    value = {"prompt": "été", "n": 1, "tags": ["a", None, True], "size": {"w": 1024}}
    text = dumps(value)
    assert text == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert dump_bytes(value) == text.encode()
    floats = [1e-07, 0.1, 2.5e300, -0.0]  # spelled its own way (1e-7), read back the same
    assert loads(dumps(floats)) == floats


def test_writes_nan_and_infinity_as_null() -> None:
    """What JSON cannot hold is written as ``null``, never as ``NaN``/``Infinity`` (text no
    strict reader, nor SQLite's JSON functions, takes)."""
    value = {"a": float("inf"), "b": [float("-inf"), float("nan")], "c": 1.5}
    for text in (dumps(value), dump_bytes(value).decode()):
        assert text == '{"a":null,"b":[null,null],"c":1.5}'
