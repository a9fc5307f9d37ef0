//! The root context: one per VM (one per worker thread, plus the main
//! thread). It parses the plugin configuration once and shares it with every
//! request of its VM. A configuration that does not load is kept as an error:
//! the filter then answers every request with 503 `config_invalid` rather
//! than failing Envoy's startup, and says why in the log.

use crate::http::Request;
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::{ecdsa, host, replay, sequence};
use custody_core::act;
use custody_core::config::Config;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::rc::Rc;

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
        let hold_headers = act::holds_headers(config.as_ref().ok().map(|c| c.headers), under_istio);
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
        self.shared = Some(Rc::new(Shared::new(
            config,
            Metrics::define(),
            ecdsa,
            hold_headers,
        )));
        true
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
