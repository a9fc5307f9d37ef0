//! Stage 1: who is calling. The caller's SPIFFE ID comes from the verified
//! mTLS peer certificate (or, in Istio, the peer principal that Istio's own
//! filters derived from it), never from anything the caller writes.
//!
//! The peer certificate is held to the X.509-SVID leaf rules
//! ([`custody_history::svid`], the same rulebook as history signers). When
//! `trust_domains` are configured, it must also chain to an authority of its
//! own trust domain (checked here with Custody's own path building, so a
//! federated CA cannot vouch for another trust domain's IDs), and that check
//! stands in for Envoy's validation on resumed TLS sessions, which Envoy
//! reports as not validated.

use crate::peer_chain;
use crate::SpiffeId;
use custody_history::svid::{leaf_spiffe_id, LeafRule};
use custody_history::x509::{parse_cert, ParsedCert};
use custody_history::{caller_path, CallerPath, EcdsaP256Verifier, Limits, Refusal, TrustBundle};
use custody_spiffe::SpiffeIdError;
use std::collections::HashMap;
use std::sync::Arc;

/// Why a connection yields no identity. All of these refuse with `no_identity`;
/// the variant goes to the decision log so operators can tell them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// The connection is not mutual TLS.
    NotMtls,
    /// Envoy did not validate the peer certificate (no `validation_context`,
    /// or a resumed TLS session) and no `trust_domains` let Custody check it.
    NotValidated,
    NoCertificate,
    /// The peer certificate could not be parsed (not strict DER X.509).
    BadCertificate(&'static str),
    /// The peer certificate breaks an X.509-SVID leaf rule.
    NotSvid(LeafRule),
    /// Istio's peer principal filter state is absent.
    NoPrincipal,
    /// Istio's peer principal is not a SPIFFE ID.
    BadPrincipal(SpiffeIdError),
    /// Istio's peer principal and the peer certificate's SPIFFE ID differ.
    PrincipalMismatch {
        principal: String,
        certificate: String,
    },
    /// The certificate does not chain to an authority of its own trust
    /// domain (the refusal says which check failed).
    Untrusted(Refusal),
    /// The forwarded chain has more certificates than the cap.
    ChainTooLong(usize),
    /// A certificate of the path is not valid now (0 = the leaf).
    Expired(usize),
    NotYetValid(usize),
}

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotMtls => f.write_str("connection is not mutual TLS"),
            Self::NotValidated => f.write_str(
                "peer certificate was not validated by Envoy (a resumed TLS session?) and no trust_domains are configured for Custody to check it",
            ),
            Self::NoCertificate => f.write_str("no peer certificate"),
            Self::BadCertificate(what) => write!(f, "peer certificate does not parse: {what}"),
            Self::NotSvid(rule) => write!(f, "peer certificate {rule}"),
            Self::NoPrincipal => f.write_str("no Istio peer principal"),
            Self::BadPrincipal(e) => write!(f, "Istio peer principal is not a SPIFFE ID: {e}"),
            Self::PrincipalMismatch {
                principal,
                certificate,
            } => write!(
                f,
                "Istio peer principal {principal} differs from the peer certificate's SPIFFE ID {certificate}"
            ),
            Self::Untrusted(r) => write!(f, "{}: {}", r.reason(), r.detail()),
            Self::ChainTooLong(n) => {
                write!(f, "the forwarded client certificate chain has {n} certificates, over the cap")
            }
            Self::Expired(0) => f.write_str("peer certificate is expired"),
            Self::Expired(d) => write!(f, "the certificate at depth {d} of the peer's path is expired"),
            Self::NotYetValid(0) => f.write_str("peer certificate is not yet valid"),
            Self::NotYetValid(d) => {
                write!(f, "the certificate at depth {d} of the peer's path is not yet valid")
            }
        }
    }
}

