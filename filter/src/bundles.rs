//! Trust bundles, from the filter's side. At configure time every SPIFFE
//! bundle of the configuration is checked against, and recorded in, this
//! Envoy's shared data (`custody.bundle.<trust domain>`): a sequence never
//! goes back, across configuration updates too. A trust domain with a
//! `bundle_endpoint` starts from the newer of its configured bundle and the
//! recorded one; then the root context's timer ([`Bundles::tick`], every
//! second) takes whatever newer bundle or confirmation another VM recorded,
//! withdraws a bundle past `max_age_seconds`, and fetches from the endpoint
//! when due. An answer ([`Bundles::answered`]) that passes
//! `custody_core::bundles::fetch` is offered to the record; the VM then
//! checks requests against the rebuilt trust bundle (`Shared::trust`).
//! Everything but the host calls is in `custody_core::bundles`.

use crate::host;
use crate::shared::Shared;
use custody_core::bundle_fetch::{self, MAX_BUNDLE_BYTES};
use custody_core::bundles::{self, Adopted, Held, Merge, Record, Watch};
use custody_core::config::Config;
use custody_history::TrustBundle;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType, Status};
use std::collections::HashMap;
use std::time::Duration;

/// How often the root context looks at its bundles when any has an endpoint.
pub const TICK: Duration = Duration::from_secs(1);
/// Attempts when another VM writes the same record at the same time.
const CAS_ATTEMPTS: usize = 8;

/// Unix milliseconds.
pub fn now_ms() -> u64 {
    host::now_micros() / 1000
}

/// The root context's bundle endpoints.
#[derive(Default)]
pub struct Bundles {
    watches: Vec<Watch>,
    /// Fetches in flight: token → watch.
    calls: HashMap<u32, usize>,
    /// Why each watch's last fetch failed, until one succeeds (logged on change).
    failing: Vec<Option<String>>,
    counters: Counters,
}

impl Bundles {
    /// With the counters defined (at every configure, so they read 0).
    pub fn new() -> Bundles {
        Bundles {
            counters: Counters::define(),
            ..Default::default()
        }
    }

    /// At configure: records the configured SPIFFE bundles (refusing one
    /// older than this Envoy has seen, for a trust domain without an
    /// endpoint) and starts each endpoint's watch. Returns the trust bundle
    /// in effect.
    pub fn start(&mut self, config: &Config, now: u64) -> Result<TrustBundle, String> {
        let mut watches = Vec::new();
        for (domain, source) in &config.trust_domains {
            if let Some(offered) = bundles::configured_record(config, domain, now) {
                if let Merge::Older { recorded, offered } = offer(domain, &offered) {
                    if source.bundle_endpoint.is_none() {
                        return Err(format!(
                            "trust_domains.{domain}: spiffe_sequence {offered} is lower than {recorded}, already loaded by this Envoy"
                        ));
                    }
                }
            }
            let Some(endpoint) = &source.bundle_endpoint else {
                continue;
            };
            let configured = Held::configured(domain, source, now)?;
            let recorded = read_record(domain).0.and_then(|r| {
                Held::from_record(domain, &r)
                    .map_err(|e| warn(domain, &format!("the shared record is not used: {e}")))
                    .ok()
            });
            let held = bundles::newest(configured, recorded);
            log_start(domain, endpoint, held.as_ref());
            watches.push(Watch::new(domain, endpoint, held, now));
        }
        self.failing = vec![None; watches.len()];
        self.watches = watches;
        Ok(in_effect(config, &self.watches, now))
    }

    /// Whether any trust domain has an endpoint.
    pub fn any(&self) -> bool {
        !self.watches.is_empty()
    }

