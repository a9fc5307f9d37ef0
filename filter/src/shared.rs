//! What every request of one VM shares: the configuration (or why it did not
//! load), the trust bundle in effect, the counters, the caches, the ECDSA
//! verifier and the etcd leases. Built by the root context at configure
//! time, read by each HTTP context.

use crate::metrics::Metrics;
use custody_core::config::Config;
use custody_core::identity::CertCache;
use custody_core::input::InputCache;
use custody_core::ledger::lease::LeaseBook;
use custody_history::{EcdsaP256Verifier, P256Verifier, TrustBundle, VerifyCache};
use std::cell::RefCell;

pub struct Shared {
    pub config: Result<Config, String>,
    /// What history signers and callers must chain to: the configured
    /// bundles, with those of bundle endpoints kept current by the root
    /// context's timer (`crate::bundles`). Caches key on its fingerprint.
    pub trust: RefCell<TrustBundle>,
    pub metrics: Metrics,
    /// Peer certificates already parsed (a VM serves one request at a time).
    pub certs: RefCell<CertCache>,
    /// History entries and signer certificates already verified.
    pub verified: RefCell<VerifyCache>,
    /// What Rego input documents share: keys, verified entries' values.
    pub input: RefCell<InputCache>,
    pub ecdsa: Box<dyn EcdsaP256Verifier>,
    /// Hold request headers until the decision (`headers`, `auto` resolved).
    pub hold_headers: bool,
    /// The etcd leases this VM knows exist (the etcd ledger).
    pub leases: RefCell<LeaseBook>,
}

/// Distinct peer certificates remembered per VM.
const CERT_CACHE_SIZE: usize = 1024;
/// Verified history entries and signer certificates remembered per VM.
const VERIFIED_ENTRIES: usize = 4096;
const VERIFIED_CERTS: usize = 1024;
/// Verified entries kept as Rego values per VM, and their text at most.
const INPUT_ENTRIES: usize = 1024;
const INPUT_BYTES: usize = 1 << 20;

impl Shared {
    pub fn new(
        config: Result<Config, String>,
        trust: TrustBundle,
        metrics: Metrics,
        ecdsa: Box<dyn EcdsaP256Verifier>,
        hold_headers: bool,
    ) -> Shared {
        Shared {
            config,
            trust: RefCell::new(trust),
            metrics,
            certs: RefCell::new(CertCache::new(CERT_CACHE_SIZE)),
            verified: RefCell::new(VerifyCache::new(VERIFIED_ENTRIES, VERIFIED_CERTS)),
            input: RefCell::new(InputCache::new(INPUT_ENTRIES, INPUT_BYTES)),
            ecdsa,
            hold_headers,
            leases: RefCell::default(),
        }
    }

    /// For a request that arrives before any configuration: refuses everything.
    pub fn unconfigured() -> Shared {
        Shared {
            config: Err("plugin was never configured".to_owned()),
            trust: RefCell::default(),
            metrics: Metrics::default(),
            certs: RefCell::default(),
            verified: RefCell::new(VerifyCache::new(0, 0)),
            input: RefCell::new(InputCache::new(0, 0)),
            ecdsa: Box::new(P256Verifier),
            hold_headers: true,
            leases: RefCell::default(),
        }
    }
}
