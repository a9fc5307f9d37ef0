"""Signed workflow history (docs/history-format.md): entries, appending,
per-request proofs, and the holder's check (`_check.py`: §7 without the
trust bundle)."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, TypeVar

from cryptography import x509

from custody_client import _check
from custody_client._check import (
    ALG,
    CLOCK_SKEW,
    ENTRY_TYP,
    MAX_CERTS,
    MAX_CLAIMS_BYTES,
    MAX_ENTRIES,
    MAX_HEADER_BYTES,
    MAX_PROOF_TTL,
    PROOF_TYP,
    X5T,
    Part,
    verify_signature,
)
from custody_client._codec import EncodingError, b64u, b64u_decode, canonical_json, is_spiffe_id, sha256_b64u
from custody_client._errors import HistoryError, NotHolderError, VerificationError
from custody_client._json import strict_json_object
from custody_client.call import CALL_CLAIM, CallError, call_claim
from custody_client.svid import Svid

HISTORY_HEADER = "workflow-history"
PROOF_HEADER = "workflow-history-proof"
CERTS_HEADER = "workflow-history-certs"


def _now() -> int:
    return int(time.time())


def _header_json(svid: Svid, typ: str) -> bytes:
    return canonical_json({"alg": ALG, "typ": typ, X5T: svid.x5t})


def sign_jws(svid: Svid, header_json: bytes, payload_json: bytes) -> str:
    """A compact JWS of these exact header and payload bytes, ES256, low-S."""
    signing_input = f"{b64u(header_json)}.{b64u(payload_json)}"
    return f"{signing_input}.{b64u(svid.sign(signing_input.encode('ascii')))}"


_J = TypeVar("_J", bound="Jws")


@dataclass(frozen=True)
class Jws:
    """One compact JWS, decoded (not verified)."""

    compact: str
    header: dict[str, Any]
    payload: dict[str, Any]
    signature: bytes

    @classmethod
    def parse(cls: type[_J], compact: str) -> _J:
        parts = compact.split(".")
        if len(parts) != 3 or not all(parts[:2]):
            raise HistoryError("not a three-segment compact JWS")
        try:
            header = strict_json_object(b64u_decode(parts[0]))
            payload = strict_json_object(b64u_decode(parts[1]))
            signature = b64u_decode(parts[2])
        except EncodingError as e:
            raise HistoryError(f"bad JWS: {e}") from e
        return cls(compact, header, payload, signature)

    @property
    def signing_input(self) -> bytes:
        return self.compact.rpartition(".")[0].encode("ascii")

    @property
    def sha256(self) -> str:
        """base64url(SHA-256(compact JWS text)): the next entry's `prev`, a proof's `head`."""
        return sha256_b64u(self.compact.encode("ascii"))

    @property
    def x5t(self) -> str:
        return str(self.header.get(X5T, ""))


@dataclass(frozen=True)
class Entry(Jws):
    """One history entry (§3)."""

    @property
    def seq(self) -> int:
        return int(self.payload["seq"])

    @property
    def wid(self) -> str:
        return str(self.payload["wid"])

    @property
    def iss(self) -> str:
        return str(self.payload["iss"])

    @property
    def nxt(self) -> str:
        return str(self.payload["nxt"])

    @property
    def step(self) -> str:
        return str(self.payload["step"])

    @property
    def result(self) -> str:
        return str(self.payload["result"])

    @property
    def iat(self) -> int:
        return int(self.payload["iat"])

    @property
    def exp(self) -> int:
        return int(self.payload["exp"])

    @property
    def prev(self) -> str | None:
        p = self.payload.get("prev")
        return None if p is None else str(p)

    @property
    def claims(self) -> dict[str, Any] | None:
        c = self.payload.get("claims")
        return c if isinstance(c, dict) else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    found = [v for k, v in headers.items() if k.lower() == name]
    if len(found) > 1:
        raise HistoryError(f"header {name} given more than once")
    return found[0] if found else None


@dataclass(frozen=True)
class History:
    """A workflow history: entries (compact JWS texts, oldest first) and the
    DER certificates that go in `workflow-history-certs`. Immutable: `append`
    returns a new value."""

    entries: tuple[str, ...] = ()
    certs: tuple[bytes, ...] = ()

    # --- reading and writing the headers ------------------------------------

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> "History":
        """From the `workflow-history` and `workflow-history-certs` header values
        (names case-insensitive; other headers, the proof included, ignored). A
        mapping without `workflow-history` is the empty history."""
        text = _header(headers, HISTORY_HEADER)
        certs_text = _header(headers, CERTS_HEADER)
        entries: tuple[str, ...] = ()
        if text is not None:
            entries = tuple(text.split("~"))
            if len(entries) > MAX_ENTRIES:
                raise HistoryError(f"more than {MAX_ENTRIES} entries")
            for i, e in enumerate(entries):
                try:
                    Entry.parse(e)
                except HistoryError as err:
                    raise HistoryError(f"entry {i}: {err}") from err
        certs: list[bytes] = []
        if certs_text:
            for i, c in enumerate(certs_text.split("~")):
                try:
                    der = b64u_decode(c)
                    x509.load_der_x509_certificate(der)
                except (EncodingError, ValueError) as err:
                    raise HistoryError(f"certificate {i}: {err}") from err
                certs.append(der)
        return cls(entries, tuple(certs))

    def headers(self) -> dict[str, str]:
        """`{"workflow-history": …, "workflow-history-certs": …}`; `{}` when empty.
        (The same JSON object is a history file of `custody history`.)"""
        if not self.entries:
            return {}
        return {HISTORY_HEADER: "~".join(self.entries), CERTS_HEADER: "~".join(b64u(c) for c in self.certs)}

    # --- reading entries -----------------------------------------------------

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return (Entry.parse(e) for e in self.entries)

    def __getitem__(self, i: int) -> Entry:
        return Entry.parse(self.entries[i])

    @property
    def last(self) -> Entry | None:
        return Entry.parse(self.entries[-1]) if self.entries else None

    @property
    def wid(self) -> str | None:
        return self[0].wid if self.entries else None

    @property
    def holder(self) -> str | None:
        """The SPIFFE ID the last entry handed the chain to (its `nxt`)."""
        last = self.last
        return last.nxt if last else None

    def with_certs(self, ders: tuple[bytes, ...] | list[bytes]) -> "History":
        """Adds certificates not already present (compared by DER)."""
        certs = list(self.certs)
        for d in ders:
            if d not in certs:
                certs.append(d)
        return History(self.entries, tuple(certs))

    # --- signing ---------------------------------------------------------------

    def append(
        self,
        svid: Svid,
        *,
        step: str,
        result: str = "approved",
        next: str,  # noqa: A002 - the spec's name for the next holder
        claims: Mapping[str, Any] | None = None,
        ttl: int = 3600,
        wid: str | None = None,
        iat: int | None = None,
        bind_call: Mapping[str, Any] | None = None,
    ) -> "History":
        """Signs one entry by `svid` handing the chain to `next` and returns the
        longer history. An empty history starts a chain (`seq` 0, `wid` given
        or 128 random bits). Otherwise `seq`/`prev`/`wid` follow the last entry,
        and the signer must be the holder it named (else `NotHolderError`).
        `bind_call` (a JSON-RPC request or `{"name", "arguments"}`) adds
        `claims["call"]`, binding the entry to exactly that call."""
        if not step:
            raise HistoryError("step must be a non-empty string")
        if not isinstance(result, str):
            raise HistoryError("result must be a string")
        if not is_spiffe_id(next):
            raise HistoryError(f"next holder {next!r} is not a SPIFFE ID")
        if ttl < 0:
            raise HistoryError("ttl must not be negative")
        if len(self.entries) >= MAX_ENTRIES:
            raise HistoryError(f"a history holds at most {MAX_ENTRIES} entries")
        iss = svid.spiffe_id
        last = self.last
        if last is None:
            seq, prev = 0, None
            wid = wid if wid is not None else b64u(os.urandom(16))
            if not wid:
                raise HistoryError("wid must be a non-empty string")
        else:
            if wid is not None and wid != last.wid:
                raise HistoryError(f"wid {wid!r} differs from the chain's {last.wid!r}")
            if last.nxt != iss:
                raise NotHolderError(f"{iss} is not the holder the last entry named ({last.nxt})")
            seq, prev, wid = last.seq + 1, last.sha256, last.wid
        iat = _now() if iat is None else iat
        payload: dict[str, Any] = {
            "v": 1, "wid": wid, "seq": seq, "prev": prev, "iss": iss, "nxt": next,
            "step": step, "result": result, "iat": iat, "exp": iat + ttl,
        }
        if bind_call is not None:
            if claims is not None and CALL_CLAIM in claims:
                raise HistoryError("claims already has a `call` member; bind_call sets it")
            try:
                call = call_claim(bind_call)
            except CallError as e:
                raise HistoryError(f"bind_call: {e}") from e
            claims = {**(claims or {}), CALL_CLAIM: call}
        if claims is not None:
            if not isinstance(claims, Mapping):
                raise HistoryError("claims must be a JSON object")
            payload["claims"] = dict(claims)
        part = Part.entry(seq)
        payload_json = _as_the_verifier_reads(payload, lambda p: _check.entry_fields(p, part), part)
        entry = sign_jws(svid, _header_json(svid, ENTRY_TYP), payload_json)
        out = History(self.entries + (entry,), self.certs).with_certs(svid.chain_der)
        _within_caps(out.entries, out.certs)
        return out

    # --- checking (not a verifier: no X.509 path validation) -----------------

    def check(self, *, now: int | None = None) -> None:
        """The checks of docs/history-format.md §7 a holder can run on the
        entries without the trust bundle, in the verifier's order: entry
        count, certificates (count, DER), then each entry (JWS form, header,
        payload members, claims size, the sent certificate its `x5t#S256`
        names, `iss` = its SPIFFE ID, the signature), then the chain (`seq`,
        `prev`, `wid`, custody, order, lifetimes, times against `now` with
        30 s skew). Raises `VerificationError` with the verifier's reason
        code. It does NOT judge the certificates against a trust bundle: only
        the server (or `custody history verify`) decides trust."""
        now = _now() if now is None else now
        _check.check_entry_count(self.entries)
        _check.check_cert_count(len(self.certs))
        for i, der in enumerate(self.certs):
            _check.load_cert(der, Part.cert(i))
        by_x5t = _check.certs_by_x5t(self.certs)
        entries = [_check.check_entry(text, i, by_x5t) for i, text in enumerate(self.entries)]
        _check.check_chain(entries, now)


def _as_the_verifier_reads(payload: dict[str, Any], check: Callable[[dict[str, Any]], object], part: Part) -> bytes:
    """The payload's JSON, once the verifier's rules (§2 JSON, §3/§4 members,
    claims as RFC 8785) pass on those very bytes: a signer never produces what
    the verifier refuses."""
    try:
        data = canonical_json(payload)
    except (TypeError, ValueError) as e:  # NaN, non-JSON values, lone surrogates (UnicodeEncodeError)
        raise HistoryError(f"{part.what}: the payload is not JSON: {e}") from e
    try:
        check(_check.read_object(data, part, "payload"))
    except VerificationError as e:
        raise HistoryError(f"the verifier would refuse this ({e.reason}): {e.detail}") from e
    return data


def _within_caps(entries: tuple[str, ...], certs: tuple[bytes, ...], proof: str = "") -> None:
    """Refuses headers the verifier refuses for their size (§8)."""
    if len(certs) > MAX_CERTS:
        raise HistoryError(f"more than {MAX_CERTS} certificates in {CERTS_HEADER}")
    for name, size in (
        (HISTORY_HEADER, sum(map(len, entries)) + len(entries) - 1),
        (PROOF_HEADER, len(proof)),
        (CERTS_HEADER, sum(len(b64u(c)) for c in certs) + len(certs) - 1),
    ):
        if size > MAX_HEADER_BYTES:
            raise HistoryError(f"{name} would be {size} bytes, over {MAX_HEADER_BYTES}")


def prove(
    history: History,
    svid: Svid,
    *,
    audience: str,
    body: bytes,
    ttl: int = 60,
    now: int | None = None,
    jti: bytes | None = None,
    strict: bool = True,
) -> dict[str, str]:
    """The three request headers binding `history` to one request with this
    exact `body`: a fresh proof by `svid` (the caller, which must be the mTLS
    client certificate) for `audience`. The certificates header gains the
    caller's certificate (and intermediates) unless already there.

    With `strict` (default), refuses to prove a chain not handed to `svid`
    (`NotHolderError`); `strict=False` signs anyway, for testing refusals."""
    last = history.last
    if last is None:
        raise HistoryError("cannot prove an empty history")
    if not audience:
        raise HistoryError("audience must be a non-empty string")
    if not 0 <= ttl <= MAX_PROOF_TTL:
        raise HistoryError(f"proof ttl must be 0..{MAX_PROOF_TTL} seconds")
    iss = svid.spiffe_id
    if strict and last.nxt != iss:
        raise NotHolderError(f"{iss} is not the holder the last entry named ({last.nxt})")
    jti = os.urandom(16) if jti is None else jti
    if len(jti) < 16:
        raise HistoryError("jti needs at least 16 bytes")
    iat = _now() if now is None else now
    payload = {
        "v": 1, "iss": iss, "aud": audience, "wid": last.wid, "head": last.sha256,
        "len": len(history), "bdy": sha256_b64u(bytes(body)), "iat": iat, "exp": iat + ttl,
        "jti": b64u(jti),
    }
    payload_json = _as_the_verifier_reads(payload, _check.proof_fields, _check.PROOF)
    proof = sign_jws(svid, _header_json(svid, PROOF_TYP), payload_json)
    sent = history.with_certs(svid.chain_der)
    _within_caps(sent.entries, sent.certs, proof)
    out = sent.headers()
    out[PROOF_HEADER] = proof
    return out


def parse_proof(headers: Mapping[str, str]) -> Jws:
    """The decoded (unverified) `workflow-history-proof` of `headers`."""
    text = _header(headers, PROOF_HEADER)
    if text is None:
        raise HistoryError("no workflow-history-proof header")
    return Jws.parse(text)


_PRINTABLE = re.compile(r"[\x21-\x7e]*")
_HOST = (
    (HISTORY_HEADER, "history_malformed"),
    (PROOF_HEADER, "proof_malformed"),
    (CERTS_HEADER, "cert_malformed"),
)


def _host_step(headers: Mapping[str, Any]) -> list[str | None]:
    """Step 0 of §7, per header in order: given twice (names compared
    case-insensitively) is `header_repeated`, a byte outside 0x21–0x7E is
    malformed."""
    out: list[str | None] = []
    for name, malformed in _HOST:
        found = [v for k, v in headers.items() if isinstance(k, str) and k.lower() == name]
        if len(found) > 1:
            raise VerificationError("header_repeated", f"{name} given more than once")
        value = found[0] if found else None
        if value is not None and (not isinstance(value, str) or _PRINTABLE.fullmatch(value) is None):
            raise VerificationError(malformed, f"{name} has a byte outside printable ASCII")
        out.append(value)
    return out


def check_proof(
    headers: Mapping[str, Any],
    *,
    now: int | None = None,
    peer: str | None = None,
    audience: str | None = None,
    body: bytes | str | None = None,
) -> None:
    """Every check of docs/history-format.md §7 that needs no trust bundle, in
    the verifier's order, over the three headers: the headers themselves,
    certificates, each entry, the proof, the chain, then the proof's bindings.
    Raises `VerificationError` with the reason code the verifier gives.

    Give what the server will see to check the bindings too: `peer` (the
    SPIFFE ID of the mTLS client certificate; default the proof's own `iss`,
    so `proof_holder` still checks that the prover holds the chain),
    `audience` (`proof_audience`) and the exact `body` (`proof_body`; a
    string is UTF-8); `now` defaults to the current time. Not trust
    validation: see `History.check`."""
    history, proof, certs = _host_step(headers)
    if isinstance(body, str):
        body = body.encode("utf-8")
    _check.check_request(
        history, proof, certs, now=_now() if now is None else now, peer=peer, audience=audience,
        body=None if body is None else bytes(body),
    )


__all__ = [
    "CLOCK_SKEW", "MAX_CERTS", "MAX_CLAIMS_BYTES", "MAX_ENTRIES", "MAX_HEADER_BYTES", "MAX_PROOF_TTL",
    "CERTS_HEADER", "HISTORY_HEADER", "PROOF_HEADER", "Entry", "History", "HistoryError", "Jws",
    "NotHolderError", "VerificationError", "check_proof", "parse_proof", "prove", "sign_jws",
    "verify_signature",
]
