//! X.509-SVID validation: parsing (x509-cert), path building to a trust
//! bundle authority, and the SPIFFE leaf rules.

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use rsa::pkcs1::DecodeRsaPublicKey;
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::sync::Arc;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, SubjectAltName};
use x509_cert::Certificate;

use crate::bundle::TrustBundle;
use crate::codec::sha256;
use crate::ecdsa::EcdsaP256Verifier;
use crate::error::{CheckedAt, Part, Refusal};
use crate::spiffe::SpiffeId;

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

/// Smallest RSA authority modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;

#[derive(Clone, Debug)]
pub(crate) enum PublicKey {
    /// SEC1-encoded point.
    P256(Vec<u8>),
    Rsa(rsa::RsaPublicKey),
    Unsupported,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SigAlg {
    EcdsaSha256,
    RsaSha256,
    RsaSha384,
    RsaSha512,
    Unsupported,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyUsageBits {
    pub digital_signature: bool,
    pub key_cert_sign: bool,
    pub crl_sign: bool,
}

/// A certificate decoded once, with what validation needs.
#[derive(Clone, Debug)]
pub(crate) struct ParsedCert {
    pub hash: [u8; 32],
    pub tbs_der: Vec<u8>,
    pub subject: Vec<u8>,
    pub issuer: Vec<u8>,
    pub not_before: u64,
    pub not_after: u64,
    pub key: PublicKey,
    pub sig_alg: SigAlg,
    pub signature: Vec<u8>,
    pub is_ca: bool,
    pub path_len: Option<u8>,
    pub key_usage: Option<KeyUsageBits>,
    pub unknown_critical: bool,
    pub uri_sans: Vec<String>,
}

/// Decodes a DER certificate strictly (re-encoding must give the same bytes).
pub(crate) fn parse_cert(der: &[u8]) -> Result<ParsedCert, &'static str> {
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

    let spki = &tbs.subject_public_key_info;
    let key_bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or("bad key bit string")?;
    let key = if spki.algorithm.oid == OID_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if curve == Some(OID_P256) {
            p256::PublicKey::from_sec1_bytes(key_bits).map_err(|_| "bad P-256 point")?;
            PublicKey::P256(key_bits.to_vec())
        } else {
            PublicKey::Unsupported
        }
    } else if spki.algorithm.oid == OID_RSA {
        let k = rsa::RsaPublicKey::from_pkcs1_der(key_bits).map_err(|_| "bad RSA key")?;
        if rsa::traits::PublicKeyParts::size(&k) * 8 < MIN_RSA_BITS {
            PublicKey::Unsupported
        } else {
            PublicKey::Rsa(k)
        }
    } else {
        PublicKey::Unsupported
    };

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

    let mut is_ca = false;
    let mut path_len = None;
    let mut key_usage = None;
    let mut unknown_critical = false;
    let mut uri_sans = Vec::new();
    let mut seen: Vec<ObjectIdentifier> = Vec::new();
    for ext in tbs.extensions.iter().flatten() {
        if seen.contains(&ext.extn_id) {
            return Err("duplicate extension");
        }
        seen.push(ext.extn_id);
        let value = ext.extn_value.as_bytes();
        if ext.extn_id == OID_BASIC_CONSTRAINTS {
            let bc = BasicConstraints::from_der(value).map_err(|_| "bad basicConstraints")?;
            is_ca = bc.ca;
            path_len = bc.path_len_constraint;
        } else if ext.extn_id == OID_KEY_USAGE {
            let ku = KeyUsage::from_der(value).map_err(|_| "bad keyUsage")?;
            key_usage = Some(KeyUsageBits {
                digital_signature: ku.digital_signature(),
                key_cert_sign: ku.key_cert_sign(),
                crl_sign: ku.crl_sign(),
            });
        } else if ext.extn_id == OID_SAN {
            let san = SubjectAltName::from_der(value).map_err(|_| "bad subjectAltName")?;
            for name in san.0 {
                if let GeneralName::UniformResourceIdentifier(uri) = name {
                    uri_sans.push(uri.as_str().to_owned());
                }
            }
        } else if ext.extn_id == OID_EKU {
            // Not needed for verification; accepted critical or not.
        } else if ext.critical {
            unknown_critical = true;
        }
    }
    Ok(ParsedCert {
        hash: sha256(der),
        tbs_der,
        subject,
        issuer,
        not_before,
        not_after,
        key,
        sig_alg,
        signature,
        is_ca,
        path_len,
        key_usage,
        unknown_critical,
        uri_sans,
    })
}

