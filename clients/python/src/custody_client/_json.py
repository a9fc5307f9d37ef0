"""Strict JSON as the verifier reads JWS headers and payloads
(docs/history-format.md §2): RFC 8259 UTF-8 text, one value; a member twice
at any depth, nesting past 32 levels, or a number that is not a finite IEEE
754 double is refused. Faults are reported in the order they occur in the
text, as the Rust verifier's streaming parser meets them.

Python's `json` cannot do this: it accepts lone surrogates, `NaN` and
`Infinity`, recurses without a small bound, and forgets how a number was
spelled. Here a number spelled as an integer (`0`, `-12`, `400`, no fraction
or exponent, not `-0`) is an `int`, every other number a `float`, so `-0`,
`1.0` and `1e3` stay distinguishable from integers."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from custody_client._codec import EncodingError

#: Deepest nesting of arrays and objects; the outermost value is level 1.
MAX_JSON_DEPTH = 32

_WS = re.compile(r"[ \t\n\r]*")
# Invalid UTF-8 bytes arrive as lone surrogates (surrogateescape) and match nothing here.
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f\ud800-\udfff]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_SURROGATE = re.compile("[\ud800-\udfff]")
_LITERALS = (("true", True), ("false", False), ("null", None))


class JsonError(EncodingError):
    """Not strict JSON: malformed, nested too deeply, or a number out of range."""


class DuplicateMember(EncodingError):
    """An object has the member `member` twice (compared after unescaping)."""

    def __init__(self, member: str) -> None:
        super().__init__(f"duplicate JSON member {member!r}")
        self.member = member


def strict_json_object(data: bytes) -> dict[str, Any]:
    """`parse`, and the value must be an object."""
    value = parse(data)
    if not isinstance(value, dict):
        raise JsonError("not a JSON object")
    return value


def parse(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The one JSON value of `data`. Recursion is bounded by `max_depth`,
    every loop by the length of `data`."""
    return _Reader(data.decode("utf-8", "surrogateescape"), max_depth).document()


class _Reader:
    def __init__(self, text: str, max_depth: int) -> None:
        self.text = text
        self.pos = 0
        self.max_depth = max_depth

    def fail(self, what: str) -> JsonError:
        return JsonError(f"not JSON: {what} at offset {self.pos}")

    def ws(self) -> None:
        m = _WS.match(self.text, self.pos)
        assert m is not None  # `*` always matches
        self.pos = m.end()

    def document(self) -> Any:
        value = self.value(0)
        self.ws()
        if self.pos != len(self.text):
            raise self.fail("trailing characters")
        return value

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def string(self) -> str:
        m = _STRING.match(self.text, self.pos)
        if m is None:
            raise self.fail("bad string")
        value: str = json.loads(m.group())
        if _SURROGATE.search(value):
            raise self.fail("lone surrogate")
        self.pos = m.end()
        return value

    def value(self, depth: int) -> Any:
        """A value inside `depth` containers."""
        self.ws()
        c = self.peek()
        if c in ("{", "["):
            if depth >= self.max_depth:
                raise self.fail(f"nested deeper than {self.max_depth} levels")
            self.pos += 1
            return self.obj(depth + 1) if c == "{" else self.arr(depth + 1)
        if c == '"':
            return self.string()
        for word, v in _LITERALS:
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return v
        return self.number()

    def obj(self, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self.ws()
        if self.peek() == "}":
            self.pos += 1
            return out
        while True:
            self.ws()
            if self.peek() != '"':
                raise self.fail("expected a member name")
            key = self.string()
            if key in out:
                raise DuplicateMember(key)
            self.ws()
            if self.peek() != ":":
                raise self.fail("expected ':'")
            self.pos += 1
            out[key] = self.value(depth)
            self.ws()
            c = self.peek()
            self.pos += 1
            if c == "}":
                return out
            if c != ",":
                raise self.fail("expected ',' or '}'")

    def arr(self, depth: int) -> list[Any]:
        out: list[Any] = []
        self.ws()
        if self.peek() == "]":
            self.pos += 1
            return out
        while True:
            out.append(self.value(depth))
            self.ws()
            c = self.peek()
            self.pos += 1
            if c == "]":
                return out
            if c != ",":
                raise self.fail("expected ',' or ']'")

    def number(self) -> int | float:
        m = _NUMBER.match(self.text, self.pos)
        if m is None:
            raise self.fail("unexpected character")
        text = m.group()
        as_float = float(text)
        if not math.isfinite(as_float):
            raise self.fail("number out of range of an IEEE 754 double")
        self.pos = m.end()
        if m.group(1) is None and m.group(2) is None and text != "-0":
            return int(text)  # finite, so at most 309 digits
        return as_float
