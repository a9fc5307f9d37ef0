"""A development trust domain: a CA and X.509-SVIDs, generated with the
`cryptography` package. Also makes the deliberately wrong certificates the
tests need (two URI SANs, another CA, ...)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class Svid:
    cert: Path
    key: Path
    spiffe_ids: tuple[str, ...]


class TrustDomain:
    """A CA for one trust domain, writing PEM files under `root`. With `issuer`
    (another TrustDomain), an intermediate CA issued by it instead of a root."""

    def __init__(self, root: Path, name: str = "example.org", issuer: "TrustDomain | None" = None, label: str = "dev CA"):
        self.root = root
        self.name = name
        root.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"{name} {label}")])
        self.issuer = issuer
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.cert.subject if issuer else subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{name}")]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(issuer.key if issuer else self.key, hashes.SHA256())
        )
        self.bundle = root / "bundle.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        name: str,
        *uris: str,
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        ca: bool = False,
        key_usage: dict | None = None,
        key_usage_critical: bool = True,
        eku: tuple | None = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
        chain: bool = False,
    ) -> Svid:
        """An SVID with the given URI SANs (normally exactly one SPIFFE ID).
        The keyword arguments make the deliberately wrong ones: `ca` (cA true),
        `key_usage` (the bits set, e.g. {"digital_signature": True, "key_cert_sign": True};
        `{}` for no keyUsage extension), `key_usage_critical`, `eku` (None: none).
        `chain`: the PEM file also holds this CA (an intermediate) after the leaf."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
        sans += [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SPIRE")]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(hours=12))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        bits = {"digital_signature": True, "key_encipherment": True} if key_usage is None else key_usage
        if bits:
            names = (
                "digital_signature content_commitment key_encipherment data_encipherment "
                "key_agreement key_cert_sign crl_sign encipher_only decipher_only"
            ).split()
            builder = builder.add_extension(
                x509.KeyUsage(**{n: bits.get(n, False) for n in names}), critical=key_usage_critical
            )
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        out = self.root / name
        out.mkdir(parents=True, exist_ok=True)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        if chain:
            pem += self.cert.public_bytes(serialization.Encoding.PEM)
        (out / "svid.pem").write_bytes(pem)
        (out / "svid.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return Svid(out / "svid.pem", out / "svid.key", tuple(uris))
