//! Envoy stats. Envoy puts wasm metrics under the `wasmcustom.` prefix on
//! `/stats` and drops it on `/stats/prometheus` (docs/operations.md, Metrics):
//! - counters `custody_allowed`, `custody_denied_<reason>`,
//!   `custody_audit_forwarded` (denied, but forwarded because `mode: audit`),
//!   `custody_list_filtered` (list responses filtered) and
//!   `custody_list_items_removed` (items they lost);
//! - histogram `custody_decision_latency_us`: the filter's own time per decision;
//! - gauge `custody_build_info.plugin.<name>.version.<v>.revision.<git>.policy_sha256.<hash>`:
//!   1 for the filter's configuration in effect, 0 once a newer one replaced it.

use crate::host;
use custody_core::act::Count;
use custody_core::reason::Reason;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType};
use std::collections::HashMap;

/// The shared-data key (per vm_id) naming a filter's build-info gauge at 1.
fn build_info_key(plugin: &str) -> String {
    format!("custody.build_info.{plugin}")
}

#[derive(Debug, Default)]
pub struct Metrics {
    allowed: Option<u32>,
    audit_forwarded: Option<u32>,
    denied: HashMap<Reason, u32>,
    list_filtered: Option<u32>,
    list_items_removed: Option<u32>,
    latency: Option<u32>,
}

impl Metrics {
    /// Defines every counter up front so dashboards see zeros, not gaps.
    pub fn define() -> Self {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        Metrics {
            allowed: counter("custody_allowed"),
            audit_forwarded: counter("custody_audit_forwarded"),
            denied: Reason::all()
                .filter_map(|r| Some((r, counter(&format!("custody_denied_{}", r.code()))?)))
                .collect(),
            list_filtered: counter("custody_list_filtered"),
            list_items_removed: counter("custody_list_items_removed"),
            latency: hostcalls::define_metric(MetricType::Histogram, "custody_decision_latency_us")
                .ok(),
        }
    }

    /// A list response filtered to its end, and how many items it lost.
    pub fn count_list(&self, removed: usize) {
        bump(self.list_filtered);
        if let Some(id) = self.list_items_removed {
            let _ = hostcalls::increment_metric(id, i64::try_from(removed).unwrap_or(i64::MAX));
        }
    }

    /// A decision: bumps what `core::act` said to count and records the time
    /// the filter spent on it.
    pub fn decided(&self, count: Count, latency_us: u64) {
        self.count(count);
        if let Some(id) = self.latency {
            let _ = hostcalls::record_metric(id, latency_us);
        }
    }

    /// Bumps what `core::act` (or a list response's refusal) said to count.
    pub fn count(&self, count: Count) {
        match count {
            Count::Allowed => bump(self.allowed),
            Count::Denied(reason) => bump(self.denied.get(&reason).copied()),
            Count::AuditForwarded(reason) => {
                bump(self.denied.get(&reason).copied());
                bump(self.audit_forwarded);
            }
        }
    }
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

/// The build-info gauge's name. Envoy's `stats_tags` (the shipped bootstraps
/// have them) turn its four parts into Prometheus labels.
pub fn build_info_name(plugin: &str, version: &str, revision: &str, policy_sha256: &str) -> String {
    format!(
        "custody_build_info.plugin.{plugin}.version.{version}.revision.{revision}.policy_sha256.{policy_sha256}"
    )
}

/// Sets this configuration's build-info gauge to 1 and the one it replaces
/// in the same filter (named in shared data) to 0. Best effort: stats never
/// decide anything.
pub fn publish_build_info(plugin: &str, name: &str) {
    let key = build_info_key(plugin);
    let (previous, cas) = hostcalls::get_shared_data(&key).unwrap_or((None, None));
    let previous = previous.and_then(|b| String::from_utf8(b).ok());
    if let Some(previous) = previous.as_deref().filter(|p| *p != name) {
        set_gauge(previous, 0);
    }
    set_gauge(name, 1);
    if previous.as_deref() != Some(name)
        && hostcalls::set_shared_data(&key, Some(name.as_bytes()), cas).is_err()
    {
        host::log(
            LogLevel::Debug,
            "build info: another VM recorded its own at the same time",
        );
    }
}

fn set_gauge(name: &str, value: u64) {
    if let Ok(id) = hostcalls::define_metric(MetricType::Gauge, name) {
        let _ = hostcalls::record_metric(id, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_info_name_carries_what_the_stats_tags_extract() {
        assert_eq!(
            build_info_name("custody", "0.1.0", "4664903a1b2c", "f54a"),
            "custody_build_info.plugin.custody.version.0.1.0.revision.4664903a1b2c.policy_sha256.f54a"
        );
    }
}