/// Facts about the downstream connection, as the host reports them.
#[derive(Debug, Clone, Default)]
pub struct PeerFacts<'a> {
    /// `connection.mtls`: a client certificate was presented.
    pub mtls: bool,
    /// `connection.peer_certificate_valid`: Envoy validated it (false on a
    /// resumed TLS session).
    pub validated: bool,
    /// `connection.peer_certificate`: the leaf certificate, PEM. Not needed
    /// when the digest names a certificate the cache knows ([`CertCache::knows`]).
    pub certificate_pem: Option<&'a [u8]>,
    /// `connection.sha256_peer_certificate_digest`: lowercase hex SHA-256 of
    /// the leaf's DER.
    pub certificate_digest: Option<&'a [u8]>,
    /// `filter_state io.istio.peer_principal`.
    pub istio_principal: Option<&'a [u8]>,
    /// The `x-forwarded-client-cert` request header, for the intermediates
    /// of the caller's chain (see [`peer_chain`]).
    pub forwarded_cert: Option<&'a [u8]>,
}

/// What the trust-domain check needs: the configured authorities.
#[derive(Clone, Copy)]
pub struct Authorities<'a> {
    pub bundle: &'a TrustBundle,
    /// Depth cap, certificate cap and signature budget, and clock skew.
    pub limits: &'a Limits,
    pub ecdsa: &'a dyn EcdsaP256Verifier,
    /// Unix time, seconds.
    pub now: u64,
}

/// The caller's SPIFFE ID from its peer certificate: mutual TLS, the
/// X.509-SVID leaf rules, then either Envoy's validation or (with
/// `authorities`, always) a path to an authority of its own trust domain,
/// valid now.
pub fn from_peer_certificate(
    peer: &PeerFacts,
    authorities: Option<&Authorities>,
    cache: &mut CertCache,
) -> Result<SpiffeId, IdentityError> {
    if !peer.mtls {
        return Err(IdentityError::NotMtls);
    }
    let (key, leaf) = cache.leaf(peer)?;
    match authorities {
        Some(auth) => {
            let forwarded = peer.forwarded_cert.unwrap_or_default();
            let path = cache.path(key, &leaf, forwarded, auth)?;
            path.valid_at(auth.now, auth.limits.skew_secs)
                .map_err(|(depth, expired)| {
                    if expired {
                        IdentityError::Expired(depth)
                    } else {
                        IdentityError::NotYetValid(depth)
                    }
                })?;
        }
        None if !peer.validated => return Err(IdentityError::NotValidated),
        None => {}
    }
    Ok(leaf.id.clone())
}

/// The caller's SPIFFE ID from Istio's `io.istio.peer_principal` filter state,
/// which Istio sets from the peer certificate's first URI SAN. Istio writes it
/// with or without the `spiffe://` scheme; both are accepted. The peer
/// certificate itself must pass the X.509-SVID leaf rules and carry exactly
/// that SPIFFE ID. Envoy's validation flag is not consulted: Istio's
/// sidecars resume TLS sessions, which Envoy reports as not validated.
pub fn from_istio_principal(
    peer: &PeerFacts,
    cache: &mut CertCache,
) -> Result<SpiffeId, IdentityError> {
    if !peer.mtls {
        return Err(IdentityError::NotMtls);
    }
    let raw = peer.istio_principal.ok_or(IdentityError::NoPrincipal)?;
    let principal = std::str::from_utf8(raw)
        .map_err(|_| IdentityError::BadPrincipal(SpiffeIdError::BadPathChar))?;
    let principal = if principal.starts_with("spiffe://") {
        SpiffeId::parse(principal)
    } else {
        SpiffeId::parse(&format!("spiffe://{principal}"))
    }
    .map_err(IdentityError::BadPrincipal)?;
    let (_, leaf) = cache.leaf(peer)?;
    if leaf.id != principal {
        return Err(IdentityError::PrincipalMismatch {
            principal: principal.to_string(),
            certificate: leaf.id.to_string(),
        });
    }
    Ok(principal)
}

/// The peer certificate's key in the cache, the forwarded chain's text, the
/// trust bundle's fingerprint.
type PathKey = (Vec<u8>, Vec<u8>, [u8; 32]);

/// A peer certificate that passed the leaf rules.
#[derive(Debug)]
pub struct Leaf {
    cert: ParsedCert,
    id: SpiffeId,
}