/// Result of checking one certificate signature.
enum SigCheck {
    Valid,
    Invalid,
    Unsupported,
}

fn check_cert_signature(
    child: &ParsedCert,
    issuer_key: &PublicKey,
    ecdsa: &dyn EcdsaP256Verifier,
) -> SigCheck {
    match (child.sig_alg, issuer_key) {
        (SigAlg::EcdsaSha256, PublicKey::P256(sec1)) => {
            // Certificate signatures are DER; any s in range is accepted here.
            let Ok(sig) = p256::ecdsa::Signature::from_der(&child.signature) else {
                return SigCheck::Invalid;
            };
            let raw: [u8; 64] = sig.to_bytes().into();
            if ecdsa.verify(sec1, &child.tbs_der, &raw) {
                SigCheck::Valid
            } else {
                SigCheck::Invalid
            }
        }
        (SigAlg::RsaSha256 | SigAlg::RsaSha384 | SigAlg::RsaSha512, PublicKey::Rsa(key)) => {
            let ok = match child.sig_alg {
                SigAlg::RsaSha256 => key.verify(
                    rsa::Pkcs1v15Sign::new::<Sha256>(),
                    &Sha256::digest(&child.tbs_der),
                    &child.signature,
                ),
                SigAlg::RsaSha384 => key.verify(
                    rsa::Pkcs1v15Sign::new::<Sha384>(),
                    &Sha384::digest(&child.tbs_der),
                    &child.signature,
                ),
                _ => key.verify(
                    rsa::Pkcs1v15Sign::new::<Sha512>(),
                    &Sha512::digest(&child.tbs_der),
                    &child.signature,
                ),
            };
            if ok.is_ok() {
                SigCheck::Valid
            } else {
                SigCheck::Invalid
            }
        }
        (SigAlg::EcdsaSha256, PublicKey::Rsa(_))
        | (SigAlg::RsaSha256 | SigAlg::RsaSha384 | SigAlg::RsaSha512, PublicKey::P256(_)) => {
            SigCheck::Invalid
        }
        _ => SigCheck::Unsupported,
    }
}

/// One certificate of a validated path, with what a cache hit re-checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PathCert {
    pub hash: [u8; 32],
    pub not_before: u64,
    pub not_after: u64,
}

/// A signer certificate whose static checks and path passed.
#[derive(Clone, Debug)]
pub(crate) struct ValidatedSigner {
    pub spiffe_id: SpiffeId,
    pub sec1: Vec<u8>,
    /// Leaf first, then intermediates, then the authority.
    pub path: Vec<PathCert>,
}

impl ValidatedSigner {
    /// Hashes of the intermediates (certificates that must come from the request).
    pub fn intermediates(&self) -> &[PathCert] {
        let n = self.path.len();
        if n >= 2 {
            &self.path[1..n - 1]
        } else {
            &[]
        }
    }
}

fn path_cert(c: &ParsedCert) -> PathCert {
    PathCert {
        hash: c.hash,
        not_before: c.not_before,
        not_after: c.not_after,
    }
}

#[derive(Default)]
struct BuildTrouble {
    depth: bool,
    unsupported: bool,
}

/// Depth-first search for a path `cur -> … -> authority`.
/// `path` holds indices into `certs` (the leaf first).
#[allow(clippy::too_many_arguments)]
fn build_path(
    cur: &ParsedCert,
    path: &mut Vec<usize>,
    certs: &[Arc<ParsedCert>],
    authorities: &[ParsedCert],
    max_depth: usize,
    ecdsa: &dyn EcdsaP256Verifier,
    trouble: &mut BuildTrouble,
) -> Option<usize> {
    for (a, auth) in authorities.iter().enumerate() {
        if auth.subject == cur.issuer {
            match check_cert_signature(cur, &auth.key, ecdsa) {
                SigCheck::Valid => return Some(a),
                SigCheck::Invalid => {}
                SigCheck::Unsupported => trouble.unsupported = true,
            }
        }
    }
    for (j, cand) in certs.iter().enumerate() {
        if cand.subject != cur.issuer || path.contains(&j) {
            continue;
        }
        if path.len() >= max_depth {
            trouble.depth = true;
            continue;
        }
        match check_cert_signature(cur, &cand.key, ecdsa) {
            SigCheck::Valid => {
                path.push(j);
                if let Some(a) =
                    build_path(cand, path, certs, authorities, max_depth, ecdsa, trouble)
                {
                    return Some(a);
                }
                path.pop();
            }
            SigCheck::Invalid => {}
            SigCheck::Unsupported => trouble.unsupported = true,
        }
    }
    None
}

