"""`check_proof` and `History.check` beyond the vectors: each check of
docs/history-format.md §7 that needs no trust bundle refuses its attack with
the verifier's code, and where two fail the earlier one in §7 wins."""

from __future__ import annotations

import datetime
from typing import Any, Callable

import pytest
from conftest import NOW
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID

from custody_client import (
    History,
    Svid,
    SvidError,
    VerificationError,
    b64u,
    canonical_json,
    check_proof,
    sha256_b64u,
    sign_jws,
)
from custody_client.svid import P256_N
from test_vectors import svid as fixture_svid

SA = "spiffe://example.org/ns/payments/sa/"
ME = SA + "refund-agent"
AUD = SA + "refund-tool"
BODY = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
DROP = object()


@pytest.fixture(scope="module")
def me(fixtures: dict) -> Svid:
    return fixture_svid(fixtures, "refund-agent")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = {**base, **over}
    return {k: v for k, v in out.items() if v is not DROP}


def _json(x: Any) -> bytes:
    return x if isinstance(x, bytes) else canonical_json(x)


def header(svid: Svid, typ: str = "wfh+jwt", **over: Any) -> dict[str, Any]:
    return _merge({"alg": "ES256", "typ": typ, "x5t#S256": svid.x5t}, over)


def entry_payload(seq: int = 0, prev: str | None = None, **over: Any) -> dict[str, Any]:
    base = {"v": 1, "wid": "wf-1", "seq": seq, "prev": prev, "iss": ME, "nxt": ME, "step": "checked",
            "result": "ok", "iat": NOW - 100, "exp": NOW + 3600}
    return _merge(base, over)


def entry(svid: Svid, payload: Any = None, hdr: Any = None) -> str:
    return sign_jws(svid, _json(hdr if hdr is not None else header(svid)), _json(payload if payload is not None else entry_payload()))


def proof_payload(entries: list[str], **over: Any) -> dict[str, Any]:
    base = {"v": 1, "iss": ME, "aud": AUD, "wid": "wf-1", "head": sha256_b64u(entries[-1].encode()),
            "len": len(entries), "bdy": sha256_b64u(BODY), "iat": NOW - 5, "exp": NOW + 55, "jti": b64u(bytes(16))}
    return _merge(base, over)


def request(svid: Svid, entries: list[str] | None = None, proof: str | None = None, certs: list[bytes] | None = None,
            **proof_over: Any) -> dict[str, str]:
    entries = entries if entries is not None else [entry(svid)]
    if proof is None:
        proof = sign_jws(svid, _json(header(svid, "wfh-proof+jwt")), _json(proof_payload(entries, **proof_over)))
    certs = certs if certs is not None else [svid.leaf_der]
    return {"workflow-history": "~".join(entries), "workflow-history-proof": proof,
            "workflow-history-certs": "~".join(b64u(c) for c in certs)}


def verdict(headers: dict[str, Any], **context: Any) -> str:
    kw: dict[str, Any] = {"now": NOW, "peer": ME, "audience": AUD, "body": BODY, **context}
    try:
        check_proof(headers, **kw)
    except VerificationError as e:
        return e.reason
    return "ok"


def with_sig(jws: str, sig: bytes | str) -> str:
    return jws.rpartition(".")[0] + "." + (sig if isinstance(sig, str) else b64u(sig))


def make_cert(key: Any, *uris: str, extra: x509.ExtensionType | None = None, critical: bool = False) -> bytes:
    now = datetime.datetime(2026, 4, 1, tzinfo=datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test")])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(7).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=60))
         .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]), False))
    if extra is not None:
        b = b.add_extension(extra, critical)
    return b.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_a_well_formed_request_passes(me: Svid) -> None:
    assert verdict(request(me)) == "ok"
    # Without the optional context (peer, audience, body) too.
    check_proof(request(me), now=NOW)


# --- step 0 to 4: headers and certificates -------------------------------------


