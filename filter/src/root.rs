//! The root context: one per VM (one per worker thread, plus the main
//! thread). It parses the plugin configuration once and shares it with every
//! request of its VM. A configuration that does not load is kept as an error:
//! the filter then answers every request with 503 `config_invalid` rather
//! than failing Envoy's startup, and says why in the log.

use crate::http::Request;
use crate::metrics::Metrics;
use crate::{ecdsa, host, replay, sequence};
use custody_core::config::{Config, HeaderMode};
use custody_core::identity::CertCache;
use custody_history::{EcdsaP256Verifier, VerifyCache};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;

/// What every request of this VM shares.
pub struct Shared {
    pub config: Result<Config, String>,
    pub metrics: Metrics,
    /// Peer certificates already parsed (a VM serves one request at a time).
    pub certs: RefCell<CertCache>,
    /// History entries and signer certificates already verified.
    pub verified: RefCell<VerifyCache>,
    pub ecdsa: Box<dyn EcdsaP256Verifier>,
    /// Hold request headers until the decision (`headers`, `auto` resolved).
    pub hold_headers: bool,
}

/// Distinct peer certificates remembered per VM.
const CERT_CACHE_SIZE: usize = 1024;
/// Verified history entries and signer certificates remembered per VM.
const VERIFIED_ENTRIES: usize = 4096;
const VERIFIED_CERTS: usize = 1024;

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = match host::plugin_configuration() {
            None => Err("no plugin configuration".to_owned()),
            Some(bytes) => Config::from_json(&bytes),
        }
        .and_then(|c| sequence::check_and_record(&c.trust).map(|()| c));
        let (ecdsa, ecdsa_name) = ecdsa::detect();
        let under_istio = host::property(&["node", "metadata", "ISTIO_VERSION"]).is_some();
        let hold_headers = match config.as_ref().map(|c| c.headers) {
            Ok(HeaderMode::Hold) | Err(_) => true,
            Ok(HeaderMode::Stream) => false,
            Ok(HeaderMode::Auto) => !under_istio,
        };
        match &config {
            Ok(c) => {
                if c.verifies_history() {
                    replay::create_slots();
                }
                host::log(
                    LogLevel::Info,
                    &format!(
                        "custody: configured: mode={:?} identity={:?} rules={} trust_domains={} ecdsa={ecdsa_name} headers={}",
                        c.mode,
                        c.identity,
                        c.policy.rules.len(),
                        c.trust_domains.len(),
                        if hold_headers { "hold" } else { "stream" },
                    ),
                )
            }
            Err(e) => host::log(
                LogLevel::Critical,
                &format!("custody: configuration refused, every request will be denied (503 config_invalid): {e}"),
            ),
        }
        self.shared = Some(Rc::new(Shared {
            config,
            metrics: Metrics::define(),
            certs: RefCell::new(CertCache::new(CERT_CACHE_SIZE)),
            verified: RefCell::new(VerifyCache::new(VERIFIED_ENTRIES, VERIFIED_CERTS)),
            ecdsa,
            hold_headers,
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone().unwrap_or_else(|| {
            Rc::new(Shared {
                config: Err("plugin was never configured".to_owned()),
                metrics: Metrics::default(),
                certs: RefCell::default(),
                verified: RefCell::new(VerifyCache::new(0, 0)),
                ecdsa: Box::new(custody_history::P256Verifier),
                hold_headers: true,
            })
        });
        Some(Box::new(Request::new(shared)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