/// What peer certificates yielded, keyed by the SHA-256 of their DER (hex,
/// as Envoy's `connection.sha256_peer_certificate_digest` gives it, checked
/// against the parsed certificate) or else their exact PEM bytes (and, for
/// paths, the forwarded chain's text and the trust bundle's fingerprint):
/// parsing costs about 0.1 ms inside V8, and a caller presents the same
/// certificate on every request; with the digest the host need not even hand
/// over the PEM (1.3 KB) again. A hit is exactly as strict as a miss: only
/// work that depends on nothing but those bytes, the configuration (the
/// cache lives as long as one configuration) and the trust bundle is
/// skipped, so a path to an authority that a newer bundle removed is not
/// found again; the connection checks and the certificate times at now run
/// on every request. Bounded: when full it starts over.
#[derive(Debug, Default)]
pub struct CertCache {
    leaves: HashMap<Vec<u8>, Result<Arc<Leaf>, IdentityError>>,
    paths: HashMap<PathKey, Result<CallerPath, IdentityError>>,
    capacity: usize,
}

impl CertCache {
    pub fn new(capacity: usize) -> Self {
        CertCache {
            capacity,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Whether the certificate whose DER has this SHA-256 (hex) passed the
    /// leaf rules before: the host need not hand over its PEM.
    pub fn knows(&self, digest: &[u8]) -> bool {
        self.leaves.contains_key(digest)
    }

    /// The peer certificate as parsed, and its key in the cache: the digest
    /// when the host gave one and it is the SHA-256 of the certificate's DER
    /// (checked when the certificate is parsed, so a digest only ever finds
    /// the certificate it hashes), else the exact PEM bytes. A certificate
    /// that failed the rules is remembered by its PEM.
    fn leaf<'p>(&mut self, peer: &PeerFacts<'p>) -> Result<(&'p [u8], Arc<Leaf>), IdentityError> {
        if let Some(digest) = peer.certificate_digest {
            if let Some(Ok(known)) = self.leaves.get(digest) {
                return Ok((digest, Arc::clone(known)));
            }
        }
        let pem = peer.certificate_pem.ok_or(IdentityError::NoCertificate)?;
        if let Some(known) = self.leaves.get(pem) {
            return known.clone().map(|leaf| (pem, leaf));
        }
        let result = parse_leaf(pem).map(Arc::new);
        let key = match (&result, peer.certificate_digest) {
            (Ok(leaf), Some(digest))
                if digest == custody_history::hex(&leaf.cert.sha256()).as_bytes() =>
            {
                digest
            }
            _ => pem,
        };
        if self.capacity > 0 {
            if self.leaves.len() >= self.capacity {
                self.leaves.clear();
            }
            self.leaves.insert(key.to_vec(), result.clone());
        }
        result.map(|leaf| (key, leaf))
    }

    fn path(
        &mut self,
        leaf_key: &[u8],
        leaf: &Leaf,
        forwarded: &[u8],
        auth: &Authorities,
    ) -> Result<CallerPath, IdentityError> {
        let key = (
            leaf_key.to_vec(),
            forwarded.to_vec(),
            auth.bundle.fingerprint(),
        );
        if let Some(known) = self.paths.get(&key) {
            return known.clone();
        }
        let result = leaf_path(leaf, forwarded, auth);
        if self.capacity > 0 {
            if self.paths.len() >= self.capacity {
                self.paths.clear();
            }
            self.paths.insert(key, result.clone());
        }
        result
    }
}

fn parse_leaf(pem: &[u8]) -> Result<Leaf, IdentityError> {
    let (label, der) =
        der::pem::decode_vec(pem).map_err(|_| IdentityError::BadCertificate("not PEM"))?;
    if label != "CERTIFICATE" {
        return Err(IdentityError::BadCertificate("not a PEM CERTIFICATE"));
    }
    let cert = parse_cert(&der).map_err(IdentityError::BadCertificate)?;
    let id = leaf_spiffe_id(&cert).map_err(IdentityError::NotSvid)?;
    Ok(Leaf { cert, id })
}

fn leaf_path(
    leaf: &Leaf,
    forwarded: &[u8],
    auth: &Authorities,
) -> Result<CallerPath, IdentityError> {
    let xfcc = std::str::from_utf8(forwarded).unwrap_or_default();
    let intermediates = peer_chain::intermediates(xfcc, &leaf.cert.sha256(), auth.limits.max_certs)
        .map_err(|e| IdentityError::ChainTooLong(e.0))?;
    caller_path(
        &leaf.cert,
        leaf.id.trust_domain(),
        &intermediates,
        auth.bundle,
        auth.limits,
        auth.ecdsa,
    )
    .map_err(IdentityError::Untrusted)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use custody_history::P256Verifier;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Certificates made by history/tests/gen_testdata.rs (`generate_peer`):
    /// CAs valid 2026-01-01..2031-01-01, leaves 2026-04-01..2026-06-01.
    macro_rules! pem {
        ($name:literal) => {
            include_str!(concat!("../testdata/peer/", $name, ".pem"))
        };
    }
    use custody_testkit::NOW;
    const AGENT: &str = "spiffe://example.org/ns/payments/sa/refund-agent";

    fn peer(pem: &'static str) -> PeerFacts<'static> {
        PeerFacts {
            mtls: true,
            validated: true,
            certificate_pem: Some(pem.as_bytes()),
            ..Default::default()
        }
    }

    fn id(p: &PeerFacts, auth: Option<&Authorities>) -> Result<SpiffeId, IdentityError> {
        from_peer_certificate(p, auth, &mut CertCache::new(0))
    }

    /// example.org and other.org, federated.
    fn federation() -> TrustBundle {
        let mut b = TrustBundle::new();
        b.add_pem("example.org", pem!("example-ca")).unwrap();
        b.add_pem("other.org", pem!("other-ca")).unwrap();
        b
    }

    fn with<'a>(bundle: &'a TrustBundle, limits: &'a Limits, now: u64) -> Authorities<'a> {
        Authorities {
            bundle,
            limits,
            ecdsa: &P256Verifier,
            now,
        }
    }

    #[test]
    fn takes_the_single_spiffe_uri_san() {
        assert_eq!(id(&peer(pem!("agent")), None).unwrap().as_str(), AGENT);
    }

    #[test]
    fn holds_the_peer_to_the_x509_svid_leaf_rules() {
        let cases = [
            (pem!("is-ca"), LeafRule::IsCa),
            (pem!("key-cert-sign"), LeafRule::SignsCertificates),
            (pem!("no-key-usage"), LeafRule::KeyUsageMissing),
            (
                pem!("key-usage-not-critical"),
                LeafRule::KeyUsageNotCritical,
            ),
            (pem!("server-auth-only"), LeafRule::ExtKeyUsage),
            (pem!("root-id"), LeafRule::RootId),
            (pem!("two-spiffe"), LeafRule::UriSanCount(2)),
            (pem!("spiffe-and-https"), LeafRule::UriSanCount(2)),
            (pem!("no-san"), LeafRule::UriSanCount(0)),
            (
                pem!("https-only"),
                LeafRule::NotSpiffeId(SpiffeIdError::WrongScheme),
            ),
            (
                pem!("bad-spiffe"),
                LeafRule::NotSpiffeId(SpiffeIdError::BadTrustDomainChar),
            ),
        ];
        let bundle = federation();
        let limits = Limits::default();
        for (pem, rule) in cases {
            let want = Err(IdentityError::NotSvid(rule));
            assert_eq!(id(&peer(pem), None), want);
            // The same whether Envoy validated it or Custody checks the path.
            assert_eq!(id(&peer(pem), Some(&with(&bundle, &limits, NOW))), want);
        }
    }

    #[test]
    fn refuses_unverified_or_missing_certificates() {
        let good = pem!("agent");
        let mut p = peer(good);
        p.mtls = false;
        assert_eq!(id(&p, None), Err(IdentityError::NotMtls));
        let mut p = peer(good);
        p.validated = false;
        assert_eq!(id(&p, None), Err(IdentityError::NotValidated));
        let mut p = peer(good);
        p.certificate_pem = None;
        assert_eq!(id(&p, None), Err(IdentityError::NoCertificate));
        let garbage = peer("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert!(matches!(
            id(&garbage, None),
            Err(IdentityError::BadCertificate(_))
        ));
        assert!(matches!(
            id(&peer(""), None),
            Err(IdentityError::BadCertificate(_))
        ));
    }

    #[test]
    fn a_trust_domain_is_vouched_for_only_by_its_own_authorities() {
        let bundle = federation();
        let limits = Limits::default();
        let auth = with(&bundle, &limits, NOW);
        assert_eq!(
            id(&peer(pem!("agent")), Some(&auth)).unwrap().as_str(),
            AGENT
        );
        assert!(id(&peer(pem!("other-agent")), Some(&auth)).is_ok());
        // Minted by other.org's CA with an example.org SPIFFE ID.
        match id(&peer(pem!("forged-federation")), Some(&auth)) {
            Err(IdentityError::Untrusted(r)) => assert_eq!(r.reason(), "cert_untrusted"),
            other => panic!("{other:?}"),
        }
        // A trust domain with no authorities configured.
        let mut only_other = TrustBundle::new();
        only_other.add_pem("other.org", pem!("other-ca")).unwrap();
        match id(&peer(pem!("agent")), Some(&with(&only_other, &limits, NOW))) {
            Err(IdentityError::Untrusted(r)) => {
                assert_eq!(r.reason(), "cert_unknown_trust_domain")
            }
            other => panic!("{other:?}"),
        }
    }

    /// `x-forwarded-client-cert` as Envoy writes it with `chain: true`.
    fn xfcc(leaf: &str, chain: &[&str]) -> String {
        let der = der::pem::decode_vec(leaf.as_bytes()).unwrap().1;
        let hash: String = custody_history::sha256(&der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let pem: String = chain.concat();
        let encoded = pem.replace(' ', "%20").replace('\n', "%0A");
        format!("By=spiffe://example.org/ns/tools/sa/server;Hash={hash};Chain=\"{encoded}\";URI={AGENT}")
    }

    #[test]
    fn intermediates_come_from_the_forwarded_chain_and_must_verify() {
        let bundle = federation();
        let limits = Limits::default();
        let auth = with(&bundle, &limits, NOW);
        let leaf = pem!("via-intermediate");
        // Without the intermediate there is no path.
        match id(&peer(leaf), Some(&auth)) {
            Err(IdentityError::Untrusted(r)) => assert_eq!(r.reason(), "cert_untrusted"),
            other => panic!("{other:?}"),
        }
        let header = xfcc(leaf, &[leaf, pem!("intermediate")]);
        let mut p = peer(leaf);
        p.forwarded_cert = Some(header.as_bytes());
        assert_eq!(id(&p, Some(&auth)).unwrap().as_str(), AGENT);
        // An element for another leaf is not used.
        let header = xfcc(pem!("agent"), &[leaf, pem!("intermediate")]);
        p.forwarded_cert = Some(header.as_bytes());
        assert!(id(&p, Some(&auth)).is_err());
        // A forged chain (other.org's CA offered as the intermediate) fails.
        let header = xfcc(leaf, &[leaf, pem!("other-ca")]);
        p.forwarded_cert = Some(header.as_bytes());
        assert!(matches!(
            id(&p, Some(&auth)),
            Err(IdentityError::Untrusted(_))
        ));
        // More certificates than the cap.
        let small = Limits {
            max_certs: 1,
            ..Limits::default()
        };
        let header = xfcc(leaf, &[leaf, pem!("intermediate"), pem!("example-ca")]);
        p.forwarded_cert = Some(header.as_bytes());
        assert_eq!(
            id(&p, Some(&with(&bundle, &small, NOW))),
            Err(IdentityError::ChainTooLong(2))
        );
    }

    #[test]
    fn custodys_own_check_stands_in_for_envoys_on_resumed_sessions() {
        let bundle = federation();
        let limits = Limits::default();
        let mut resumed = peer(pem!("agent"));
        resumed.validated = false;
        assert_eq!(id(&resumed, None), Err(IdentityError::NotValidated));
        assert!(id(&resumed, Some(&with(&bundle, &limits, NOW))).is_ok());
        // A rotation that removed the authority: the same session is refused.
        let mut rotated = TrustBundle::new();
        rotated.add_pem("example.org", pem!("other-ca")).unwrap();
        assert!(id(&resumed, Some(&with(&rotated, &limits, NOW))).is_err());
        // The certificate's validity is checked at now (Envoy checked it at the handshake).
        let mut old = peer(pem!("expired"));
        old.validated = false;
        assert_eq!(
            id(&old, Some(&with(&bundle, &limits, NOW))),
            Err(IdentityError::Expired(0))
        );
        let late = 1_780_272_000 + 31;
        assert_eq!(
            id(&resumed, Some(&with(&bundle, &limits, late))),
            Err(IdentityError::Expired(0))
        );
    }

    #[test]
    fn cache_hits_are_exactly_as_strict_as_misses() {
        let bundle = federation();
        let limits = Limits::default();
        let auth = with(&bundle, &limits, NOW);
        let mut cache = CertCache::new(2);
        let good = peer(pem!("agent"));
        let two = peer(pem!("two-spiffe"));
        for _ in 0..2 {
            assert!(from_peer_certificate(&good, Some(&auth), &mut cache).is_ok());
            assert_eq!(
                from_peer_certificate(&two, None, &mut cache),
                Err(IdentityError::NotSvid(LeafRule::UriSanCount(2)))
            );
        }
        assert_eq!(cache.len(), 2);
        // The connection checks and times are never cached.
        let mut plain = good.clone();
        plain.mtls = false;
        assert_eq!(
            from_peer_certificate(&plain, Some(&auth), &mut cache),
            Err(IdentityError::NotMtls)
        );
        let mut unvalidated = good.clone();
        unvalidated.validated = false;
        assert_eq!(
            from_peer_certificate(&unvalidated, None, &mut cache),
            Err(IdentityError::NotValidated)
        );
        let late = with(&bundle, &limits, 1_780_272_000 + 31);
        assert_eq!(
            from_peer_certificate(&good, Some(&late), &mut cache),
            Err(IdentityError::Expired(0))
        );
        // Full: starts over rather than growing.
        let third = peer(pem!("no-san"));
        assert!(from_peer_certificate(&third, None, &mut cache).is_err());
        assert_eq!(cache.len(), 1);
    }

    /// Envoy's `connection.sha256_peer_certificate_digest` of a PEM certificate.
    fn digest_of(pem: &str) -> String {
        let (_, der) = der::pem::decode_vec(pem.as_bytes()).unwrap();
        custody_history::hex(&custody_history::sha256(&der))
    }

    #[test]
    fn a_digest_finds_only_the_certificate_it_hashes() {
        let bundle = federation();
        let limits = Limits::default();
        let auth = with(&bundle, &limits, NOW);
        let mut cache = CertCache::new(16);
        let agent_digest = digest_of(pem!("agent"));
        let mut good = peer(pem!("agent"));
        good.certificate_digest = Some(agent_digest.as_bytes());
        assert!(!cache.knows(agent_digest.as_bytes()));
        assert_eq!(
            from_peer_certificate(&good, Some(&auth), &mut cache)
                .unwrap()
                .as_str(),
            AGENT
        );
        assert!(cache.knows(agent_digest.as_bytes()));
        // Known by its digest: the PEM is not needed, and the checks of the
        // connection, the path and the times still run on every request.
        let mut by_digest = good.clone();
        by_digest.certificate_pem = None;
        assert_eq!(
            from_peer_certificate(&by_digest, Some(&auth), &mut cache)
                .unwrap()
                .as_str(),
            AGENT
        );
        by_digest.mtls = false;
        assert_eq!(
            from_peer_certificate(&by_digest, None, &mut cache),
            Err(IdentityError::NotMtls)
        );
        by_digest.mtls = true;
        let late = with(&bundle, &limits, 1_780_272_000 + 31);
        assert_eq!(
            from_peer_certificate(&by_digest, Some(&late), &mut cache),
            Err(IdentityError::Expired(0))
        );
        let mut other_domain = TrustBundle::new();
        other_domain
            .add_pem("example.org", pem!("other-ca"))
            .unwrap();
        assert!(matches!(
            from_peer_certificate(
                &by_digest,
                Some(&with(&other_domain, &limits, NOW)),
                &mut cache
            ),
            Err(IdentityError::Untrusted(_))
        ));
        // A digest that is not the certificate's never becomes its key: an
        // unknown digest needs the PEM, and a certificate parsed under a
        // wrong digest is not found by it.
        let stranger = "00".repeat(32);
        let mut lying = peer(pem!("agent"));
        lying.certificate_digest = Some(stranger.as_bytes());
        assert!(from_peer_certificate(&lying, None, &mut cache).is_ok());
        assert!(!cache.knows(stranger.as_bytes()));
        lying.certificate_pem = None;
        assert_eq!(
            from_peer_certificate(&lying, None, &mut cache),
            Err(IdentityError::NoCertificate)
        );
        // A certificate that fails the rules is remembered by its PEM only.
        let is_ca_digest = digest_of(pem!("is-ca"));
        let mut bad = peer(pem!("is-ca"));
        bad.certificate_digest = Some(is_ca_digest.as_bytes());
        for _ in 0..2 {
            assert_eq!(
                from_peer_certificate(&bad, None, &mut cache),
                Err(IdentityError::NotSvid(LeafRule::IsCa))
            );
        }
        assert!(!cache.knows(is_ca_digest.as_bytes()));
    }

    #[test]
    fn a_cached_path_does_not_outlive_the_bundle_it_was_found_in() {
        // A bundle endpoint rotates the bundle under a live cache (one per VM).
        let limits = Limits::default();
        let mut cache = CertCache::new(16);
        let good = peer(pem!("agent"));
        let mut without = TrustBundle::new();
        without.add_pem("example.org", pem!("other-ca")).unwrap();
        let with_it = federation();
        let seen = |bundle: &TrustBundle, cache: &mut CertCache| {
            from_peer_certificate(&good, Some(&with(bundle, &limits, NOW)), cache).is_ok()
        };
        assert!(!seen(&without, &mut cache));
        assert!(
            seen(&with_it, &mut cache),
            "an added authority is seen at once"
        );
        assert!(
            !seen(&without, &mut cache),
            "a removed authority is gone at once"
        );
        assert!(seen(&with_it, &mut cache));
    }

    #[test]
    fn istio_principal_must_match_the_peer_certificate() {
        let mut cache = CertCache::new(0);
        let mut p = PeerFacts {
            mtls: true,
            istio_principal: Some(b"example.org/ns/payments/sa/refund-agent"),
            certificate_pem: Some(pem!("agent").as_bytes()),
            ..Default::default()
        };
        assert_eq!(
            from_istio_principal(&p, &mut cache).unwrap().as_str(),
            AGENT
        );
        p.istio_principal = Some(AGENT.as_bytes());
        assert!(from_istio_principal(&p, &mut cache).is_ok());
        // A resumed session (not validated) is fine in this mode.
        p.validated = false;
        assert!(from_istio_principal(&p, &mut cache).is_ok());
        // The principal and the certificate disagree.
        p.istio_principal = Some(b"spiffe://example.org/ns/other/sa/x");
        assert!(matches!(
            from_istio_principal(&p, &mut cache),
            Err(IdentityError::PrincipalMismatch { .. })
        ));
        // The certificate breaks a leaf rule.
        p.istio_principal = Some(AGENT.as_bytes());
        p.certificate_pem = Some(pem!("is-ca").as_bytes());
        assert_eq!(
            from_istio_principal(&p, &mut cache),
            Err(IdentityError::NotSvid(LeafRule::IsCa))
        );
        p.certificate_pem = None;
        assert_eq!(
            from_istio_principal(&p, &mut cache),
            Err(IdentityError::NoCertificate)
        );
        p.certificate_pem = Some(pem!("agent").as_bytes());
        p.istio_principal = Some(b"spiffe://example.org/ns/../sa/agent");
        assert!(matches!(
            from_istio_principal(&p, &mut cache),
            Err(IdentityError::BadPrincipal(_))
        ));
        p.istio_principal = None;
        assert_eq!(
            from_istio_principal(&p, &mut cache),
            Err(IdentityError::NoPrincipal)
        );
        p.istio_principal = Some(AGENT.as_bytes());
        p.mtls = false;
        assert_eq!(
            from_istio_principal(&p, &mut cache),
            Err(IdentityError::NotMtls)
        );
    }
}
