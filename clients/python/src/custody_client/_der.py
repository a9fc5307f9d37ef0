"""A minimal DER reader for one purpose: the URI SANs of a certificate whose
extensions `cryptography` refuses to parse. Some issuers (including rcgen,
which `custody ca issue` uses) encode basicConstraints `cA FALSE` explicitly,
which DER forbids (a DEFAULT value must be omitted); `cryptography` then
raises on *any* extension access, while OpenSSL and the Custody verifier
accept the certificate. No cryptographic decision is made here."""

from __future__ import annotations

_SAN_OID = bytes.fromhex("0603551d11")  # OBJECT IDENTIFIER 2.5.29.17


class DerError(ValueError):
    pass


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the TLV at `pos`."""
    if pos + 2 > len(data):
        raise DerError("truncated")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers are not used in certificates")
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or pos + k > len(data):
            raise DerError("bad length")
        n = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    if pos + n > len(data):
        raise DerError("truncated")
    return tag, pos, pos + n


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    pos = start
    while pos < end:
        tag, s, e = _tlv(data, pos)
        out.append((tag, s, e))
        pos = e
    return out


def uri_sans(tbs: bytes) -> list[str]:
    """The URI SANs in a DER `TBSCertificate`."""
    tag, s, e = _tlv(tbs, 0)
    if tag != 0x30:
        raise DerError("TBSCertificate is not a SEQUENCE")
    exts = [c for c in _children(tbs, s, e) if c[0] == 0xA3]
    if not exts:
        return []
    _, s, e = exts[0]
    tag, s, e = _tlv(tbs, s)  # Extensions SEQUENCE
    uris: list[str] = []
    for tag, xs, xe in _children(tbs, s, e):
        parts = _children(tbs, xs, xe)
        if not parts or tbs[xs : parts[0][2]] != _SAN_OID:
            continue
        octets = parts[-1]
        if octets[0] != 0x04:
            raise DerError("extension value is not an OCTET STRING")
        gtag, gs, ge = _tlv(tbs, octets[1])
        if gtag != 0x30:
            raise DerError("GeneralNames is not a SEQUENCE")
        for ntag, ns, ne in _children(tbs, gs, ge):
            if ntag == 0x86:  # [6] IMPLICIT IA5String: uniformResourceIdentifier
                uris.append(tbs[ns:ne].decode("ascii"))
    return uris
