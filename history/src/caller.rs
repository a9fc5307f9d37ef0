//! The mTLS caller's certificate against the trust bundle: the same path
//! building as for history signers ([`crate::path`]), so that a SPIFFE ID is
//! only accepted when an authority of its own trust domain vouches for it
//! (in a federated bundle, other.org's CA cannot speak for example.org).
//! The leaf X.509-SVID rules ([`crate::svid::leaf_spiffe_id`]) are the
//! caller's to apply first.

use std::sync::Arc;

use crate::bundle::TrustBundle;
use crate::ecdsa::EcdsaP256Verifier;
use crate::error::{Part, Refusal};
use crate::path::{check_times_at, Path, PathSearch};
use crate::verify::Limits;
use crate::x509::ParsedCert;

/// A caller's certificate path that passed every time-independent check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerPath(Path);

impl CallerPath {
    /// Whether every certificate of the path is valid at `now` ± `skew`:
    /// `Err((depth, expired))` names the first that is not (0 = the leaf).
    pub fn valid_at(&self, now: u64, skew: u64) -> Result<(), (usize, bool)> {
        check_times_at(&self.0, now, skew)
    }

    /// Certificates in the path below the authority (the leaf included).
    pub fn depth(&self) -> usize {
        self.0 .0.len().saturating_sub(1)
    }
}

/// The path from the caller's `leaf` (whose SPIFFE ID is in `trust_domain`)
/// through `intermediates` (as the caller sent them; at most
/// `limits.max_certs`) to an authority of `trust_domain` in `bundle`, with
/// at most `limits.path_signature_budget()` signature checks. Refusals are
/// the history format's certificate codes, about [`Part::Peer`].
pub fn caller_path(
    leaf: &ParsedCert,
    trust_domain: &str,
    intermediates: &[Arc<ParsedCert>],
    bundle: &TrustBundle,
    limits: &Limits,
    ecdsa: &dyn EcdsaP256Verifier,
) -> Result<CallerPath, Refusal> {
    let part = Part::Peer;
    if bundle.authorities(trust_domain).is_none() {
        return Err(Refusal::CertUnknownTrustDomain {
            part,
            trust_domain: trust_domain.to_owned(),
        });
    }
    if intermediates.len() > limits.max_certs {
        return Err(Refusal::CertsTooMany {
            len: intermediates.len(),
            max: limits.max_certs,
        });
    }
    let mut search = PathSearch::new(
        intermediates,
        ecdsa,
        limits.max_chain_depth,
        limits.path_signature_budget(),
    );
    search
        .find(leaf, trust_domain, bundle)
        .map(CallerPath)
        .map_err(|failure| failure.refusal(part))
}
