//! Stage 1: who is calling. The caller's SPIFFE ID comes from the verified
//! mTLS peer certificate (or, in Istio, the peer principal that Istio's own
//! filters derived from it), never from anything the caller writes.

use crate::SpiffeId;
use custody_spiffe::SpiffeIdError;
use der::{Decode, DecodePem};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

const SUBJECT_ALT_NAME: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.17");

/// Why a connection yields no identity. All of these refuse with `no_identity`;
/// the variant goes to the decision log so operators can tell them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// The connection is not mutual TLS.
    NotMtls,
    /// Envoy did not validate the peer certificate (no `validation_context`).
    NotValidated,
    NoCertificate,
    /// The peer certificate could not be parsed.
    BadCertificate,
    /// X.509-SVIDs carry exactly one URI SAN; this one has another number.
    UriSanCount(usize),
    /// The URI SAN (or principal) is not a valid SPIFFE ID.
    NotSpiffe(SpiffeIdError),
    /// Istio's peer principal filter state is absent.
    NoPrincipal,
}

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotMtls => f.write_str("connection is not mutual TLS"),
            Self::NotValidated => f.write_str("peer certificate was not validated"),
            Self::NoCertificate => f.write_str("no peer certificate"),
            Self::BadCertificate => f.write_str("peer certificate does not parse"),
            Self::UriSanCount(n) => write!(f, "peer certificate has {n} URI SANs, not exactly one"),
            Self::NotSpiffe(e) => write!(f, "peer URI SAN is not a SPIFFE ID: {e}"),
            Self::NoPrincipal => f.write_str("no Istio peer principal"),
        }
    }
}

/// Facts about the downstream connection, as the host reports them.
#[derive(Debug, Clone, Default)]
pub struct PeerFacts<'a> {
    /// `connection.mtls`: a client certificate was presented.
    pub mtls: bool,
    /// `connection.peer_certificate_valid`: Envoy validated it against the CA.
    pub validated: bool,
    /// `connection.peer_certificate`: the leaf certificate, PEM.
    pub certificate_pem: Option<&'a [u8]>,
    /// `filter_state io.istio.peer_principal`.
    pub istio_principal: Option<&'a [u8]>,
}

/// The caller's SPIFFE ID from a validated peer certificate with exactly one
/// URI SAN.
pub fn from_peer_certificate(peer: &PeerFacts) -> Result<SpiffeId, IdentityError> {
    from_peer_certificate_cached(peer, &mut CertCache::new(0))
}

/// Like [`from_peer_certificate`], remembering what each certificate yielded:
/// parsing costs about 0.1 ms inside V8, and a caller presents the same
/// certificate on every request. The connection checks run every time; only
/// the parse of identical PEM bytes is skipped, so a hit is exactly as strict.
pub fn from_peer_certificate_cached(
    peer: &PeerFacts,
    cache: &mut CertCache,
) -> Result<SpiffeId, IdentityError> {
    if !peer.mtls {
        return Err(IdentityError::NotMtls);
    }
    if !peer.validated {
        return Err(IdentityError::NotValidated);
    }
    let pem = peer.certificate_pem.ok_or(IdentityError::NoCertificate)?;
    if let Some(known) = cache.entries.get(pem) {
        return known.clone();
    }
    let result = spiffe_id_of_pem(pem);
    if cache.capacity > 0 {
        if cache.entries.len() >= cache.capacity {
            cache.entries.clear();
        }
        cache.entries.insert(pem.to_vec(), result.clone());
    }
    result
}

/// Certificates already parsed, keyed by their exact PEM bytes. Bounded: when
/// full it starts over, which costs only re-parsing.
#[derive(Debug, Default)]
pub struct CertCache {
    entries: std::collections::HashMap<Vec<u8>, Result<SpiffeId, IdentityError>>,
    capacity: usize,
}

