"""Every certificate the project issues or ships is strict DER, read by an
independent strict reader: Python's `cryptography` (rust-asn1, DER only), which
refuses, for one, basicConstraints with an explicit `cA FALSE`
(docs/history-format.md §6.1). Every extension is decoded, not only the
certificate's outer structure."""

from __future__ import annotations

import base64
import json
import re

import pytest
from cryptography import x509

from custody_testkit.cli import custody
from custody_testkit.envoy import REPO


def b64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def read_strictly(der: bytes) -> x509.Certificate:
    cert = x509.load_der_x509_certificate(der)
    for ext in cert.extensions:  # decodes each extension value
        assert ext.value is not None
    return cert


def shipped() -> list[tuple[str, bytes]]:
    out = []
    fixtures = json.loads((REPO / "history/testdata/fixtures.json").read_text())
    for name, ca in fixtures["cas"].items():
        out += [(f"fixtures cas.{name}", d) for d in _pem_to_der(ca["cert_pem"])]
    out += [(f"fixtures svids.{name}", b64u(s["cert"])) for name, s in fixtures["svids"].items()]
    vectors = json.loads((REPO / "history/testdata/vectors.json").read_text())
    for v in vectors["vectors"]:
        for i, cert in enumerate(v["workflow-history-certs"].split("~")):
            out.append((f"vector {v['name']} cert {i}", b64u(cert)))
    for pem in sorted((REPO / "core/testdata/peer").glob("*.pem")):
        out += [(f"core/testdata/peer/{pem.name}", d) for d in _pem_to_der(pem.read_text())]
    # The placeholder authorities inlined in the shipped manifests, as YAML
    # block text or as JSON strings with escaped newlines.
    for path in sorted(p for p in (REPO / "envoy").rglob("*") if p.is_file()):
        text = path.read_text().replace("\\n", "\n")
        for i, block in enumerate(re.findall(r"-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----", text)):
            pem = "\n".join(line.strip() for line in block.splitlines()) + "\n"
            out += [(f"{path.relative_to(REPO)} certificate {i}", d) for d in _pem_to_der(pem)]
    assert any(name.startswith("envoy/") for name, _ in out), "no certificate found in envoy/"
    return out


def _pem_to_der(pem: str) -> list[bytes]:
    from cryptography.hazmat.primitives.serialization import Encoding

    return [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(pem.encode())]


@pytest.mark.parametrize("name, der", shipped(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_shipped_certificate_is_strict_der(name, der):
    read_strictly(der)


def test_what_custody_ca_issues_is_strict_der(tmp_path):
    custody("ca", "init", "--trust-domain", "example.org", "--out", tmp_path / "ca")
    custody("ca", "issue", "--ca", tmp_path / "ca", "--id", "spiffe://example.org/ns/a/sa/b", "--out", tmp_path / "leaf")
    custody(
        "ca", "issue", "--ca", tmp_path / "ca", "--id", "spiffe://example.org/ns/tools/sa/server",
        "--dns", "localhost", "--out", tmp_path / "server",
    )
    ders = _pem_to_der((tmp_path / "ca" / "bundle.pem").read_text())
    for leaf in ("leaf", "server"):
        ders += _pem_to_der((tmp_path / leaf / "svid.pem").read_text())
    spiffe = json.loads((tmp_path / "ca" / "bundle.spiffe.json").read_text())
    ders += [base64.b64decode(k["x5c"][0]) for k in spiffe["keys"]]
    assert len(ders) >= 4
    for der in ders:
        cert = read_strictly(der)
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical


def test_the_strict_reader_refuses_an_explicit_ca_false():
    """The check can fail: the certificate of an earlier fixture set, whose
    basicConstraints carried `30 03 01 01 00`, is refused."""
    fixtures = json.loads((REPO / "history/testdata/fixtures.json").read_text())
    der = bytearray(b64u(fixtures["svids"]["fraud-agent"]["cert"]))
    # basicConstraints OID, critical TRUE, OCTET STRING { SEQUENCE {} } -> an explicit FALSE inside.
    marker = bytes.fromhex("0603551d130101ff04023000")
    at = der.find(marker)
    assert at > 0, "fixture leaf has basicConstraints 30 00"
    # Grow the OCTET STRING by three bytes (01 01 00) and every enclosing length with it.
    patched = der[:at] + bytes.fromhex("0603551d130101ff0405300301010" + "0") + der[at + len(marker):]
    patched = _fix_lengths(bytes(der), bytes(patched), at)
    with pytest.raises(ValueError):
        read_strictly(patched)


def _fix_lengths(original: bytes, patched: bytes, at: int) -> bytes:
    """Adds the 3 inserted bytes to every enclosing SEQUENCE length (the
    certificate, tbsCertificate, [3] extensions, SEQUENCE OF, the extension)."""
    out = bytearray(patched)
    pos = 0
    while pos < at:
        tag = out[pos]
        first = out[pos + 1]
        if first & 0x80:
            n = first & 0x7F
            length = int.from_bytes(out[pos + 2 : pos + 2 + n], "big")
            header = 2 + n
        else:
            n, length, header = 0, first, 2
        end = pos + header + length
        if tag in (0x30, 0xA3) and end > at:
            # This element encloses the change: rewrite its length (same width).
            new = length + 3
            if n:
                out[pos + 2 : pos + 2 + n] = new.to_bytes(n, "big")
            else:
                assert new < 0x80
                out[pos + 1] = new
            pos += header  # descend
        else:
            pos = end  # skip
    return bytes(out)
