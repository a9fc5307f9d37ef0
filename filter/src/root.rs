//! The root context: one per VM (one per worker thread, plus the main
//! thread). It parses the plugin configuration once and shares it with every
//! request of its VM. A configuration that does not load is kept as an error:
//! the filter then answers every request with 503 `config_invalid` rather
//! than failing Envoy's startup, and says why in the log. With the etcd
//! ledger, it also grants on a timer the leases requests will need.

use crate::http::Request;
use crate::ledger::{self, Granter};
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::{ecdsa, host, replay, sequence};
use custody_core::act;
use custody_core::config::{Backend, Config};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::rc::Rc;

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
    granter: Granter,
    ticked: bool,
}

impl Context for Root {
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
        if let Some(etcd) = shared.config.as_ref().ok().and_then(|c| c.ledger.etcd()) {
            self.granter.answered(&shared, etcd, token, body_size);
        }
    }
}

impl Root {
    fn grant_ahead(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        if let Ok(config) = &shared.config {
            if let Some(etcd) = config.ledger.etcd() {
                self.granter
                    .grant_ahead(&shared, etcd, config.history.skew_seconds);
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = match host::plugin_configuration() {
            None => Err("no plugin configuration".to_owned()),
            Some(bytes) => Config::from_json(&bytes),
        }
        .and_then(|c| sequence::check_and_record(&c.trust).map(|()| c));
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
        let etcd = config
            .as_ref()
            .is_ok_and(|c| c.ledger.backend == Backend::Etcd);
        self.shared = Some(Rc::new(Shared::new(
            config,
            Metrics::define(),
            ecdsa,
            hold_headers,
        )));
        if etcd {
            host::set_tick_period(ledger::FIRST_TICK);
        }
        true
    }

    fn on_tick(&mut self) {
        self.grant_ahead();
        if !self.ticked {
            self.ticked = true;
            host::set_tick_period(ledger::TICK);
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
