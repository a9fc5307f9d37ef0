//! The root context: one per VM (one per worker thread, plus the main
//! thread). It parses the plugin configuration once and shares it with every
//! request of its VM. A configuration that does not load is kept as an error:
//! the filter then answers every request with 503 `config_invalid` rather
//! than failing Envoy's startup, and says why in the log. On a timer (one
//! tick handler for both) it keeps the trust bundles of bundle endpoints
//! current and, with the etcd ledger, grants the leases requests will need.

use crate::bundles::{self, Bundles};
use crate::http::Request;
use crate::ledger::{self, Granter};
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::{ecdsa, host, replay};
use custody_core::act;
use custody_core::config::Config;
use custody_history::TrustBundle;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::rc::Rc;

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
        self.bundles = Bundles::new();
        let mut trust = TrustBundle::new();
        let config = match host::plugin_configuration() {
            None => Err("no plugin configuration".to_owned()),
            Some(bytes) => Config::from_json(&bytes),
        }
        .and_then(|c| {
            trust = self.bundles.start(&c, bundles::now_ms())?;
            Ok(c)
        });
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
                host::log(
                    LogLevel::Info,
                    &format!(
                        "custody: configured: mode={:?} identity={:?} rules={} trust_domains={} ecdsa={ecdsa_name} headers={} ledger={ledger}",
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
        Some(Box::new(Request::new(shared)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
