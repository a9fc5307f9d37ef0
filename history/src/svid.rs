//! The X.509-SVID rulebook: one place for what makes a certificate a valid
//! leaf SVID or signing certificate, used for the mTLS caller (core's
//! identity stage), for the signers of history entries and proofs, and for
//! the authorities of a trust bundle. Every rule cites its source:
//! spiffe/spiffe `standards/X509-SVID.md` (§) or RFC 5280.

use core::fmt;

use crate::spiffe::{SpiffeId, SpiffeIdError};
use crate::x509::ParsedCert;

/// A leaf X.509-SVID rule a certificate breaks, in the order they are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeafRule {
    /// RFC 5280 §4.2: a critical extension this verifier does not process
    /// (anything but basicConstraints, keyUsage, extKeyUsage, subjectAltName).
    CriticalExtension,
    /// X509-SVID §4.1, §5.2: a leaf's basicConstraints `cA` must be false
    /// (and, RFC 5280 §4.2.1.9, without a pathLenConstraint).
    IsCa,
    /// X509-SVID §4.3: the keyUsage extension must be present.
    KeyUsageMissing,
    /// X509-SVID §4.3: the keyUsage extension must be critical.
    KeyUsageNotCritical,
    /// X509-SVID §4.3: a leaf must set digitalSignature.
    NoDigitalSignature,
    /// X509-SVID §4.3, §5.2: a leaf must not set keyCertSign or cRLSign.
    SignsCertificates,
    /// X509-SVID §4.4: an extKeyUsage, when present, must include both
    /// id-kp-serverAuth and id-kp-clientAuth.
    ExtKeyUsage,
    /// X509-SVID §2, §5.2: exactly one URI SAN (this many were found).
    UriSanCount(usize),
    /// X509-SVID §2: the URI SAN is not a valid SPIFFE ID.
    NotSpiffeId(SpiffeIdError),
    /// X509-SVID §3.1, §5.2: a leaf's SPIFFE ID has a non-root path.
    RootId,
    /// X509-SVID §3.1 (RFC 5280 §4.1.2.6): without a subject, the
    /// subjectAltName extension must be critical.
    SanNotCritical,
}

impl LeafRule {
    /// Where the rule comes from.
    pub fn source(&self) -> &'static str {
        match self {
            LeafRule::CriticalExtension => "RFC 5280 §4.2",
            LeafRule::IsCa => "X509-SVID §4.1, §5.2",
            LeafRule::KeyUsageMissing
            | LeafRule::KeyUsageNotCritical
            | LeafRule::NoDigitalSignature => "X509-SVID §4.3",
            LeafRule::SignsCertificates => "X509-SVID §4.3, §5.2",
            LeafRule::ExtKeyUsage => "X509-SVID §4.4",
            LeafRule::UriSanCount(_) => "X509-SVID §2, §5.2",
            LeafRule::NotSpiffeId(_) => "X509-SVID §2",
            LeafRule::RootId => "X509-SVID §3.1, §5.2",
            LeafRule::SanNotCritical => "X509-SVID §3.1",
        }
    }
}

impl fmt::Display for LeafRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeafRule::CriticalExtension => {
                f.write_str("has a critical extension it cannot process")
            }
            LeafRule::IsCa => {
                f.write_str("is a CA (basicConstraints cA true or a pathLenConstraint)")
            }
            LeafRule::KeyUsageMissing => f.write_str("has no keyUsage extension"),
            LeafRule::KeyUsageNotCritical => {
                f.write_str("has a keyUsage extension that is not critical")
            }
            LeafRule::NoDigitalSignature => f.write_str("has a keyUsage without digitalSignature"),
            LeafRule::SignsCertificates => {
                f.write_str("has a keyUsage with keyCertSign or cRLSign")
            }
            LeafRule::ExtKeyUsage => {
                f.write_str("has an extKeyUsage without both serverAuth and clientAuth")
            }
            LeafRule::UriSanCount(n) => write!(f, "has {n} URI SANs, not exactly one"),
            LeafRule::NotSpiffeId(e) => write!(f, "has a URI SAN that is not a SPIFFE ID ({e})"),
            LeafRule::RootId => f.write_str("has a SPIFFE ID without a path"),
            LeafRule::SanNotCritical => {
                f.write_str("has an empty subject and a subjectAltName that is not critical")
            }
        }?;
        write!(f, " ({})", self.source())
    }
}

