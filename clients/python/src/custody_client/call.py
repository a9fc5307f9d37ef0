"""Binding an approval to one call (docs/history-format.md, "Binding an entry
to one call"): the call claim a signer puts in `claims.call`, computed exactly
as the Custody filter computes it for the request it decides.

    claims = {"amount": 12000, "call": call_claim({"name": "refund", "arguments": {"order_id": "o-1", "amount": 12000}})}

RFC 8785 (JCS) comes from the `rfc8785` package (`_jcs.py`)."""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

from custody_client import _jcs
from custody_client._codec import b64u
from custody_client._jcs import MAX_SAFE_INTEGER, JcsError, check_safe_numbers  # noqa: F401 - MAX_SAFE_INTEGER re-exported

# The one member of `claims` that carries the call claim.
CALL_CLAIM = "call"
_KEYS = {"tools/call": ("tool", "name"), "prompts/get": ("prompt", "name"), "resources/read": ("resource", "uri")}


class CallError(ValueError):
    """The value cannot be bound to a call claim."""


def canonical(value: Any) -> bytes:
    """The RFC 8785 canonical form of `value` (UTF-8)."""
    try:
        return _jcs.canonical(value)
    except JcsError as e:
        raise CallError(str(e)) from e


def args_sha256(arguments: Mapping[str, Any] | None) -> str:
    """base64url SHA-256 of the canonical arguments; `None` is `{}`."""
    arguments = {} if arguments is None else arguments
    try:
        check_safe_numbers(arguments)
    except JcsError as e:
        raise CallError(str(e)) from e
    return b64u(hashlib.sha256(canonical(arguments)).digest())


def call_claim(message: Mapping[str, Any]) -> dict[str, str]:
    """The call claim of a JSON-RPC request (`tools/call`, `prompts/get`,
    `resources/read`) or of `{"name": TOOL, "arguments": {...}}` (a tool call)."""
    if not isinstance(message, Mapping):
        raise CallError("the call must be a JSON object")
    if "method" in message:
        method = message["method"]
        if method not in _KEYS:
            raise CallError(f"only {', '.join(_KEYS)} requests can be bound to a call")
        params = message.get("params")
        if not isinstance(params, Mapping):
            raise CallError("params must be an object")
    else:
        extra = set(message) - {"name", "arguments"}
        if extra:
            raise CallError(f"unknown member {sorted(extra)[0]!r}: give a JSON-RPC request or {{name, arguments}}")
        method, params = "tools/call", message
    key, member = _KEYS[method]
    target = params.get(member)
    if not isinstance(target, str) or not target:
        raise CallError(f"params.{member} must be a non-empty string")
    arguments = params.get("arguments")
    if arguments is not None and not isinstance(arguments, Mapping):
        raise CallError("arguments must be an object")
    return {key: target, "args_sha256": args_sha256(arguments)}
