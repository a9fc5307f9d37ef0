"""Signing: low-S always, chain rules like the CLI's, the SVID checks."""

from __future__ import annotations

import datetime
import os

import pytest
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from custody_client import (
    History,
    HistoryError,
    NotHolderError,
    Svid,
    SvidError,
    VerificationError,
    b64u_decode,
    canonical_json,
    check_proof,
    is_spiffe_id,
    prove,
    verify_signature,
)
from custody_client.svid import P256_N

SA = "spiffe://example.org/ns/payments/sa/"


def make_svid(spiffe_id: str, *uris: str, key: ec.EllipticCurvePrivateKey | None = None) -> Svid:
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in (spiffe_id, *uris)]), False
        )
        .sign(key, hashes.SHA256())
    )
    return Svid(cert, key)


@pytest.fixture(scope="module")
def agents() -> dict[str, Svid]:
    return {n: make_svid(SA + n) for n in ("fraud-agent", "approvals", "refund-agent", "mallory")}


def test_signatures_are_always_low_s(agents: dict[str, Svid]) -> None:
    s = agents["fraud-agent"]
    for i in range(300):
        sig = s.sign(os.urandom(8) + i.to_bytes(2, "big"))
        assert len(sig) == 64
        assert 1 <= int.from_bytes(sig[32:], "big") <= P256_N // 2
    # Entries and proofs too.
    h = History()
    for i in range(12):
        h = h.append(s, step=f"s{i}", next=s.spiffe_id)
    headers = prove(h, s, audience="aud", body=b"{}")
    for jws in [*h.entries, headers["workflow-history-proof"]]:
        sig = b64u_decode(jws.split(".")[2])
        assert int.from_bytes(sig[32:], "big") <= P256_N // 2
        assert verify_signature(jws, s.leaf)


def test_chain_is_built_and_checks(agents: dict[str, Svid]) -> None:
    f, a, r = agents["fraud-agent"], agents["approvals"], agents["refund-agent"]
    h = History().append(f, step="fraud_check_passed", next=a.spiffe_id, claims={"order": "o-1"})
    h = h.append(a, step="human_approval", next=r.spiffe_id)
    assert [e.seq for e in h] == [0, 1]
    assert h[1].prev == h[0].sha256 and h[0].prev is None
    assert h[0].wid == h[1].wid and len(b64u_decode(h.wid or "")) == 16
    assert h.holder == r.spiffe_id
    assert len(h.certs) == 2
    headers = prove(h, r, audience="spiffe://example.org/ns/payments/sa/refund-tool", body=b"x")
    assert len(headers["workflow-history-certs"].split("~")) == 3
    check_proof(headers)
    # Round trip through the headers.
    again = History.parse({k.upper(): v for k, v in headers.items()})
    assert again == History(h.entries, h.certs + (r.leaf_der,))
    # Certificates are deduplicated by DER.
    h2 = h.append(r, step="refund_issued", next=f.spiffe_id).append(f, step="done", next=r.spiffe_id)
    assert len(h2.certs) == 3


def test_only_the_holder_may_append_or_prove(agents: dict[str, Svid]) -> None:
    f, a, m = agents["fraud-agent"], agents["approvals"], agents["mallory"]
    h = History().append(f, step="fraud_check_passed", next=a.spiffe_id)
    with pytest.raises(NotHolderError):
        h.append(m, step="human_approval", next=m.spiffe_id)
    with pytest.raises(NotHolderError):
        prove(h, m, audience="aud", body=b"")
    # Non-strict proving is for testing refusals.
    prove(h, m, audience="aud", body=b"", strict=False)
    with pytest.raises(HistoryError):
        h.append(a, step="x", next=a.spiffe_id, wid="other")


def test_argument_checks(agents: dict[str, Svid]) -> None:
    f = agents["fraud-agent"]
    with pytest.raises(HistoryError):
        History().append(f, step="s", next="https://example.org/x")
    with pytest.raises(HistoryError):
        History().append(f, step="s", next=f.spiffe_id, claims={"x": "y" * 2100})
    h = History().append(f, step="s", next=f.spiffe_id)
    with pytest.raises(HistoryError):
        prove(h, f, audience="aud", body=b"", ttl=61)
    with pytest.raises(HistoryError):
        prove(h, f, audience="aud", body=b"", jti=b"short")
    with pytest.raises(HistoryError):
        prove(History(), f, audience="aud", body=b"")


def test_tampering_is_detected_by_the_self_check(agents: dict[str, Svid]) -> None:
    f, a = agents["fraud-agent"], agents["approvals"]
    h = History().append(f, step="fraud_check_passed", next=a.spiffe_id, claims={"amount": 1})
    head, payload, sig = h.entries[0].split(".")
    forged = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    bad = History((f"{head}.{forged}.{sig}",), h.certs)
    with pytest.raises((VerificationError, HistoryError)):
        bad.check()


def test_svid_checks() -> None:
    with pytest.raises(SvidError):
        make_svid(SA + "a", SA + "b")  # two URI SANs
    with pytest.raises(SvidError):
        make_svid("spiffe://example.org")  # no path
    other = ec.generate_private_key(ec.SECP256R1())
    good = make_svid(SA + "a")
    with pytest.raises(SvidError):
        Svid(good.leaf, other)  # key does not fit
    with pytest.raises(SvidError):
        Svid(good.leaf, ec.generate_private_key(ec.SECP384R1()))  # type: ignore[arg-type]
    again = Svid.from_pem(good.cert_chain_pem(), good.key_pem())
    assert again.spiffe_id == SA + "a" and again.x5t == good.x5t


