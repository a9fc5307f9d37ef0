//! X.509 parsing: a certificate decoded once, strictly, into the facts the
//! X.509-SVID rules ([`crate::svid`]) and path building ([`crate::path`])
//! need. Parsing decides nothing about trust; it only refuses what is not
//! strict DER (RFC 5280 certificates are DER, X.690 §10): the certificate and
//! the value of every extension this verifier reads must re-encode to the
//! very bytes received.

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::traits::PublicKeyParts;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};
use x509_cert::Certificate;

use crate::codec::sha256;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const OID_SAN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const OID_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const OID_NAME_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.30");
const OID_KP_SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const OID_KP_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

/// RSA moduli accepted, in bits: at least 2048 (NIST SP 800-131A), at most
/// 4096 (bounds the cost of one verification).
pub const RSA_BITS: core::ops::RangeInclusive<usize> = 2048..=4096;
/// The only RSA public exponent accepted (F4; bounds the cost of one verification).
pub const RSA_EXPONENT: u32 = 65537;

/// A certificate's public key, as far as this verifier can use it.
#[derive(Clone, Debug)]
pub(crate) enum PublicKey {
    /// An ECDSA P-256 point, uncompressed SEC1 (65 bytes).
    P256(Vec<u8>),
    /// RSA with a modulus in [`RSA_BITS`] and exponent [`RSA_EXPONENT`].
    Rsa(rsa::RsaPublicKey),
    /// Anything else: another curve or algorithm, a compressed point, an RSA
    /// key outside the profile. It cannot sign a history nor verify a certificate.
    Unsupported,
}

/// The signature algorithm of a certificate (both AlgorithmIdentifiers agree).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SigAlg {
    EcdsaSha256,
    RsaSha256,
    RsaSha384,
    RsaSha512,
    Unsupported,
}

/// basicConstraints (RFC 5280 §4.2.1.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Basic {
    pub ca: bool,
    pub path_len: Option<u8>,
}

/// keyUsage bits (RFC 5280 §4.2.1.3) this verifier reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyUsageBits {
    pub critical: bool,
    pub digital_signature: bool,
    pub key_cert_sign: bool,
    pub crl_sign: bool,
}

/// extKeyUsage purposes (RFC 5280 §4.2.1.12) this verifier reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExtKeyUsage {
    pub server_auth: bool,
    pub client_auth: bool,
}

/// A certificate decoded once, with what the rules and path building need.
#[derive(Clone, Debug)]
pub struct ParsedCert {
    pub(crate) hash: [u8; 32],
    pub(crate) tbs_der: Vec<u8>,
    pub(crate) subject: Vec<u8>,
    pub(crate) subject_empty: bool,
    pub(crate) issuer: Vec<u8>,
    pub(crate) not_before: u64,
    pub(crate) not_after: u64,
    pub(crate) key: PublicKey,
    /// The SubjectPublicKeyInfo DER: two certificates with the same one
    /// verify exactly the same signatures.
    pub(crate) spki: Vec<u8>,
    pub(crate) sig_alg: SigAlg,
    pub(crate) signature: Vec<u8>,
    pub(crate) basic: Option<Basic>,
    pub(crate) key_usage: Option<KeyUsageBits>,
    pub(crate) ext_key_usage: Option<ExtKeyUsage>,
    /// Every URI of subjectAltName, in order.
    pub(crate) uri_sans: Vec<String>,
    pub(crate) san_critical: bool,
    /// nameConstraints, if present: `Some(critical)`. Custody does not process them.
    pub(crate) name_constraints: Option<bool>,
    /// A critical extension other than the five above.
    pub(crate) unknown_critical: bool,
}

impl ParsedCert {
    /// SHA-256 of the DER (what `x5t#S256` names).
    pub fn sha256(&self) -> [u8; 32] {
        self.hash
    }

    /// notBefore and notAfter, Unix seconds.
    pub fn validity(&self) -> (u64, u64) {
        (self.not_before, self.not_after)
    }

    /// The URI SANs, in order.
    pub fn uri_sans(&self) -> &[String] {
        &self.uri_sans
    }
}

/// Why a certificate does not parse.
pub type ParseError = &'static str;

/// The value of one extension, which must be strict DER too: decoding then
/// re-encoding gives the same bytes (an explicit DEFAULT such as
/// basicConstraints `cA FALSE`, `30 03 01 01 00`, is not DER and is refused).
fn strict<T: for<'a> Decode<'a> + Encode>(value: &[u8], what: ParseError) -> Result<T, ParseError> {
    let v = T::from_der(value).map_err(|_| what)?;
    if v.to_der().map_err(|_| what)? != value {
        return Err(what);
    }
    Ok(v)
}

