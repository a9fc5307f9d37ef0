"""Byte-exact encodings of docs/history-format.md §2 (strict JSON reading is
`_json.py`, RFC 8785 is `_jcs.py`), and SPIFFE IDs (§9)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any

_B64U = re.compile(r"[A-Za-z0-9_-]*")


class EncodingError(ValueError):
    """A value is not canonical unpadded base64url or not the expected JSON."""


def b64u(data: bytes) -> str:
    """Canonical unpadded base64url (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    """Decodes canonical unpadded base64url; anything else (padding, `+`, `/`,
    whitespace, non-zero trailing bits) raises `EncodingError`."""
    if not isinstance(text, str) or _B64U.fullmatch(text) is None or len(text) % 4 == 1:
        raise EncodingError("not canonical base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:  # pragma: no cover - excluded by the regex
        raise EncodingError("not canonical base64url") from e
    if b64u(data) != text:
        raise EncodingError("not canonical base64url (non-zero trailing bits)")
    return data


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256_b64u(data: bytes) -> str:
    """base64url(SHA-256(data)): `x5t#S256`, `prev`, `head`, `bdy`."""
    return b64u(sha256(data))


def canonical_json(value: Any) -> bytes:
    """Compact JSON, members in lexicographic order, UTF-8: the form the
    reference signer writes (the `claims` size is measured as RFC 8785, `_jcs.py`)."""
    return json.dumps(
        value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


_SPIFFE_ID = re.compile(r"spiffe://[a-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")


def is_spiffe_id(value: object, *, require_path: bool = False) -> bool:
    """A SPIFFE ID as in docs/history-format.md §9."""
    if not isinstance(value, str) or len(value.encode("utf-8")) > 2048:
        return False
    if _SPIFFE_ID.fullmatch(value) is None:
        return False
    trust_domain, _, path = value[len("spiffe://") :].partition("/")
    if len(trust_domain) > 255:
        return False
    segments = path.split("/") if path else []
    if any(s in (".", "..") for s in segments):
        return False
    return bool(segments) or not require_path