/// The SPIFFE ID of a leaf X.509-SVID, or the first leaf rule it breaks.
/// The key type is not a leaf rule: the mTLS caller may hold any key Envoy
/// accepted, a history signer needs ECDSA P-256 (checked by the verifier).
pub fn leaf_spiffe_id(cert: &ParsedCert) -> Result<SpiffeId, LeafRule> {
    if cert.unknown_critical || cert.name_constraints == Some(true) {
        return Err(LeafRule::CriticalExtension);
    }
    if cert.basic.is_some_and(|b| b.ca || b.path_len.is_some()) {
        return Err(LeafRule::IsCa);
    }
    let ku = cert.key_usage.ok_or(LeafRule::KeyUsageMissing)?;
    if !ku.critical {
        return Err(LeafRule::KeyUsageNotCritical);
    }
    if !ku.digital_signature {
        return Err(LeafRule::NoDigitalSignature);
    }
    if ku.key_cert_sign || ku.crl_sign {
        return Err(LeafRule::SignsCertificates);
    }
    if cert
        .ext_key_usage
        .is_some_and(|e| !(e.server_auth && e.client_auth))
    {
        return Err(LeafRule::ExtKeyUsage);
    }
    let [uri] = cert.uri_sans.as_slice() else {
        return Err(LeafRule::UriSanCount(cert.uri_sans.len()));
    };
    let id = SpiffeId::parse(uri).map_err(LeafRule::NotSpiffeId)?;
    if id.path().is_empty() {
        return Err(LeafRule::RootId);
    }
    if cert.subject_empty && !cert.san_critical {
        return Err(LeafRule::SanNotCritical);
    }
    Ok(id)
}

/// A signing-certificate rule an intermediate or authority breaks, in the
/// order they are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningRule {
    /// RFC 5280 §4.2: a critical extension this verifier does not process.
    CriticalExtension,
    /// X509-SVID §4.2, RFC 5280 §4.2.1.10: nameConstraints, critical or not,
    /// which this verifier does not process (so it cannot honour them).
    NameConstraints,
    /// X509-SVID §3.2, §4.1: a signing certificate has basicConstraints cA true.
    NotCa,
    /// X509-SVID §3.2, §4.3 (RFC 5280 §4.2.1.3): keyUsage with keyCertSign.
    NoKeyCertSign,
    /// X509-SVID §3.2: a signing certificate's SPIFFE ID has no path.
    SpiffeIdWithPath,
}

impl SigningRule {
    /// Where the rule comes from.
    pub fn source(&self) -> &'static str {
        match self {
            SigningRule::CriticalExtension => "RFC 5280 §4.2",
            SigningRule::NameConstraints => "X509-SVID §4.2",
            SigningRule::NotCa => "X509-SVID §3.2, §4.1",
            SigningRule::NoKeyCertSign => "X509-SVID §3.2, §4.3",
            SigningRule::SpiffeIdWithPath => "X509-SVID §3.2",
        }
    }
}

impl fmt::Display for SigningRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigningRule::CriticalExtension => {
                f.write_str("has a critical extension it cannot process")
            }
            SigningRule::NameConstraints => {
                f.write_str("has nameConstraints, which are not processed")
            }
            SigningRule::NotCa => f.write_str("is not a CA (basicConstraints cA true)"),
            SigningRule::NoKeyCertSign => f.write_str("has no keyUsage with keyCertSign"),
            SigningRule::SpiffeIdWithPath => {
                f.write_str("has a URI SAN that is not a SPIFFE ID without a path")
            }
        }?;
        write!(f, " ({})", self.source())
    }
}

/// Whether `cert` may sign other certificates of an X.509-SVID path. For a
/// trust bundle authority (`anchor`), a missing keyUsage is accepted (RFC
/// 5280 trust anchors predating it); a request intermediate must carry one.
pub fn check_signing(cert: &ParsedCert, anchor: bool) -> Result<(), SigningRule> {
    if cert.unknown_critical {
        return Err(SigningRule::CriticalExtension);
    }
    if cert.name_constraints.is_some() {
        return Err(SigningRule::NameConstraints);
    }
    if !cert.basic.is_some_and(|b| b.ca) {
        return Err(SigningRule::NotCa);
    }
    match cert.key_usage {
        Some(ku) if ku.key_cert_sign => {}
        None if anchor => {}
        _ => return Err(SigningRule::NoKeyCertSign),
    }
    // Any spiffe: URI must be a SPIFFE ID of the trust domain alone.
    let bad_uri = cert.uri_sans.iter().any(|u| {
        u.get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("spiffe:"))
            && SpiffeId::parse(u).map_or(true, |id| !id.path().is_empty())
    });
    if bad_uri {
        return Err(SigningRule::SpiffeIdWithPath);
    }
    Ok(())
}

/// How many intermediates a CA lets follow it (RFC 5280 §4.2.1.9,
/// §6.1.4 (l)); every intermediate counts, self-issued or not.
pub(crate) fn path_len(cert: &ParsedCert) -> usize {
    cert.basic
        .and_then(|b| b.path_len)
        .map_or(usize::MAX, usize::from)
}
