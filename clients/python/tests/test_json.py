"""The strict JSON reader (`_json.py`, docs/history-format.md §2): what it
refuses, how it classifies numbers, and that faults come in text order."""

from __future__ import annotations

import math

import pytest

from custody_client import _jcs
from custody_client._json import MAX_JSON_DEPTH, DuplicateMember, JsonError, parse


def test_ordinary_json() -> None:
    v = parse(b' {"a":[1,-2,3.5,"x",null,true,false],"b":{"c":{}},"\\u00e9":"\\ud83d\\ude00"} ')
    assert v == {"a": [1, -2, 3.5, "x", None, True, False], "b": {"c": {}}, "é": "😀"}


@pytest.mark.parametrize(
    "text, value, kind",
    [
        ("0", 0, int),
        ("12", 12, int),
        ("-12", -12, int),
        ("9007199254740992", 2**53, int),
        ("-0", 0.0, float),
        ("1.0", 1.0, float),
        ("1e3", 1000.0, float),
        ("1E2", 100.0, float),
        ("100.0", 100.0, float),
        ("1e-400", 0.0, float),
        ("18446744073709551616", 2**64, int),
    ],
)
def test_numbers_keep_their_kind(text: str, value: float, kind: type) -> None:
    """Only a number spelled as an integer is an `int`: `-0`, `1.0`, `1e3` are not."""
    v = parse(text.encode())
    assert type(v) is kind and v == value
    if text == "-0":
        assert math.copysign(1.0, v) == -1.0


@pytest.mark.parametrize(
    "text",
    [
        "1e400", "-1e400", "9" * 400, "-" + "9" * 400,  # not finite doubles
        "NaN", "Infinity", "-Infinity", "01", "1.", ".5", "+1", "-", "0x10", "1e", "1e+",  # not JSON numbers
        "", " ", "{", "[1,]", '{"a":1,}', '{"a" 1}', "{'a':1}", '{"a":1} x', "[1] [2]", "tru", "nul",
        '"\\ud800"', '"\\udc00x"', '"\\ud83d"',  # lone surrogates
        '"a\x01"', '"\\x"', '"\\u12"', "\ufeff{}", "\u00a0{}", '{"a":1}\u00a0',
    ],
)
def test_refuses_what_is_not_strict_json(text: str) -> None:
    with pytest.raises(JsonError):
        parse(text.encode("utf-8"))


@pytest.mark.parametrize("data", [b'{"a":"\xff"}', b'{"a":"\xed\xa0\x80"}', b'{"a":"\xc0\xaf"}', b"\xff{}"])
def test_refuses_invalid_utf8(data: bytes) -> None:
    with pytest.raises(JsonError):
        parse(data)


@pytest.mark.parametrize(
    "text, member",
    [
        ('{"a":1,"a":2}', "a"),
        ('{"x":{"b":[{"c":1,"c":1}]}}', "c"),
        ('{"a":1,"\\u0061":2}', "a"),  # compared after unescaping
        ('[{"k":1,"k":1}]', "k"),
        ('{"a":1,"a"}', "a"),  # found at the member name, before the missing ':'
        ('{"a":1,"a":1e400}', "a"),
    ],
)
def test_refuses_duplicate_members(text: str, member: str) -> None:
    with pytest.raises(DuplicateMember) as e:
        parse(text.encode())
    assert e.value.member == member


def test_depth_32_is_read_33_is_refused() -> None:
    assert MAX_JSON_DEPTH == 32
    for open_, close in (("[", "]"), ('{"a":', "}")):
        parse((open_ * 32 + "0" + close * 32).encode())
        with pytest.raises(JsonError, match="nested deeper"):
            parse((open_ * 33 + "0" + close * 33).encode())
    # Far deeper input stops at level 33, without recursing further.
    with pytest.raises(JsonError, match="nested deeper"):
        parse(b"[" * 1_000_000)


def test_faults_are_reported_in_text_order() -> None:
    """As the verifier's streaming parser meets them: which comes first decides the code."""
    deep = "[" * 40 + "]" * 40
    with pytest.raises(DuplicateMember):
        parse(f'{{"a":1,"a":{deep}}}'.encode())
    with pytest.raises(JsonError, match="nested"):
        parse(f'{{"a":{deep},"a":1}}'.encode())
    with pytest.raises(DuplicateMember):
        parse(b'{"a":1,"a":"\xff"}')
    with pytest.raises(JsonError):
        parse(b'{"a":"\xff","a":1}')
    with pytest.raises(JsonError, match="out of range"):
        parse(b'{"a":1e999,"a":1}')


def test_jcs_measures_one_size_for_every_spelling() -> None:
    """The claims size is the RFC 8785 form: `1E2`, `100.0` and `100` are the same bytes, `-0` is `0`."""
    a = parse(b'{"b":1E2,"a":-0,"c":1e-7,"d":100.0}')
    assert _jcs.canonical(a) == b'{"a":0,"b":100,"c":1e-7,"d":100}'
    assert _jcs.canonical(a) == _jcs.canonical(parse(b'{"a":0,"b":100,"c":0.0000001,"d":100}'))