def test_host_step(me: Svid) -> None:
    good = request(me)
    h, p, c = good["workflow-history"], good["workflow-history-proof"], good["workflow-history-certs"]
    assert verdict({**good, "Workflow-History": h}) == "header_repeated"
    assert verdict({**good, "workflow-history": h + " "}) == "history_malformed"
    assert verdict({**good, "workflow-history-proof": p + "\x7f"}) == "proof_malformed"
    assert verdict({**good, "workflow-history-certs": c + "é"}) == "cert_malformed"
    assert verdict({**good, "workflow-history": b"x"}) == "history_malformed"
    # Per header, in order: history's fault wins over the proof's, whatever it is.
    assert verdict({**good, "workflow-history": h + "\n", "WORKFLOW-HISTORY-PROOF": p}) == "history_malformed"
    assert verdict({**good, "workflow-history-proof": p + "\t", "WORKFLOW-HISTORY-CERTS": c}) == "proof_malformed"


def test_header_caps_then_presence(me: Svid) -> None:
    good = request(me)
    big = "A" * 49153
    assert verdict({**good, "workflow-history-certs": big}) == "header_too_large"
    assert verdict({"workflow-history-proof": big}) == "header_too_large"  # step 1 before step 2
    assert verdict({**good, "workflow-history-certs": "A" * 49152}) == "cert_malformed"  # at the cap: read on
    assert verdict({}) == "history_missing"
    assert verdict({"workflow-history": good["workflow-history"]}) == "proof_missing"
    assert verdict({k: v for k, v in good.items() if k != "workflow-history-certs"}) == "certs_missing"


def test_counts(me: Svid) -> None:
    e = entry(me)
    assert verdict(request(me, entries=[e] * 33, certs=[me.leaf_der] * 33)) == "history_too_large"
    assert verdict(request(me, entries=[e] * 32, certs=[me.leaf_der] * 33)) == "certs_too_many"
    assert verdict(request(me, certs=[me.leaf_der] * 32)) == "ok"  # duplicates count, and are allowed


def test_certificates_are_read_in_order(me: Svid) -> None:
    good = request(me)
    c = good["workflow-history-certs"]
    assert verdict({**good, "workflow-history-certs": c + "~"}) == "cert_malformed"
    assert verdict({**good, "workflow-history-certs": c + "~AB=="}) == "base64_noncanonical"
    assert verdict({**good, "workflow-history-certs": b64u(b"not a certificate") + "~AB=="}) == "cert_malformed"
    # Another byte of the certificate: still DER, but no longer the one entry and proof name.
    assert verdict({**good, "workflow-history-certs": c[:-1] + ("B" if c[-1] == "A" else "A")}) == "cert_missing"


def test_non_der_certificates_are_refused(me: Svid) -> None:
    """basicConstraints with an explicit `cA FALSE` (`30 03 01 01 00`) is not DER: §6.1 refuses it."""
    key = ec.generate_private_key(ec.SECP256R1())
    explicit_false = x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS, bytes.fromhex("3003010100"))
    der = make_cert(key, SA + "legacy", extra=explicit_false, critical=True)
    assert verdict(request(me, certs=[me.leaf_der, der])) == "cert_malformed"
    with pytest.raises(SvidError, match="strict DER"):
        Svid(x509.load_der_x509_certificate(der), key)
    # The same certificate with the DER form (cA omitted) is read.
    assert verdict(request(me, certs=[me.leaf_der, make_cert(key, SA + "legacy", extra=x509.BasicConstraints(False, None), critical=True)])) == "ok"


# --- step 5: an entry ---------------------------------------------------------------