/// Decodes a DER certificate strictly (re-encoding must give the same bytes,
/// for the certificate and for every extension read).
pub fn parse_cert(der: &[u8]) -> Result<ParsedCert, ParseError> {
    let cert = Certificate::from_der(der).map_err(|_| "not a DER X.509 certificate")?;
    if cert.to_der().map_err(|_| "cannot re-encode")? != der {
        return Err("not canonical DER");
    }
    let tbs = &cert.tbs_certificate;
    if tbs.signature != cert.signature_algorithm {
        return Err("inner and outer signature algorithms differ");
    }
    let tbs_der = tbs.to_der().map_err(|_| "cannot encode tbsCertificate")?;
    let subject = tbs.subject.to_der().map_err(|_| "bad subject")?;
    let issuer = tbs.issuer.to_der().map_err(|_| "bad issuer")?;
    let not_before = tbs.validity.not_before.to_unix_duration().as_secs();
    let not_after = tbs.validity.not_after.to_unix_duration().as_secs();

    let spki_info = &tbs.subject_public_key_info;
    let spki = spki_info.to_der().map_err(|_| "bad subjectPublicKeyInfo")?;
    let key_bits = spki_info
        .subject_public_key
        .as_bytes()
        .ok_or("bad key bit string")?;
    let key = public_key(spki_info.algorithm.oid, spki_info, key_bits)?;

    let oid = cert.signature_algorithm.oid;
    let sig_alg = if oid == OID_ECDSA_SHA256 {
        SigAlg::EcdsaSha256
    } else if oid == OID_RSA_SHA256 {
        SigAlg::RsaSha256
    } else if oid == OID_RSA_SHA384 {
        SigAlg::RsaSha384
    } else if oid == OID_RSA_SHA512 {
        SigAlg::RsaSha512
    } else {
        SigAlg::Unsupported
    };
    let signature = cert
        .signature
        .as_bytes()
        .ok_or("bad signature bit string")?
        .to_vec();

    let mut out = ParsedCert {
        hash: sha256(der),
        tbs_der,
        subject_empty: tbs.subject.0.is_empty(),
        subject,
        issuer,
        not_before,
        not_after,
        key,
        spki,
        sig_alg,
        signature,
        basic: None,
        key_usage: None,
        ext_key_usage: None,
        uri_sans: Vec::new(),
        san_critical: false,
        name_constraints: None,
        unknown_critical: false,
    };
    let mut seen: Vec<ObjectIdentifier> = Vec::new();
    for ext in tbs.extensions.iter().flatten() {
        // RFC 5280 §4.2: a certificate MUST NOT include more than one instance of an extension.
        if seen.contains(&ext.extn_id) {
            return Err("duplicate extension");
        }
        seen.push(ext.extn_id);
        let value = ext.extn_value.as_bytes();
        if ext.extn_id == OID_BASIC_CONSTRAINTS {
            let bc: BasicConstraints = strict(value, "basicConstraints is not strict DER")?;
            out.basic = Some(Basic {
                ca: bc.ca,
                path_len: bc.path_len_constraint,
            });
        } else if ext.extn_id == OID_KEY_USAGE {
            let ku: KeyUsage = strict(value, "keyUsage is not strict DER")?;
            out.key_usage = Some(KeyUsageBits {
                critical: ext.critical,
                digital_signature: ku.digital_signature(),
                key_cert_sign: ku.key_cert_sign(),
                crl_sign: ku.crl_sign(),
            });
        } else if ext.extn_id == OID_EKU {
            let eku: ExtendedKeyUsage = strict(value, "extKeyUsage is not strict DER")?;
            out.ext_key_usage = Some(ExtKeyUsage {
                server_auth: eku.0.contains(&OID_KP_SERVER_AUTH),
                client_auth: eku.0.contains(&OID_KP_CLIENT_AUTH),
            });
        } else if ext.extn_id == OID_SAN {
            let san: SubjectAltName = strict(value, "subjectAltName is not strict DER")?;
            out.san_critical = ext.critical;
            for name in san.0 {
                if let GeneralName::UniformResourceIdentifier(uri) = name {
                    out.uri_sans.push(uri.as_str().to_owned());
                }
            }
        } else if ext.extn_id == OID_NAME_CONSTRAINTS {
            out.name_constraints = Some(ext.critical);
        } else if ext.critical {
            out.unknown_critical = true;
        }
    }
    Ok(out)
}

/// The key, if it is one this verifier uses; malformed keys of a known type
/// do not parse at all.
fn public_key(
    alg: ObjectIdentifier,
    spki: &x509_cert::spki::SubjectPublicKeyInfoOwned,
    bits: &[u8],
) -> Result<PublicKey, ParseError> {
    if alg == OID_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if curve != Some(OID_P256) {
            return Ok(PublicKey::Unsupported);
        }
        p256::PublicKey::from_sec1_bytes(bits).map_err(|_| "bad P-256 point")?;
        // Only the uncompressed form (0x04 || x || y), as Go's crypto/x509 and
        // BoringSSL's verify_signature take it: a compressed point would get
        // different verdicts from different verifiers.
        if bits.first() != Some(&0x04) {
            return Ok(PublicKey::Unsupported);
        }
        return Ok(PublicKey::P256(bits.to_vec()));
    }
    if alg == OID_RSA {
        let k = rsa::RsaPublicKey::from_pkcs1_der(bits).map_err(|_| "bad RSA key")?;
        let in_profile =
            RSA_BITS.contains(&k.n().bits()) && k.e() == &rsa::BigUint::from(RSA_EXPONENT);
        return Ok(if in_profile {
            PublicKey::Rsa(k)
        } else {
            PublicKey::Unsupported
        });
    }
    Ok(PublicKey::Unsupported)
}
