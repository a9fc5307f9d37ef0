//! The root context: one per VM (one per worker thread, plus the main
//! thread). It parses the plugin configuration once and shares it with every
//! request of its VM.
//!
//! A configuration the filter's parser refuses makes `on_configure` return
//! false. The verdict depends only on the configuration's bytes, so Envoy's
//! first VM (its configuration check, on the main thread) gets it before any
//! worker VM exists: Envoy does not start, `--mode validate` fails, and an
//! LDS or ECDS update is rejected while the previous configuration keeps
//! serving. Nothing that could differ between VMs (the SPIFFE bundle
//! sequence kept in shared data) ever returns false: a worker VM whose
//! `on_configure` fails would serve its requests without the filter. Such a
//! failure is kept as an error instead, and every request of that VM gets
//! 503 `config_invalid` (docs/configuration.md, "A configuration that does
//! not load"). On a timer (one tick handler for both) it keeps the trust
//! bundles of bundle endpoints current and, with the etcd ledger, grants
//! the leases requests will need.

use crate::bundles::{self, Bundles};
use crate::http::RequestContext;
use crate::ledger::{self, Granter};
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::{ecdsa, host, metrics, replay};
use custody_core::config::Config;
use custody_core::{act, policy_bundle};
use custody_history::TrustBundle;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::rc::Rc;

/// This build, for the configure log line and `custody_build_info`.
const VERSION: &str = env!("CARGO_PKG_VERSION");
const REVISION: &str = env!("CUSTODY_GIT_REVISION");

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
    bundles: Bundles,
    granter: Granter,
    /// When the etcd leases are looked at next (Unix µs).
    next_grant: u64,
    ticked: bool,
}

impl Context for Root {
    /// A bundle fetch or a lease grant answered.
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Ok(config) = &shared.config else {
            return;
        };
        if self.bundles.answered(&shared, config, token, body_size) {
            return;
        }
        if let Some(etcd) = config.ledger.etcd() {
            self.granter.answered(&shared, etcd, token, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let parsed = match host::plugin_configuration() {
            None => Err("no plugin configuration".to_owned()),
            Some(bytes) => Config::from_json(&bytes),
        };
        let config = match parsed {
            Ok(config) => config,
            Err(e) => {
                host::log(
                    LogLevel::Critical,
                    &format!("configuration refused (Envoy keeps the previous configuration, or does not start): {e}"),
                );
                return false;
            }
        };
        // A SPIFFE bundle sequence lower than this Envoy's: kept as an error (above).
        self.bundles = Bundles::new();
        let (config, trust) = match self.bundles.start(&config, bundles::now_ms()) {
            Ok(trust) => (Ok(config), trust),
            Err(e) => (Err(e), TrustBundle::new()),
        };
        let (ecdsa, ecdsa_name) = ecdsa::detect();
        let under_istio = host::property(&["node", "metadata", "ISTIO_VERSION"]).is_some();
        let hold_headers = act::holds_headers(config.as_ref().ok().map(|c| c.headers), under_istio);
        match &config {
            Ok(c) => {
                if c.verifies_history() {
                    replay::create_slots();
                }
                let ledger = match c.ledger.etcd() {
                    Some(e) => format!("etcd(cluster={} prefix={})", e.cluster, e.prefix),
                    None => "local".to_owned(),
                };
                let policy_sha256 = policy_bundle::sha256_hex(&c.policy);
                let plugin = host::property(&["plugin_name"])
                    .and_then(|p| String::from_utf8(p).ok())
                    .unwrap_or_default();
                let build_info =
                    metrics::build_info_name(&plugin, VERSION, REVISION, &policy_sha256);
                metrics::publish_build_info(&plugin, &build_info);
                host::log(
                    LogLevel::Info,
                    &format!(
                        "configured: plugin={plugin} version={VERSION} git={REVISION} policy_sha256={policy_sha256} mode={} identity={} headers={} rules={} trust_domains={} debug_log_input={} ecdsa=\"{ecdsa_name}\" ledger={ledger}",
                        c.mode.name(),
                        c.identity.name(),
                        if hold_headers { "hold" } else { "stream" },
                        c.policy.rules.len(),
                        c.trust_domains.len(),
                        c.debug.log_input,
                    ),
                )
            }
            Err(e) => host::log(
                LogLevel::Critical,
                &format!(
                    "configuration refused, every request will be denied (503 config_invalid): {e}"
                ),
            ),
        }
        let etcd = config.as_ref().is_ok_and(|c| c.ledger.etcd().is_some());
        self.shared = Some(Rc::new(Shared::new(
            config,
            trust,
            Metrics::define(),
            ecdsa,
            hold_headers,
        )));
        if etcd || self.bundles.any() {
            // Envoy's clusters cannot be called while the plugin is configured.
            host::set_tick_period(ledger::FIRST_TICK);
        }
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Ok(config) = &shared.config else {
            return;
        };
        self.bundles.tick(&shared, config);
        let now = host::now_micros();
        if let Some(etcd) = config.ledger.etcd() {
            if now >= self.next_grant {
                self.next_grant = now.saturating_add(ledger::TICK.as_micros() as u64);
                self.granter
                    .grant_ahead(&shared, etcd, config.history.skew_seconds);
            }
        }
        if !self.ticked {
            self.ticked = true;
            let period = if self.bundles.any() {
                bundles::TICK
            } else {
                ledger::TICK
            };
            host::set_tick_period(period);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self
            .shared
            .clone()
            .unwrap_or_else(|| Rc::new(Shared::unconfigured()));
        Some(Box::new(RequestContext::new(shared)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