@pytest.mark.parametrize(
    "value, ok",
    [
        ("spiffe://example.org/ns/a", True),
        ("spiffe://example.org", True),
        ("spiffe://Example.org/a", False),
        ("spiffe://example.org/a/", False),
        ("spiffe://example.org/./a", False),
        ("spiffe://example.org/a?b", False),
        ("SPIFFE://example.org/a", False),
        ("spiffe://example.org:8080/a", False),
    ],
)
def test_spiffe_ids(value: str, ok: bool) -> None:
    assert is_spiffe_id(value) is ok


def test_from_x509_svid_duck_typed() -> None:
    """The shape of py-spiffe's `X509Svid` (`cert_chain`, `private_key`)."""
    good = make_svid(SA + "a")

    class Fetched:
        cert_chain = [good.leaf]
        private_key = good.private_key

    assert Svid.from_x509_svid(Fetched()).x5t == good.x5t


# --- signers refuse what the verifier refuses (measured as the verifier measures) ----


def nested(arrays: int) -> object:
    value: object = 0
    for _ in range(arrays):
        value = [value]
    return value


def test_claims_are_measured_as_rfc8785(agents: dict[str, Svid]) -> None:
    """Python writes 0.000001 as `1e-06` (5 bytes), RFC 8785 as `0.000001` (8):
    the cap applies to the RFC 8785 form, as the verifier measures it."""
    f = agents["fraud-agent"]
    claims = {"f": [0.000001] * 300}
    assert len(canonical_json(claims)) <= 2048 < len(rfc8785.dumps(claims))
    with pytest.raises(HistoryError, match="claims_too_large"):
        History().append(f, step="s", next=f.spiffe_id, claims=claims)
    # And the other way: `100.0` is 5 bytes written, 3 as RFC 8785, so this fits.
    roomy = {"f": [100.0] * 500}
    assert len(canonical_json(roomy)) > 2048 >= len(rfc8785.dumps(roomy))
    h = History().append(f, step="s", next=f.spiffe_id, claims=roomy)
    h.check()


@pytest.mark.parametrize(
    "claims, reason",
    [
        ({"n": 2**53}, "member_type"),
        ({"n": [-(2**53)]}, "member_type"),
        ({"n": 1e300}, "member_type"),
        ({"d": nested(31)}, "history_malformed"),  # payload, claims, 31 arrays: 33 levels
    ],
)
def test_claims_the_verifier_refuses_are_not_signed(agents: dict[str, Svid], claims: dict, reason: str) -> None:
    f = agents["fraud-agent"]
    with pytest.raises(HistoryError, match=reason):
        History().append(f, step="s", next=f.spiffe_id, claims=claims)


def test_claims_at_the_limits_are_signed(agents: dict[str, Svid]) -> None:
    f = agents["fraud-agent"]
    deepest = {"d": nested(30)}  # payload, claims, 30 arrays: 32 levels
    h = History().append(f, step="s", next=f.spiffe_id, claims=deepest)
    h = h.append(f, step="s", next=f.spiffe_id, claims={"n": 2**53 - 1, "m": -(2**53 - 1)})
    h.check()


@pytest.mark.parametrize("claims", [{"x": float("nan")}, {"x": float("inf")}, {"x": "\ud800"}, {"x": object()}])
def test_claims_that_are_not_json_are_not_signed(agents: dict[str, Svid], claims: dict) -> None:
    f = agents["fraud-agent"]
    with pytest.raises(HistoryError, match="not JSON"):
        History().append(f, step="s", next=f.spiffe_id, claims=claims)


def test_times_the_verifier_refuses_are_not_signed(agents: dict[str, Svid]) -> None:
    f = agents["fraud-agent"]
    for kw in ({"iat": 1.5}, {"iat": -1}, {"iat": 2**53 - 10, "ttl": 100}):
        with pytest.raises(HistoryError, match="member_type"):
            History().append(f, step="s", next=f.spiffe_id, **kw)
    h = History().append(f, step="s", next=f.spiffe_id)
    with pytest.raises(HistoryError, match="member_type"):
        prove(h, f, audience="aud", body=b"", jti=bytes(193))  # 258 characters
    prove(h, f, audience="aud", body=b"", jti=bytes(192))  # 256 characters


def test_headers_over_the_caps_are_not_produced(agents: dict[str, Svid]) -> None:
    """32 entries of 2 KiB claims would be over 48 KiB: `append` stops before."""
    f = agents["fraud-agent"]
    h = History()
    with pytest.raises(HistoryError, match="workflow-history would be"):
        for i in range(32):
            h = h.append(f, step=f"s{i}", next=f.spiffe_id, claims={"pad": "x" * 2000})
    assert 10 < len(h) < 32
    assert len(h.headers()["workflow-history"]) <= 49152
    h.check()
    with pytest.raises(HistoryError, match="workflow-history-proof would be"):
        prove(History().append(f, step="s", next=f.spiffe_id), f, audience="a" * 49152, body=b"")
