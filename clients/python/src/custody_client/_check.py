"""The verifier's checks a holder can run without the trust bundle
(docs/history-format.md §7), in the verifier's order, with its reason codes.

Of step 5.8 (the signer certificate) only what needs no bundle runs: a sent
certificate with the `x5t#S256` (`cert_missing`), its one URI SAN a SPIFFE ID
with a path (`cert_spiffe_id`), a P-256 key (`cert_key_type`). The other leaf
rules of §6.2, the trust domain, the path and the certificate times are the
server's (or `custody history verify`'s). So on every input decided before a
certificate is judged against a bundle, these checks give the verifier's
verdict and code (history/testdata/vectors.json, `"holder_check": true`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from custody_client import _jcs, _json
from custody_client._codec import EncodingError, b64u_decode, is_spiffe_id, sha256, sha256_b64u
from custody_client._errors import VerificationError
from custody_client.svid import P256_N, SvidError, spiffe_id_of

# The limits of §8 (history/testdata/vectors.json "limits"; the tests compare).
MAX_HEADER_BYTES = 49152
MAX_ENTRIES = 32
MAX_CERTS = 32
MAX_CLAIMS_BYTES = 2048
CLOCK_SKEW = 30
MAX_PROOF_TTL = 60
MAX_JTI_CHARS = 256
MAX_SAFE_INTEGER = _jcs.MAX_SAFE_INTEGER
MAX_JSON_DEPTH = _json.MAX_JSON_DEPTH

ALG = "ES256"
ENTRY_TYP = "wfh+jwt"
PROOF_TYP = "wfh-proof+jwt"
X5T = "x5t#S256"
ENTRY_MEMBERS = ("v", "wid", "seq", "prev", "iss", "nxt", "step", "result", "iat", "exp", "claims")
PROOF_MEMBERS = ("v", "iss", "aud", "wid", "head", "len", "bdy", "iat", "exp", "jti")


@dataclass(frozen=True)
class Part:
    """What is checked: an entry, the proof, or a certificate."""

    what: str
    malformed: str
    typ: str = ""

    @staticmethod
    def entry(i: int) -> "Part":
        return Part(f"entry {i}", "history_malformed", ENTRY_TYP)

    @staticmethod
    def cert(i: int) -> "Part":
        return Part(f"certificate {i}", "cert_malformed")


PROOF = Part("proof", "proof_malformed", PROOF_TYP)


def refuse(reason: str, part: Part | None, detail: str) -> VerificationError:
    return VerificationError(reason, f"{part.what}: {detail}" if part else detail)


def _b64(text: str, part: Part, what: str) -> bytes:
    try:
        return b64u_decode(text)
    except EncodingError as e:
        raise refuse("base64_noncanonical", part, f"{what}: {e}") from e


def read_object(data: bytes, part: Part, what: str) -> dict[str, Any]:
    """Strict JSON that must be an object: malformed, or `duplicate_member`."""
    try:
        value = _json.parse(data)
    except _json.DuplicateMember as e:
        raise refuse("duplicate_member", part, f"{what}: {e}") from e
    except _json.JsonError as e:
        raise refuse(part.malformed, part, f"{what}: {e}") from e
    if not isinstance(value, dict):
        raise refuse(part.malformed, part, f"{what} is not a JSON object")
    return value


def _hash32(value: object, part: Part, member: str) -> bytes:
    if not isinstance(value, str):
        raise refuse("member_type", part, f"{member} is not a string")
    raw = _b64(value, part, member)
    if len(raw) != 32:
        raise refuse("member_type", part, f"{member} is not 32 bytes")
    return raw


# --- steps 1 to 4: headers and certificates ----------------------------------


def check_caps(history: str | None, proof: str | None, certs: str | None) -> None:
    """Steps 1 and 2: each header at most 48 KiB, then all three present."""
    for name, value in (("workflow-history", history), ("workflow-history-proof", proof), ("workflow-history-certs", certs)):
        if value is not None and len(value) > MAX_HEADER_BYTES:
            raise refuse("header_too_large", None, f"{name} is over {MAX_HEADER_BYTES} bytes")
    if history is None:
        raise refuse("history_missing", None, "no workflow-history header")
    if proof is None:
        raise refuse("proof_missing", None, "no workflow-history-proof header")
    if certs is None:
        raise refuse("certs_missing", None, "no workflow-history-certs header")


def check_entry_count(entries: Sequence[str]) -> None:
    """Step 3."""
    if len(entries) > MAX_ENTRIES:
        raise refuse("history_too_large", None, f"{len(entries)} entries, at most {MAX_ENTRIES}")


def check_cert_count(n: int) -> None:
    if n > MAX_CERTS:
        raise refuse("certs_too_many", None, f"{n} certificates, at most {MAX_CERTS}")


def decode_certs(texts: Sequence[str]) -> list[bytes]:
    """Step 4 over the `workflow-history-certs` parts: the count, then each
    one non-empty, canonical base64url, DER."""
    check_cert_count(len(texts))
    out = []
    for i, text in enumerate(texts):
        part = Part.cert(i)
        if not text:
            raise refuse("cert_malformed", part, "empty")
        out.append(_b64(text, part, "certificate"))
        load_cert(out[-1], part)
    return out


def load_cert(der: bytes, part: Part) -> x509.Certificate:
    """Strict DER as far as `cryptography` reads it: the certificate and
    every extension (an explicit DEFAULT value, a repeated extension, … raise)."""
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.extensions  # noqa: B018 - parses every extension now
    except ValueError as e:
        raise refuse("cert_malformed", part, str(e)) from e
    return cert


def certs_by_x5t(ders: Iterable[bytes]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for der in ders:
        out.setdefault(sha256_b64u(der), der)
    return out


# --- step 5.1 to 5.5: a compact JWS ------------------------------------------


@dataclass(frozen=True)
class Signed:
    """A compact JWS whose form passed steps 5.1 to 5.5 (not yet verified)."""

    compact: str
    x5t: str
    payload: dict[str, Any]


def parse_jws(compact: str, part: Part) -> Signed:
    if not compact:
        raise refuse(part.malformed, part, "empty")
    segments = compact.split(".")
    if len(segments) != 3:
        raise refuse(part.malformed, part, "not three dot-separated segments")
    h, p, s = segments
    header = read_object(_b64(h, part, "JWS header"), part, "JWS header")
    if header.get("alg") != ALG:
        raise refuse("signature_alg", part, f"alg is not {ALG}")
    if header.get("typ") != part.typ:
        raise refuse("header_typ", part, f"typ is not {part.typ}")
    if len(header) != 3 or X5T not in header:
        raise refuse("header_members", part, f"the JWS header is not exactly alg, typ, {X5T}")
    x5t = header[X5T]
    _hash32(x5t, part, X5T)
    payload = read_object(_b64(p, part, "payload"), part, "payload")
    sig = _b64(s, part, "signature")
    if len(sig) != 64:
        raise refuse("signature_format", part, f"signature of {len(sig)} bytes, not 64")
    r, s_ = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if not (0 < r < P256_N and 0 < s_ < P256_N):
        raise refuse("signature_range", part, "r or s is 0 or not below n")
    if s_ > P256_N // 2:
        raise refuse("signature_high_s", part, "high-S signature")
    return Signed(compact, x5t, payload)


# --- step 5.6 and 5.7: payload members ---------------------------------------


class _Fields:
    """Reads members one at a time, each completely before the next."""

    def __init__(self, payload: dict[str, Any], part: Part, known: tuple[str, ...]) -> None:
        self.payload, self.part = payload, part
        if self.int("v") != 1:
            raise refuse("version_unsupported", part, "v is not 1")
        unknown = sorted(set(payload) - set(known))
        if unknown:
            raise refuse("unknown_member", part, f"unknown member {unknown[0]!r}")

    def get(self, member: str) -> Any:
        if member not in self.payload:
            raise refuse("missing_member", self.part, f"no {member}")
        return self.payload[member]

    def int(self, member: str) -> int:
        """An integer written without sign, fraction or exponent, at most
        2^53 − 1 (`_json` gives `int` only for such spellings, and `-0` is not one)."""
        v = self.get(member)
        if type(v) is not int or not 0 <= v <= MAX_SAFE_INTEGER:
            raise refuse("member_type", self.part, f"{member} is not an integer in 0..2^53-1")
        return v

    def string(self, member: str, *, nonempty: bool = False) -> str:
        v = self.get(member)
        if not isinstance(v, str) or (nonempty and not v):
            raise refuse("member_type", self.part, f"{member} is not a {'non-empty ' if nonempty else ''}string")
        return v

    def spiffe(self, member: str) -> str:
        v = self.string(member)
        if not is_spiffe_id(v):
            raise refuse("member_spiffe_id", self.part, f"{member} is not a SPIFFE ID")
        return v

    def hash(self, member: str) -> bytes:
        return _hash32(self.get(member), self.part, member)


@dataclass(frozen=True)
class EntryFields:
    wid: str
    seq: int
    prev: bytes | None
    iss: str
    nxt: str
    step: str
    result: str
    iat: int
    exp: int
    claims: dict[str, Any]


def entry_fields(payload: dict[str, Any], part: Part) -> EntryFields:
    """Steps 5.6 and 5.7 of an entry."""
    f = _Fields(payload, part, ENTRY_MEMBERS)
    wid = f.string("wid", nonempty=True)
    seq = f.int("seq")
    prev = None if f.get("prev") is None else f.hash("prev")
    iss, nxt = f.spiffe("iss"), f.spiffe("nxt")
    step, result = f.string("step", nonempty=True), f.string("result")
    iat, exp = f.int("iat"), f.int("exp")
    claims = payload.get("claims", {})
    if not isinstance(claims, dict):
        raise refuse("member_type", part, "claims is not an object")
    try:
        _jcs.check_safe_numbers(claims)
        size = len(_jcs.canonical(claims))
    except _jcs.JcsError as e:
        raise refuse("member_type", part, f"claims: {e}") from e
    if size > MAX_CLAIMS_BYTES:
        raise refuse("claims_too_large", part, f"claims of {size} bytes as RFC 8785, at most {MAX_CLAIMS_BYTES}")
    return EntryFields(wid, seq, prev, iss, nxt, step, result, iat, exp, claims)


@dataclass(frozen=True)
class ProofFields:
    iss: str
    aud: str
    wid: str
    head: bytes
    len: int
    bdy: bytes
    iat: int
    exp: int
    jti: str


def proof_fields(payload: dict[str, Any]) -> ProofFields:
    """Step 6's members, in the order `v`, unknown, `iss` … `jti`."""
    part = PROOF
    f = _Fields(payload, part, PROOF_MEMBERS)
    iss = f.spiffe("iss")
    aud, wid = f.string("aud", nonempty=True), f.string("wid", nonempty=True)
    head, length, bdy = f.hash("head"), f.int("len"), f.hash("bdy")
    iat, exp = f.int("iat"), f.int("exp")
    jti = f.string("jti")
    # Counted in UTF-8 bytes, as the Rust verifier counts (the same for the ASCII a jti must be).
    if len(jti.encode("utf-8", "surrogatepass")) > MAX_JTI_CHARS:
        raise refuse("member_type", part, f"jti over {MAX_JTI_CHARS} characters")
    if len(_b64(jti, part, "jti")) < 16:
        raise refuse("proof_jti", part, "jti under 16 bytes")
    return ProofFields(iss, aud, wid, head, length, bdy, iat, exp, jti)


