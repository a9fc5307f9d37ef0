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
//! not load"). With the etcd ledger, the root context also grants on a
//! timer the leases requests will need.

use crate::http::Request;
use crate::ledger::{self, Granter};
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::{ecdsa, host, metrics, replay, sequence};
use custody_core::config::{Backend, Config};
use custody_core::{act, bundle};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::rc::Rc;

/// This build, for the configure log line and `custody_build_info`.
const VERSION: &str = env!("CARGO_PKG_VERSION");
const REVISION: &str = env!("CUSTODY_GIT_REVISION");

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
        let config = sequence::check_and_record(&config.trust).map(|()| config);
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
                let policy_sha256 = bundle::sha256_hex(&c.policy);
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