@pytest.mark.parametrize(
    "make, code",
    [
        (lambda me: "", "history_malformed"),
        (lambda me: entry(me).rpartition(".")[0], "history_malformed"),
        (lambda me: entry(me) + ".x", "history_malformed"),
        (lambda me: "AB==." + entry(me).split(".", 1)[1], "base64_noncanonical"),
        (lambda me: entry(me, hdr=b"not json"), "history_malformed"),
        (lambda me: entry(me, hdr=b'["ES256"]'), "history_malformed"),
        (lambda me: entry(me, hdr=b'{"alg":"ES256","alg":"ES256","typ":"wfh+jwt"}'), "duplicate_member"),
        (lambda me: entry(me, hdr=header(me, alg=DROP)), "signature_alg"),
        (lambda me: entry(me, hdr=header(me, alg="none", typ="JWT")), "signature_alg"),
        (lambda me: entry(me, hdr=header(me, "wfh-proof+jwt")), "header_typ"),
        (lambda me: entry(me, hdr=header(me, kid="k")), "header_members"),
        (lambda me: entry(me, hdr=header(me, **{"x5t#S256": DROP, "kid": "k"})), "header_members"),
        (lambda me: entry(me, hdr=header(me, **{"x5t#S256": 7})), "member_type"),
        (lambda me: entry(me, hdr=header(me, **{"x5t#S256": "AB=="})), "base64_noncanonical"),
        (lambda me: entry(me, hdr=header(me, jku="https://x"), payload=b"{"), "header_members"),  # header before payload
        (lambda me: entry(me, payload=b"[1]"), "history_malformed"),
        (lambda me: entry(me, payload=b'{"v":1,"v":1}'), "duplicate_member"),
        (lambda me: with_sig(entry(me, payload=b"{"), bytes(63)), "history_malformed"),  # payload before signature
        (lambda me: with_sig(entry(me), "AB=="), "base64_noncanonical"),
        (lambda me: with_sig(entry(me), bytes(63)), "signature_format"),
        (lambda me: with_sig(entry(me), bytes(65)), "signature_format"),
        (lambda me: with_sig(entry(me), bytes(32) + (1).to_bytes(32, "big")), "signature_range"),
        (lambda me: with_sig(entry(me), (1).to_bytes(32, "big") + P256_N.to_bytes(32, "big")), "signature_range"),
        (lambda me: with_sig(entry(me), (1).to_bytes(32, "big") + (P256_N // 2 + 1).to_bytes(32, "big")), "signature_high_s"),
        (lambda me: with_sig(entry(me, payload=entry_payload(v=DROP)), bytes(64)), "signature_range"),  # signature form before members
    ],
)
def test_entry_form(me: Svid, make: Callable[[Svid], str], code: str) -> None:
    assert verdict(request(me, entries=[make(me)])) == code


@pytest.mark.parametrize(
    "over, code",
    [
        ({"v": DROP}, "missing_member"),
        ({"v": "1"}, "member_type"),
        ({"v": True}, "member_type"),
        ({"v": 1.5}, "member_type"),
        ({"v": 2, "seq": DROP}, "version_unsupported"),
        ({"zzz": 1, "seq": DROP}, "unknown_member"),
        ({"wid": 7}, "member_type"),
        ({"seq": -1}, "member_type"),
        ({"seq": "0"}, "member_type"),
        ({"prev": 7}, "member_type"),
        ({"prev": "AB=="}, "base64_noncanonical"),
        ({"prev": b64u(bytes(33))}, "member_type"),
        ({"prev": DROP, "iss": 7}, "missing_member"),  # prev comes before iss
        ({"iss": DROP}, "missing_member"),
        ({"iss": 7}, "member_type"),
        ({"iss": "https://example.org/a"}, "member_spiffe_id"),
        ({"iss": "spiffe://Example.org/a"}, "member_spiffe_id"),
        ({"nxt": "spiffe://" + "a" * 256 + "/x"}, "member_spiffe_id"),
        ({"nxt": SA + "a/", "step": ""}, "member_spiffe_id"),  # nxt before step
        ({"step": ""}, "member_type"),
        ({"step": None}, "member_type"),
        ({"result": DROP}, "missing_member"),
        ({"result": 1}, "member_type"),
        ({"iat": -5}, "member_type"),
        ({"exp": DROP}, "missing_member"),
        ({"claims": []}, "member_type"),
        ({"claims": None}, "member_type"),
        ({"claims": {"a": [-9007199254740992]}}, "member_type"),
        ({"claims": {"a": 9007199254740991, "b": -9007199254740991}}, "ok"),
        ({"result": ""}, "ok"),
        ({"exp": 2**53 - 1}, "ok"),
    ],
)
def test_entry_members(me: Svid, over: dict[str, Any], code: str) -> None:
    assert verdict(request(me, entries=[entry(me, entry_payload(**over))])) == code


@pytest.mark.parametrize(
    "spelling, code",
    [(b"1", "ok"), (b"1.0", "member_type"), (b"1e0", "member_type"), (b"-1", "member_type"), (b"01", "history_malformed")],
)
def test_integer_spellings(me: Svid, spelling: bytes, code: str) -> None:
    text = canonical_json(entry_payload()).replace(b'"v":1', b'"v":' + spelling)
    assert verdict(request(me, entries=[entry(me, text)])) == code


def test_signer_checks(me: Svid, fixtures: dict) -> None:
    other = fixture_svid(fixtures, "approvals")
    assert verdict(request(me, entries=[entry(me, hdr=header(me, **{"x5t#S256": b64u(bytes(32))}))])) == "cert_missing"
    # The named certificate must be sent: approvals' is not.
    assert verdict(request(me, entries=[entry(other, entry_payload(iss=other.spiffe_id))])) == "cert_missing"
    two_uris = make_cert(ec.generate_private_key(ec.SECP256R1()), SA + "a", SA + "b")
    hdr = header(me, **{"x5t#S256": sha256_b64u(two_uris)})
    assert verdict(request(me, entries=[entry(me, hdr=hdr)], certs=[me.leaf_der, two_uris])) == "cert_spiffe_id"
    p384 = make_cert(ec.generate_private_key(ec.SECP384R1()), ME)
    hdr = header(me, **{"x5t#S256": sha256_b64u(p384)})
    assert verdict(request(me, entries=[entry(me, hdr=hdr)], certs=[me.leaf_der, p384])) == "cert_key_type"
    # Signed by approvals (whose certificate is sent) but claiming to be refund-agent.
    assert verdict(request(me, entries=[entry(other)], certs=[me.leaf_der, other.leaf_der])) == "signer_mismatch"
    # A valid-looking signature over other bytes.
    e = entry(me)
    forged = entry(me, entry_payload(result="denied")).rpartition(".")[0] + "." + e.rpartition(".")[2]
    assert verdict(request(me, entries=[forged])) == "signature_invalid"


# --- step 6: the proof -------------------------------------------------------------


def test_proof_form_and_members(me: Svid) -> None:
    es = [entry(me)]
    ph = _json(header(me, "wfh-proof+jwt"))
    assert verdict(request(me, proof="")) == "proof_malformed"
    assert verdict(request(me, proof=sign_jws(me, _json(header(me)), _json(proof_payload(es))))) == "header_typ"
    assert verdict(request(me, proof=sign_jws(me, ph, b'{"v":1,"v":1}'))) == "duplicate_member"
    for over, code in [
        ({"v": DROP}, "missing_member"),
        ({"nxt": ME}, "unknown_member"),
        ({"aud": ""}, "member_type"),
        ({"iss": "spiffe://example.org/a/../b"}, "member_spiffe_id"),
        ({"head": b64u(bytes(31))}, "member_type"),
        ({"len": "1"}, "member_type"),
        ({"bdy": "AB=="}, "base64_noncanonical"),
        ({"jti": DROP}, "missing_member"),
        ({"jti": 16}, "member_type"),
        ({"jti": "A" * 257, "iat": "x"}, "member_type"),
        ({"jti": "A" * 256}, "ok"),  # 192 bytes
        ({"jti": b64u(bytes(15))}, "proof_jti"),
        ({"jti": "é" * 129}, "member_type"),  # 258 bytes of UTF-8
    ]:
        assert verdict(request(me, proof=sign_jws(me, ph, _json(proof_payload(es, **over))))) == code, over


# --- step 7: the chain ---------------------------------------------------------------


def test_chain(me: Svid) -> None:
    e0 = entry(me)
    link = sha256_b64u(e0.encode())
    handed_on = entry(me, entry_payload(nxt=SA + "approvals"))
    cases = [
        ([entry(me, entry_payload(prev=b64u(bytes(32))))], "chain_prev"),
        ([e0, entry(me, entry_payload(seq=2, prev=link))], "chain_seq"),
        ([e0, entry(me, entry_payload(seq=1))], "chain_prev"),
        ([e0, entry(me, entry_payload(seq=1, prev=b64u(bytes(32))))], "chain_prev"),
        ([e0, entry(me, entry_payload(seq=1, prev=link, wid="wf-2"))], "chain_wid"),
        ([handed_on, entry(me, entry_payload(seq=1, prev=sha256_b64u(handed_on.encode())))], "chain_custody"),
        ([entry(me, entry_payload(exp=NOW - 31))], "entry_expired"),
        ([entry(me, entry_payload(exp=NOW - 30))], "ok"),
        ([e0, entry(me, entry_payload(seq=1, prev=link, iat=NOW - 100))], "ok"),  # equal iat is in order
    ]
    for entries, code in cases:
        assert verdict(request(me, entries=entries)) == code, code
        assert _history_check(me, entries) == code, code


def _history_check(me: Svid, entries: list[str]) -> str:
    try:
        History(tuple(entries), (me.leaf_der,)).check(now=NOW)
    except VerificationError as e:
        return e.reason
    return "ok"


def test_history_check_gives_the_entry_codes(me: Svid) -> None:
    assert _history_check(me, [entry(me, entry_payload(seq=-0.0))]) == "member_type"
    assert _history_check(me, [with_sig(entry(me), bytes(64))]) == "signature_range"
    assert _history_check(me, [entry(me)] * 33) == "history_too_large"
    with pytest.raises(VerificationError) as e:
        History((entry(me),), (me.leaf_der,) * 33).check(now=NOW)
    assert e.value.reason == "certs_too_many"


# --- step 8: the proof's bindings ---------------------------------------------------


def test_bindings(me: Svid) -> None:
    good = request(me)
    es = good["workflow-history"].split("~")
    assert verdict(good, peer=SA + "mallory") == "proof_signer"
    handed_on = [entry(me, entry_payload(nxt=SA + "approvals"))]
    assert verdict(request(me, entries=handed_on)) == "proof_holder"
    assert verdict(request(me, entries=handed_on), peer=None) == "proof_holder"  # the prover stands for the peer
    assert verdict(good, peer=None) == "ok"
    assert verdict(good, audience=SA + "other-tool") == "proof_audience"
    assert verdict(good, audience=None) == "ok"
    assert verdict(request(me, wid="wf-2")) == "proof_wid"
    assert verdict(request(me, len=2)) == "proof_len"
    assert verdict(request(me, head=b64u(bytes(32)))) == "proof_head"
    assert verdict(good, body=BODY + b" ") == "proof_body"
    assert verdict(good, body=BODY.decode()) == "ok"
    assert verdict(good, body=None) == "ok"
    assert verdict(request(me, iat=NOW + 31, exp=NOW + 60)) == "proof_not_yet_valid"
    assert verdict(request(me, iat=NOW + 30, exp=NOW + 60)) == "ok"
    assert verdict(request(me, iat=NOW - 100, exp=NOW - 31)) == "proof_expired"
    assert verdict(request(me, iat=NOW - 20, exp=NOW + 41)) == "proof_lifetime"
    assert verdict(request(me, iat=NOW - 20, exp=NOW + 40)) == "ok"
    assert verdict(request(me, iat=NOW, exp=NOW - 1)) == "proof_lifetime"  # no skew between signed times
    assert verdict(request(me, iat=NOW, exp=NOW)) == "ok"
    # In order: the first binding that fails decides.
    assert verdict(request(me, wid="wf-2", len=5), peer=SA + "mallory", audience="x") == "proof_signer"
    assert verdict(request(me, len=5, bdy=b64u(bytes(32)))) == "proof_len"
    assert es == request(me)["workflow-history"].split("~")


def test_proof_is_checked_before_the_chain(me: Svid) -> None:
    """§7: all entries, then the proof, then the chain."""
    e0 = entry(me)
    bad_chain = [e0, entry(me, entry_payload(seq=5))]
    assert verdict(request(me, entries=bad_chain, jti="short")) == "base64_noncanonical"
    assert verdict(request(me, entries=bad_chain)) == "chain_seq"
    # And each entry completely before the next.
    assert verdict(request(me, entries=[with_sig(e0, bytes(63)), entry(me, b"{")])) == "signature_format"