/// Everything about a signer certificate that does not depend on time:
/// leaf rules, SPIFFE ID, path to an authority of its trust domain.
pub(crate) fn validate_signer(
    leaf_index: usize,
    certs: &[Arc<ParsedCert>],
    bundle: &TrustBundle,
    max_depth: usize,
    ecdsa: &dyn EcdsaP256Verifier,
    part: Part,
) -> Result<ValidatedSigner, Refusal> {
    let leaf = certs.get(leaf_index).ok_or(Refusal::CertMissing { part })?;
    if leaf.unknown_critical {
        return Err(Refusal::CertCriticalExtension { part });
    }
    if leaf.is_ca {
        return Err(Refusal::CertIsCa { part });
    }
    if let Some(ku) = leaf.key_usage {
        if !ku.digital_signature || ku.key_cert_sign || ku.crl_sign {
            return Err(Refusal::CertKeyUsage { part });
        }
    }
    let [uri] = leaf.uri_sans.as_slice() else {
        return Err(Refusal::CertSpiffeId { part });
    };
    let spiffe_id = SpiffeId::parse(uri).map_err(|_| Refusal::CertSpiffeId { part })?;
    if spiffe_id.path().is_empty() {
        return Err(Refusal::CertSpiffeId { part });
    }
    let PublicKey::P256(sec1) = &leaf.key else {
        return Err(Refusal::CertKeyType { part });
    };
    let authorities = bundle
        .authorities(spiffe_id.trust_domain())
        .ok_or_else(|| Refusal::CertUnknownTrustDomain {
            part,
            trust_domain: spiffe_id.trust_domain().to_owned(),
        })?;
    let mut path = vec![leaf_index];
    let mut trouble = BuildTrouble::default();
    let anchor = build_path(
        leaf,
        &mut path,
        certs,
        authorities,
        max_depth.max(1),
        ecdsa,
        &mut trouble,
    );
    let Some(anchor) = anchor else {
        return Err(if trouble.unsupported {
            Refusal::CertSignatureAlg { part }
        } else if trouble.depth {
            Refusal::CertChainDepth { part }
        } else {
            Refusal::CertUntrusted { part }
        });
    };
    // Intermediates: CA, may sign certificates, path length respected,
    // nothing critical that we do not process.
    for (k, &j) in path.iter().enumerate().skip(1) {
        let inter = &certs[j];
        if inter.unknown_critical {
            return Err(Refusal::CertCriticalExtension { part });
        }
        let below = k - 1; // intermediates between this one and the leaf
        let path_ok = inter.path_len.is_none_or(|p| usize::from(p) >= below);
        let ku_ok = inter.key_usage.is_none_or(|ku| ku.key_cert_sign);
        if !inter.is_ca || !ku_ok || !path_ok {
            return Err(Refusal::CertIntermediateNotCa { part });
        }
    }
    let mut out: Vec<PathCert> = path.iter().map(|&j| path_cert(&certs[j])).collect();
    out.push(path_cert(&authorities[anchor]));
    Ok(ValidatedSigner {
        spiffe_id,
        sec1: sec1.clone(),
        path: out,
    })
}

/// Time validity of every certificate in the path, at now then at `iat`.
pub(crate) fn check_path_times(
    path: &[PathCert],
    iat: u64,
    now: u64,
    skew: u64,
    part: Part,
) -> Result<(), Refusal> {
    for (t, at) in [(now, CheckedAt::Now), (iat, CheckedAt::Iat)] {
        for (depth, c) in path.iter().enumerate() {
            if t.saturating_add(skew) < c.not_before {
                return Err(Refusal::CertNotYetValid { part, depth, at });
            }
            if t > c.not_after.saturating_add(skew) {
                return Err(Refusal::CertExpired { part, depth, at });
            }
        }
    }
    Ok(())
}