# --- steps 5.8 to 5.10: the signer (the part that needs no trust bundle) -----


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


def check_signer(jws: Signed, iss: str, certs: dict[str, bytes], part: Part) -> None:
    der = certs.get(jws.x5t)
    if der is None:
        raise refuse("cert_missing", part, f"no certificate with its {X5T} was sent")
    cert = x509.load_der_x509_certificate(der)  # read in step 4
    try:
        signer = spiffe_id_of(cert)
    except SvidError as e:
        raise refuse("cert_spiffe_id", part, str(e)) from e
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise refuse("cert_key_type", part, "the signer's key is not ECDSA P-256")
    if iss != signer:
        raise refuse("signer_mismatch", part, f"iss is not the certificate's SPIFFE ID {signer}")
    if not verify_signature(jws.compact, cert):
        raise refuse("signature_invalid", part, "the signature does not verify")


def check_entry(compact: str, i: int, certs: dict[str, bytes]) -> tuple[EntryFields, bytes]:
    """Step 5 for entry `i`: its fields and its hash."""
    part = Part.entry(i)
    jws = parse_jws(compact, part)
    fields = entry_fields(jws.payload, part)
    check_signer(jws, fields.iss, certs, part)
    return fields, sha256(compact.encode("ascii"))


def check_proof_jws(compact: str, certs: dict[str, bytes]) -> ProofFields:
    """Step 6."""
    jws = parse_jws(compact, PROOF)
    fields = proof_fields(jws.payload)
    check_signer(jws, fields.iss, certs, PROOF)
    return fields