impl CertCache {
    pub fn new(capacity: usize) -> Self {
        CertCache {
            entries: Default::default(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn spiffe_id_of_pem(pem: &[u8]) -> Result<SpiffeId, IdentityError> {
    let cert = Certificate::from_pem(pem).map_err(|_| IdentityError::BadCertificate)?;
    let uris = uri_sans(&cert)?;
    match uris.as_slice() {
        [one] => SpiffeId::parse(one).map_err(IdentityError::NotSpiffe),
        other => Err(IdentityError::UriSanCount(other.len())),
    }
}

/// The caller's SPIFFE ID from Istio's `io.istio.peer_principal` filter state,
/// which Istio sets from the validated peer certificate. Istio writes it with
/// or without the `spiffe://` scheme; both are accepted.
pub fn from_istio_principal(peer: &PeerFacts) -> Result<SpiffeId, IdentityError> {
    if !peer.mtls {
        return Err(IdentityError::NotMtls);
    }
    let raw = peer.istio_principal.ok_or(IdentityError::NoPrincipal)?;
    let principal = std::str::from_utf8(raw)
        .map_err(|_| IdentityError::NotSpiffe(SpiffeIdError::BadPathChar))?;
    if principal.starts_with("spiffe://") {
        SpiffeId::parse(principal)
    } else {
        SpiffeId::parse(&format!("spiffe://{principal}"))
    }
    .map_err(IdentityError::NotSpiffe)
}

fn uri_sans(cert: &Certificate) -> Result<Vec<String>, IdentityError> {
    let mut out = Vec::new();
    let extensions = cert.tbs_certificate.extensions.as_deref().unwrap_or(&[]);
    for ext in extensions.iter().filter(|e| e.extn_id == SUBJECT_ALT_NAME) {
        let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
            .map_err(|_| IdentityError::BadCertificate)?;
        for name in san.0 {
            if let GeneralName::UniformResourceIdentifier(uri) = name {
                out.push(uri.as_str().to_owned());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn peer(pem: &'static str) -> PeerFacts<'static> {
        PeerFacts {
            mtls: true,
            validated: true,
            certificate_pem: Some(pem.as_bytes()),
            istio_principal: None,
        }
    }

    #[test]
    fn takes_the_single_spiffe_uri_san() {
        let id = from_peer_certificate(&peer(include_str!("../testdata/one-spiffe.pem"))).unwrap();
        assert_eq!(
            id.as_str(),
            "spiffe://example.org/ns/payments/sa/refund-agent"
        );
    }

    #[test]
    fn refuses_certificates_without_exactly_one_spiffe_uri_san() {
        let cases = [
            (
                include_str!("../testdata/two-spiffe.pem"),
                IdentityError::UriSanCount(2),
            ),
            (
                include_str!("../testdata/spiffe-and-https.pem"),
                IdentityError::UriSanCount(2),
            ),
            (
                include_str!("../testdata/no-san.pem"),
                IdentityError::UriSanCount(0),
            ),
            (
                include_str!("../testdata/https-only.pem"),
                IdentityError::NotSpiffe(SpiffeIdError::WrongScheme),
            ),
            (
                include_str!("../testdata/bad-spiffe.pem"),
                IdentityError::NotSpiffe(SpiffeIdError::BadTrustDomainChar),
            ),
        ];
        for (pem, want) in cases {
            assert_eq!(from_peer_certificate(&peer(pem)), Err(want));
        }
    }

    #[test]
    fn refuses_unverified_or_missing_certificates() {
        let good = include_str!("../testdata/one-spiffe.pem");
        let mut p = peer(good);
        p.mtls = false;
        assert_eq!(from_peer_certificate(&p), Err(IdentityError::NotMtls));
        let mut p = peer(good);
        p.validated = false;
        assert_eq!(from_peer_certificate(&p), Err(IdentityError::NotValidated));
        let mut p = peer(good);
        p.certificate_pem = None;
        assert_eq!(from_peer_certificate(&p), Err(IdentityError::NoCertificate));
        let garbage = peer("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert_eq!(
            from_peer_certificate(&garbage),
            Err(IdentityError::BadCertificate)
        );
        assert_eq!(
            from_peer_certificate(&peer("")),
            Err(IdentityError::BadCertificate)
        );
    }

    #[test]
    fn cache_hits_are_exactly_as_strict_as_misses() {
        let mut cache = CertCache::new(2);
        let good = peer(include_str!("../testdata/one-spiffe.pem"));
        let two = peer(include_str!("../testdata/two-spiffe.pem"));
        for _ in 0..2 {
            assert!(from_peer_certificate_cached(&good, &mut cache).is_ok());
            assert_eq!(
                from_peer_certificate_cached(&two, &mut cache),
                Err(IdentityError::UriSanCount(2))
            );
        }
        assert_eq!(cache.len(), 2);
        // The connection checks are never cached.
        let mut unvalidated = good.clone();
        unvalidated.validated = false;
        assert_eq!(
            from_peer_certificate_cached(&unvalidated, &mut cache),
            Err(IdentityError::NotValidated)
        );
        let mut plain = good.clone();
        plain.mtls = false;
        assert_eq!(
            from_peer_certificate_cached(&plain, &mut cache),
            Err(IdentityError::NotMtls)
        );
        // Full: starts over rather than growing.
        let third = peer(include_str!("../testdata/no-san.pem"));
        assert!(from_peer_certificate_cached(&third, &mut cache).is_err());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn istio_principal_with_or_without_scheme() {
        let mut p = PeerFacts {
            mtls: true,
            istio_principal: Some(b"cluster.local/ns/default/sa/agent"),
            ..Default::default()
        };
        assert_eq!(
            from_istio_principal(&p).unwrap().as_str(),
            "spiffe://cluster.local/ns/default/sa/agent"
        );
        p.istio_principal = Some(b"spiffe://cluster.local/ns/default/sa/agent");
        assert!(from_istio_principal(&p).is_ok());
        p.istio_principal = Some(b"spiffe://cluster.local/ns/../sa/agent");
        assert!(matches!(
            from_istio_principal(&p),
            Err(IdentityError::NotSpiffe(_))
        ));
        p.istio_principal = None;
        assert_eq!(from_istio_principal(&p), Err(IdentityError::NoPrincipal));
        p.istio_principal = Some(b"cluster.local/ns/default/sa/agent");
        p.mtls = false;
        assert_eq!(from_istio_principal(&p), Err(IdentityError::NotMtls));
    }
}
