"""Signed workflow history (docs/history-format.md): entries, appending,
per-request proofs, and a signature/link check for self-tests."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from custody_client._codec import (
    EncodingError,
    b64u,
    b64u_decode,
    canonical_json,
    is_spiffe_id,
    sha256_b64u,
    strict_json_object,
)
from custody_client.call import CALL_CLAIM, CallError, call_claim
from custody_client.svid import P256_N, Svid, SvidError, spiffe_id_of

HISTORY_HEADER = "workflow-history"
PROOF_HEADER = "workflow-history-proof"
CERTS_HEADER = "workflow-history-certs"

ALG = "ES256"
ENTRY_TYP = "wfh+jwt"
PROOF_TYP = "wfh-proof+jwt"
X5T = "x5t#S256"

MAX_ENTRIES = 32
MAX_CLAIMS_BYTES = 2048
MAX_PROOF_TTL = 60
CLOCK_SKEW = 30


class HistoryError(ValueError):
    """A history cannot be read, appended to or proven."""


class NotHolderError(HistoryError):
    """The signer is not the holder the last entry named (`nxt`)."""


class VerificationError(HistoryError):
    """A check of `History.check` failed; `reason` is the §7 reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _now() -> int:
    return int(time.time())


def _header_json(svid: Svid, typ: str) -> bytes:
    return canonical_json({"alg": ALG, "typ": typ, X5T: svid.x5t})


def sign_jws(svid: Svid, header_json: bytes, payload_json: bytes) -> str:
    """A compact JWS of these exact header and payload bytes, ES256, low-S."""
    signing_input = f"{b64u(header_json)}.{b64u(payload_json)}"
    return f"{signing_input}.{b64u(svid.sign(signing_input.encode('ascii')))}"


