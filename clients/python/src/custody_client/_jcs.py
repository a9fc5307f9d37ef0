"""RFC 8785 JSON Canonicalization Scheme (JCS), through the `rfc8785`
package: the form a call claim hashes (`call.py`) and the form an entry's
`claims` size is measured in (docs/history-format.md §2). Numbers print as
ECMAScript prints doubles (`1E2` and `100.0` are `100`, `-0` is `0`), so the
same value has the same bytes whatever spelling was sent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import rfc8785

#: 2^53 − 1: the largest integer every JSON reader holds exactly (I-JSON).
MAX_SAFE_INTEGER = 2**53 - 1


class JcsError(ValueError):
    """The value has no canonical form that pins one value."""


def canonical(value: Any) -> bytes:
    """The RFC 8785 canonical form of `value` (UTF-8)."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as e:
        raise JcsError(f"cannot canonicalize: {e}") from e


def check_safe_numbers(value: Any) -> None:
    """Every number of `value` has a magnitude of at most 2^53 − 1: beyond it
    JCS reads numbers as doubles and no longer pins one value. Iterative: the
    loop is bounded by the size of `value`."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, bool) or v is None or isinstance(v, str):
            continue
        if isinstance(v, (int, float)):
            if not abs(v) <= MAX_SAFE_INTEGER:  # also refuses NaN
                raise JcsError("a number's magnitude is above 2^53 - 1")
        elif isinstance(v, Mapping):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        else:
            raise JcsError(f"not a JSON value: {type(v).__name__}")