    /// On every tick: what other VMs recorded, freshness, fetches due.
    pub fn tick(&mut self, shared: &Shared, config: &Config) {
        let now = now_ms();
        let mut changed = false;
        for i in 0..self.watches.len() {
            changed |= self.refresh(i, now);
            let w = &mut self.watches[i];
            if !w.due(now) {
                continue;
            }
            let e = &w.endpoint;
            let timeout = Duration::from_millis(e.timeout_ms);
            match host::get(&e.cluster, e.authority(), &e.path, timeout) {
                Ok(token) => {
                    w.sent(now);
                    self.calls.insert(token, i);
                }
                Err(why) => {
                    w.failed(now);
                    self.counters.bump(self.counters.failed);
                    self.fails(i, why);
                }
            }
        }
        if changed {
            rebuild(shared, config, &self.watches, now);
        }
    }

    /// A callout answered; `false` when it was not a bundle fetch.
    pub fn answered(
        &mut self,
        shared: &Shared,
        config: &Config,
        token: u32,
        body_size: usize,
    ) -> bool {
        let Some(i) = self.calls.remove(&token) else {
            return false;
        };
        let now = now_ms();
        let (status, body) = host::call_response(body_size, MAX_BUNDLE_BYTES);
        let Some(domain) = self.watches.get(i).map(|w| w.trust_domain.clone()) else {
            return true;
        };
        let kept = bundle_fetch::answer(&domain, status, body.as_deref()).and_then(|bundle| {
            let fetched = Held::fetched(bundle, now);
            let Some(offered) = fetched.record() else {
                return Err("the bundle has no spiffe_sequence".to_owned());
            };
            match offer(&domain, &offered) {
                Merge::Older { recorded, offered } => Err(format!(
                    "spiffe_sequence {offered} is lower than {recorded}, the newest this Envoy has: ignored"
                )),
                Merge::Replace(_) => Ok(true),
                Merge::Confirm(_) | Merge::Keep => Ok(false),
            }
        });
        match kept {
            Ok(newer) => {
                self.watches[i].succeeded(now);
                self.counters.bump(self.counters.fetched);
                if newer {
                    self.counters.bump(self.counters.updated);
                }
                if self.failing[i].take().is_some() {
                    host::log(
                        LogLevel::Info,
                        &format!(
                            "custody: bundle: {domain}: the endpoint serves a good bundle again"
                        ),
                    );
                }
            }
            Err(why) => {
                self.watches[i].failed(now);
                let counter = if status == Some(200) {
                    self.counters.rejected
                } else {
                    self.counters.failed
                };
                self.counters.bump(counter);
                self.fails(i, why);
            }
        }
        if self.refresh(i, now) {
            rebuild(shared, config, &self.watches, now);
        }
        true
    }

    /// Takes watch `i`'s shared record and checks its freshness; whether the
    /// trust bundle in effect changed.
    fn refresh(&mut self, i: usize, now: u64) -> bool {
        let w = &mut self.watches[i];
        let mut changed = false;
        if let Some(record) = read_record(&w.trust_domain).0 {
            match w.adopt(&record) {
                Ok(Adopted::Replaced { from, to }) => {
                    changed = true;
                    let was = from.map_or("none".to_owned(), |s| s.to_string());
                    host::log(
                        LogLevel::Info,
                        &format!(
                            "custody: bundle: {}: spiffe_sequence {to} in effect (was {was})",
                            w.trust_domain
                        ),
                    );
                }
                Ok(Adopted::Confirmed | Adopted::Unchanged) => {}
                Err(e) => warn(
                    &w.trust_domain,
                    &format!("the shared record is not used: {e}"),
                ),
            }
        }
        if let Some(fresh) = w.freshness_changed(now) {
            changed = true;
            if fresh {
                host::log(
                    LogLevel::Info,
                    &format!(
                        "custody: bundle: {}: the bundle is in effect again",
                        w.trust_domain
                    ),
                );
            } else {
                self.counters.bump(self.counters.stale);
                host::log(
                    LogLevel::Critical,
                    &format!(
                        "custody: bundle: {}: no good answer from the bundle endpoint for {} s (max_age_seconds): the trust domain's SVIDs are refused until it answers",
                        w.trust_domain, w.endpoint.max_age_seconds
                    ),
                );
            }
        }
        changed
    }

