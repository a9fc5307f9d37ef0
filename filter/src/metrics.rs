//! Envoy counters: `custody_allowed`, `custody_denied_<reason>` and
//! `custody_audit_forwarded` (denied, but forwarded because `mode: audit`);
//! `custody_list_filtered` (list responses filtered) and
//! `custody_list_items_removed` (items they lost).
//! Envoy shows wasm counters under the `wasmcustom.` stat prefix.

use custody_core::act::Count;
use custody_core::reason::Reason;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct Metrics {
    allowed: Option<u32>,
    audit_forwarded: Option<u32>,
    denied: HashMap<Reason, u32>,
    list_filtered: Option<u32>,
    list_items_removed: Option<u32>,
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
        }
    }

    /// A list response filtered to its end, and how many items it lost.
    pub fn count_list(&self, removed: usize) {
        bump(self.list_filtered);
        if let Some(id) = self.list_items_removed {
            let _ = hostcalls::increment_metric(id, i64::try_from(removed).unwrap_or(i64::MAX));
        }
    }

    /// Bumps what `core::act` said to count.
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