# --- steps 7 and 8 ------------------------------------------------------------


def check_chain(entries: Sequence[tuple[EntryFields, bytes]], now: int) -> None:
    """Step 7: links, custody and order (no skew between signed times), then
    each entry's times against now (with skew)."""
    for i, (e, _) in enumerate(entries):
        part = Part.entry(i)
        if e.seq != i:
            raise refuse("chain_seq", part, f"seq is {e.seq}")
        if e.prev != (None if i == 0 else entries[i - 1][1]):
            raise refuse("chain_prev", part, "prev does not link to the previous entry")
        if i > 0:
            before = entries[i - 1][0]
            if e.wid != entries[0][0].wid:
                raise refuse("chain_wid", part, "from another workflow")
            if e.iss != before.nxt:
                raise refuse("chain_custody", part, "not signed by the holder the previous entry named")
            if e.iat < before.iat:
                raise refuse("chain_order", part, "issued before the previous entry")
        if e.exp < e.iat:
            raise refuse("entry_lifetime", part, "exp is before iat")
        if e.iat > now + CLOCK_SKEW:
            raise refuse("entry_future", part, "issued in the future")
        if e.exp < now - CLOCK_SKEW:
            raise refuse("entry_expired", part, "expired")


def check_bindings(
    p: ProofFields,
    entries: Sequence[tuple[EntryFields, bytes]],
    *,
    now: int,
    peer: str | None,
    audience: str | None,
    body: bytes | None,
) -> None:
    """Step 8. Without `peer` the proof's own `iss` stands for the mTLS peer
    (so `proof_holder` still checks the prover holds the chain); without
    `audience` or `body` their checks are skipped."""
    last, last_hash = entries[-1]
    if peer is not None and p.iss != peer:
        raise refuse("proof_signer", PROOF, "iss is not the mTLS peer")
    if (p.iss if peer is None else peer) != last.nxt:
        raise refuse("proof_holder", PROOF, "the caller is not the holder the last entry named")
    if audience is not None and p.aud != audience:
        raise refuse("proof_audience", PROOF, "aud is not this server's audience")
    if p.wid != entries[0][0].wid:
        raise refuse("proof_wid", PROOF, "wid is not the chain's")
    if p.len != len(entries):
        raise refuse("proof_len", PROOF, "len is not the number of entries")
    if p.head != last_hash:
        raise refuse("proof_head", PROOF, "head is not the last entry's hash")
    if body is not None and p.bdy != sha256(body):
        raise refuse("proof_body", PROOF, "bdy is not the body's hash")
    if p.iat > now + CLOCK_SKEW:
        raise refuse("proof_not_yet_valid", PROOF, "issued in the future")
    if p.exp < now - CLOCK_SKEW:
        raise refuse("proof_expired", PROOF, "expired")
    if p.exp < p.iat or p.exp - p.iat > MAX_PROOF_TTL:
        raise refuse("proof_lifetime", PROOF, f"lifetime is not 0..{MAX_PROOF_TTL} s")


def check_request(
    history: str | None,
    proof: str | None,
    certs: str | None,
    *,
    now: int,
    peer: str | None = None,
    audience: str | None = None,
    body: bytes | None = None,
) -> None:
    """Steps 1 to 8 over the three header values (the host's step 0 is the caller's)."""
    check_caps(history, proof, certs)
    assert history is not None and proof is not None and certs is not None
    raw = history.split("~")
    check_entry_count(raw)
    by_x5t = certs_by_x5t(decode_certs(certs.split("~")))
    entries = [check_entry(text, i, by_x5t) for i, text in enumerate(raw)]
    p = check_proof_jws(proof, by_x5t)
    check_chain(entries, now)
    check_bindings(p, entries, now=now, peer=peer, audience=audience, body=body)