    /// Logs a failure when its reason differs from the last one.
    fn fails(&mut self, i: usize, why: String) {
        if self.failing[i].as_deref() == Some(why.as_str()) {
            return;
        }
        let w = &self.watches[i];
        warn(
            &w.trust_domain,
            &format!(
                "fetch from cluster '{}' path {}: {why}; the bundle in effect stays",
                w.endpoint.cluster, w.endpoint.path
            ),
        );
        self.failing[i] = Some(why);
    }
}

fn warn(domain: &str, message: &str) {
    host::log(
        LogLevel::Warn,
        &format!("custody: bundle: {domain}: {message}"),
    );
}

fn log_start(domain: &str, endpoint: &bundle_fetch::BundleEndpoint, held: Option<&Held>) {
    let from = match held {
        Some(Held {
            sequence: Some(s), ..
        }) => format!("spiffe_sequence {s}"),
        Some(_) => "the configured bundle_pem".to_owned(),
        None => "no bundle (its SVIDs are refused until the first good answer)".to_owned(),
    };
    host::log(
        LogLevel::Info,
        &format!(
            "custody: bundle: {domain}: fetched from cluster '{}' path {} every {} s at most; starting from {from}",
            endpoint.cluster, endpoint.path, endpoint.refresh_seconds
        ),
    );
}

/// The trust bundle in effect, its problems logged.
fn in_effect(config: &Config, watches: &[Watch], now: u64) -> TrustBundle {
    let (trust, errors) = bundles::trust_in_effect(config, watches, now);
    for e in errors {
        host::log(
            LogLevel::Error,
            &format!("custody: bundle: left out of the trust bundle: {e}"),
        );
    }
    trust
}

fn rebuild(shared: &Shared, config: &Config, watches: &[Watch], now: u64) {
    let trust = in_effect(config, watches, now);
    *shared.trust.borrow_mut() = trust;
}

fn key(trust_domain: &str) -> String {
    format!("custody.bundle.{trust_domain}")
}

/// The shared record of `trust_domain`, and its CAS.
fn read_record(trust_domain: &str) -> (Option<Record>, Option<u32>) {
    let (bytes, cas) = hostcalls::get_shared_data(&key(trust_domain)).unwrap_or((None, None));
    (bytes.as_deref().and_then(Record::decode), cas)
}

/// Offers a bundle to the shared record (compare-and-swap). Shared data
/// checks a CAS only on keys that exist, so a missing record is first
/// created empty: only two VMs creating it at the same instant can lose a
/// write, which the next fetch makes again.
fn offer(trust_domain: &str, offered: &Record) -> Merge {
    let key = key(trust_domain);
    for _ in 0..CAS_ATTEMPTS {
        let (recorded, cas) = read_record(trust_domain);
        let merged = bundles::merge(recorded.as_ref(), offered);
        let (Merge::Replace(record) | Merge::Confirm(record)) = &merged else {
            return merged;
        };
        let Some(cas) = cas else {
            let _ = hostcalls::set_shared_data(&key, Some(b""), None);
            continue;
        };
        match hostcalls::set_shared_data(&key, Some(&record.encode()), Some(cas)) {
            Ok(()) => return merged,
            Err(Status::CasMismatch) => continue,
            Err(_) => break,
        }
    }
    warn(trust_domain, "could not update the shared record");
    Merge::Keep
}

/// Envoy counters of bundle fetches (`wasmcustom.custody_bundle_*`).
#[derive(Default)]
struct Counters {
    fetched: Option<u32>,
    updated: Option<u32>,
    rejected: Option<u32>,
    failed: Option<u32>,
    stale: Option<u32>,
}

impl Counters {
    fn define() -> Self {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        Counters {
            fetched: counter("custody_bundle_fetched"),
            updated: counter("custody_bundle_updated"),
            rejected: counter("custody_bundle_rejected"),
            failed: counter("custody_bundle_fetch_failed"),
            stale: counter("custody_bundle_stale"),
        }
    }

    fn bump(&self, id: Option<u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}
