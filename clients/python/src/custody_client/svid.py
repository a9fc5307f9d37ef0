"""X.509-SVIDs: the certificate chain and P-256 key a workload signs with."""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from custody_client._codec import is_spiffe_id, sha256_b64u

StrPath = Union[str, "os.PathLike[str]"]

#: The order n of the P-256 group.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class SvidError(ValueError):
    """The certificate or key cannot sign Custody histories."""


def _es256_algorithm() -> ec.ECDSA:
    """RFC 6979 deterministic ECDSA where the OpenSSL build has it (as the
    reference signer), else randomised ECDSA: both verify the same."""
    try:
        return ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    except (TypeError, UnsupportedAlgorithm):  # pragma: no cover - old cryptography/OpenSSL
        return ec.ECDSA(hashes.SHA256())


def es256_sign(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """ES256 over `message`: 64 bytes `r || s`, `s` normalised to low-S."""
    try:
        der = key.sign(message, _es256_algorithm())
    except UnsupportedAlgorithm:  # pragma: no cover - deterministic signing unavailable
        der = key.sign(message, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    if s > P256_N // 2:
        s = P256_N - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def spiffe_id_of(cert: x509.Certificate) -> str:
    """The single URI SAN of `cert`, which must be a SPIFFE ID with a path."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound as e:
        raise SvidError("the certificate has no subjectAltName") from e
    except ValueError as e:
        # Not DER (e.g. basicConstraints with an explicit `cA FALSE`): the
        # verifier refuses it too (`cert_malformed`, docs/history-format.md §6.1).
        raise SvidError(f"the certificate's extensions are not strict DER: {e}") from e
    if len(uris) != 1:
        raise SvidError(f"the certificate has {len(uris)} URI SANs, not exactly one")
    if not is_spiffe_id(uris[0], require_path=True):
        raise SvidError(f"the URI SAN {uris[0]!r} is not a SPIFFE ID with a path")
    return uris[0]


@dataclass(frozen=True)
class Svid:
    """An X.509-SVID: leaf certificate, optional intermediates, P-256 key."""

    leaf: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    intermediates: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            self.private_key.curve, ec.SECP256R1
        ):
            raise SvidError("the key is not an ECDSA P-256 private key")
        pub = self.leaf.public_key()
        if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.public_numbers() != (
            self.private_key.public_key().public_numbers()
        ):
            raise SvidError("the certificate does not hold the key")
        spiffe_id_of(self.leaf)

    # --- construction -------------------------------------------------------

    @classmethod
    def from_pem(cls, cert_pem: bytes | str, key_pem: bytes | str, password: bytes | None = None) -> "Svid":
        """From PEM text: the leaf first, then any intermediates; the key as
        PKCS#8 (`PRIVATE KEY`) or SEC 1 (`EC PRIVATE KEY`)."""
        cert_bytes = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
        key_bytes = key_pem.encode() if isinstance(key_pem, str) else key_pem
        try:
            certs = x509.load_pem_x509_certificates(cert_bytes)
        except ValueError as e:
            raise SvidError(f"cannot read the certificate PEM: {e}") from e
        try:
            key = serialization.load_pem_private_key(key_bytes, password=password)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise SvidError(f"cannot read the private key PEM: {e}") from e
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise SvidError("the key is not an ECDSA P-256 private key")
        return cls(certs[0], key, tuple(certs[1:]))

    @classmethod
    def from_files(cls, cert_pem_path: StrPath, key_pem_path: StrPath, password: bytes | None = None) -> "Svid":
        """From `svid.pem` (leaf, then intermediates) and `svid.key`, as
        `custody ca issue` and SPIRE's helpers write them."""
        return cls.from_pem(Path(cert_pem_path).read_bytes(), Path(key_pem_path).read_bytes(), password)

    @classmethod
    def from_x509_svid(cls, svid: Any) -> "Svid":
        """From an object with `cert_chain` (leaf first) and `private_key`
        attributes holding `cryptography` objects, such as the `X509Svid`
        of the `spiffe` package (py-spiffe): `WorkloadApiClient().fetch_x509_svid()`."""
        chain = list(svid.cert_chain)
        if not chain:
            raise SvidError("empty certificate chain")
        return cls(chain[0], svid.private_key, tuple(chain[1:]))

    # --- properties ---------------------------------------------------------

    @property
    def spiffe_id(self) -> str:
        """The certificate's SPIFFE ID (its single URI SAN)."""
        return spiffe_id_of(self.leaf)

    @property
    def leaf_der(self) -> bytes:
        return self.leaf.public_bytes(serialization.Encoding.DER)

    @property
    def chain_der(self) -> tuple[bytes, ...]:
        """DER of the leaf, then the intermediates: what `workflow-history-certs` carries."""
        return (self.leaf_der,) + tuple(c.public_bytes(serialization.Encoding.DER) for c in self.intermediates)

    @property
    def x5t(self) -> str:
        """`x5t#S256`: base64url(SHA-256(leaf DER))."""
        return sha256_b64u(self.leaf_der)

    def sign(self, message: bytes) -> bytes:
        """ES256 over `message`: 64 bytes `r || s`, low-S."""
        return es256_sign(self.private_key, message)

    def cert_chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.leaf, *self.intermediates))

    def key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def load_into(self, ctx: ssl.SSLContext) -> None:
        """Loads this SVID as the client (or server) certificate of `ctx`.
        `ssl` reads only files, so the PEMs go through a private temporary
        directory that is removed at once."""
        with tempfile.TemporaryDirectory(prefix="custody-svid-") as d:
            cert = os.path.join(d, "svid.pem")
            key = os.path.join(d, "svid.key")
            with open(cert, "wb") as f:
                f.write(self.cert_chain_pem())
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(self.key_pem())
            ctx.load_cert_chain(cert, key)

    def __repr__(self) -> str:
        return f"Svid({self.spiffe_id!r}, x5t={self.x5t!r})"