def verify_signature(jws: str, cert: x509.Certificate | bytes) -> bool:
    """True when `jws` carries a valid ES256 signature (64-byte `r || s`,
    r and s in range, low-S) by the P-256 key of `cert` (object or DER).
    Checks only the signature, not the certificate."""
    if isinstance(cert, bytes):
        cert = x509.load_der_x509_certificate(cert)
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return False
    signing_input, dot, sig_text = jws.rpartition(".")
    if not dot:
        return False
    try:
        sig = b64u_decode(sig_text)
    except EncodingError:
        return False
    if len(sig) != 64:
        return False
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if not (1 <= r < P256_N and 1 <= s <= P256_N // 2):
        return False
    try:
        key.verify(encode_dss_signature(r, s), signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, UnicodeEncodeError):
        return False
    return True


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
            claims = dict(claims)
            if len(canonical_json(claims)) > MAX_CLAIMS_BYTES:
                raise HistoryError(f"claims over {MAX_CLAIMS_BYTES} bytes")
            payload["claims"] = claims
        entry = sign_jws(svid, _header_json(svid, ENTRY_TYP), canonical_json(payload))
        return History(self.entries + (entry,), self.certs).with_certs(svid.chain_der)

    # --- checking (not a verifier: no X.509 path validation) -----------------

    def check(self, *, now: int | None = None) -> None:
        """Checks what a holder can check without the trust bundle: every
        entry's shape, signature (by the certificate its `x5t#S256` names, which
        must be sent), `iss` = that certificate's SPIFFE ID, and the chain links
        (`seq`, `prev`, `wid`, custody, order, lifetimes). Raises
        `VerificationError` with the §7 reason code. It does NOT validate the
        certificates against a trust bundle: only the server (or
        `custody history verify`) decides trust."""
        now = _now() if now is None else now
        by_x5t = {sha256_b64u(d): d for d in self.certs}
        parsed: list[Entry] = []
        for i, text in enumerate(self.entries):
            try:
                e = Entry.parse(text)
            except HistoryError as err:
                raise VerificationError("history_malformed", f"entry {i}: {err}") from err
            _check_jws(e, ENTRY_TYP, by_x5t, f"entry {i}")
            parsed.append(e)
        for i, e in enumerate(parsed):
            if e.seq != i:
                raise VerificationError("chain_seq", f"entry {i} has seq {e.seq}")
            want_prev = None if i == 0 else parsed[i - 1].sha256
            if e.prev != want_prev:
                raise VerificationError("chain_prev", f"entry {i} does not link to entry {i - 1}")
            if i > 0:
                if e.wid != parsed[0].wid:
                    raise VerificationError("chain_wid", f"entry {i} is from another workflow")
                if e.iss != parsed[i - 1].nxt:
                    raise VerificationError("chain_custody", f"entry {i} is not by the holder entry {i - 1} named")
                if e.iat < parsed[i - 1].iat:
                    raise VerificationError("chain_order", f"entry {i} is older than entry {i - 1}")
            if e.exp < e.iat:
                raise VerificationError("entry_lifetime", f"entry {i} expires before it is issued")
            if e.iat > now + CLOCK_SKEW:
                raise VerificationError("entry_future", f"entry {i} is issued in the future")
            if e.exp < now - CLOCK_SKEW:
                raise VerificationError("entry_expired", f"entry {i} has expired")


def _check_jws(j: Jws, typ: str, by_x5t: Mapping[str, bytes], what: str) -> None:
    if j.header.get("alg") != ALG:
        raise VerificationError("signature_alg", f"{what}: alg is not ES256")
    if j.header.get("typ") != typ:
        raise VerificationError("header_typ", f"{what}: typ is not {typ}")
    if set(j.header) != {"alg", "typ", X5T}:
        raise VerificationError("header_members", f"{what}: header members are not alg, typ, x5t#S256")
    if len(j.signature) != 64:
        raise VerificationError("signature_format", f"{what}: signature is not 64 bytes")
    s = int.from_bytes(j.signature[32:], "big")
    if s > P256_N // 2:
        raise VerificationError("signature_high_s", f"{what}: high-S signature")
    der = by_x5t.get(j.x5t)
    if der is None:
        raise VerificationError("cert_missing", f"{what}: no certificate with its x5t#S256")
    cert = x509.load_der_x509_certificate(der)
    try:
        signer = spiffe_id_of(cert)
    except SvidError as err:
        raise VerificationError("cert_spiffe_id", f"{what}: {err}") from err
    if j.payload.get("iss") != signer:
        raise VerificationError("signer_mismatch", f"{what}: iss is not the certificate's SPIFFE ID")
    if not verify_signature(j.compact, cert):
        raise VerificationError("signature_invalid", f"{what}: the signature does not verify")


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
    proof = sign_jws(svid, _header_json(svid, PROOF_TYP), canonical_json(payload))
    out = history.with_certs(svid.chain_der).headers()
    out[PROOF_HEADER] = proof
    return out


def parse_proof(headers: Mapping[str, str]) -> Jws:
    """The decoded (unverified) `workflow-history-proof` of `headers`."""
    text = _header(headers, PROOF_HEADER)
    if text is None:
        raise HistoryError("no workflow-history-proof header")
    return Jws.parse(text)


def check_proof(headers: Mapping[str, str], *, now: int | None = None) -> None:
    """`History.check` plus the proof's shape, signature and links to the
    chain (`wid`, `len`, `head`). Not trust validation, see `History.check`."""
    history = History.parse(headers)
    history.check(now=now)
    try:
        proof = parse_proof(headers)
    except HistoryError as err:
        raise VerificationError("proof_malformed", str(err)) from err
    _check_jws(proof, PROOF_TYP, {sha256_b64u(d): d for d in history.certs}, "proof")
    last = history.last
    assert last is not None
    if proof.payload.get("wid") != last.wid:
        raise VerificationError("proof_wid", "the proof's wid is not the chain's")
    if proof.payload.get("len") != len(history):
        raise VerificationError("proof_len", "the proof's len is not the number of entries")
    if proof.payload.get("head") != last.sha256:
        raise VerificationError("proof_head", "the proof's head is not the last entry's hash")


__all__ = [
    "CERTS_HEADER", "HISTORY_HEADER", "PROOF_HEADER", "Entry", "History", "HistoryError", "Jws",
    "NotHolderError", "VerificationError", "check_proof", "parse_proof", "prove", "sign_jws",
    "verify_signature",
]
