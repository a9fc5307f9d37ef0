//! The policy as it is written down: the types serde reads from the YAML
//! (`custody policy compile`) and from the compiled JSON bundle (the filter),
//! with the checks made while reading them, so a policy that loads is one the
//! evaluator can trust. Also what a loaded policy says about itself (does it
//! bind calls, use Rego) and the Rego preparation done once at load.

use super::values::{
    Binds, CallerPattern, DefaultAction, MethodPattern, NamePattern, StepName, Within,
};
use crate::call::CALL_METHODS;
use crate::rego::{RegoModules, RegoRule};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The bundle format version this filter reads.
pub const BUNDLE_VERSION: u32 = 1;

/// A compiled policy: what the filter loads from its plugin configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawPolicy")]
pub struct Policy {
    pub version: u32,
    pub default: DefaultAction,
    pub rules: Vec<Rule>,
    /// Rego modules by file name, for rules that name a `rego` rule.
    #[serde(default, skip_serializing_if = "RegoModules::is_empty")]
    pub modules: RegoModules,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default = "bundle_version")]
    version: u32,
    #[serde(default)]
    default: DefaultAction,
    rules: Vec<Rule>,
    #[serde(default)]
    modules: RegoModules,
}

fn bundle_version() -> u32 {
    BUNDLE_VERSION
}

impl TryFrom<RawPolicy> for Policy {
    type Error = String;
    fn try_from(raw: RawPolicy) -> Result<Self, String> {
        if raw.version != BUNDLE_VERSION {
            return Err(format!(
                "policy version {} is not supported (this filter reads version {BUNDLE_VERSION})",
                raw.version
            ));
        }
        let mut names = HashSet::new();
        for rule in &raw.rules {
            if !names.insert(rule.name.as_str()) {
                return Err(format!("rule name '{}' is used twice", rule.name));
            }
        }
        Ok(Policy {
            version: raw.version,
            default: raw.default,
            rules: raw.rules,
            modules: raw.modules,
        })
    }
}

/// One allow rule: every listed condition must hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawRule")]
pub struct Rule {
    pub name: String,
    pub callers: Vec<CallerPattern>,
    pub methods: Vec<MethodPattern>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<NamePattern>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<NamePattern>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<NamePattern>,
    /// Steps the verified workflow history must show.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<Requirement>,
    /// A Rego rule (e.g. `data.payments.refund.allow`) that must be `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rego: Option<RegoRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    callers: Vec<CallerPattern>,
    methods: Vec<MethodPattern>,
    #[serde(default)]
    tools: Vec<NamePattern>,
    #[serde(default)]
    resources: Vec<NamePattern>,
    #[serde(default)]
    prompts: Vec<NamePattern>,
    #[serde(default)]
    require: Vec<Requirement>,
    #[serde(default)]
    rego: Option<RegoRule>,
}

impl TryFrom<RawRule> for Rule {
    type Error = String;
    fn try_from(r: RawRule) -> Result<Self, String> {
        let name_ok = !r.name.is_empty()
            && r.name.len() <= 128
            && r.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(format!(
                "rule name '{}' must be 1-128 characters of [A-Za-z0-9._-]",
                r.name
            ));
        }
        if r.callers.is_empty() {
            return Err(format!("rule '{}' lists no callers", r.name));
        }
        if r.methods.is_empty() {
            return Err(format!("rule '{}' lists no methods", r.name));
        }
        // A bound approval names one call: only rules for calls can check it.
        let binds = r.require.iter().any(|q| q.binds.is_some());
        if let Some(m) = r
            .methods
            .iter()
            .find(|m| binds && !CALL_METHODS.contains(&m.0.as_str()))
        {
            return Err(format!(
                "rule '{}' has a `binds: call` clause, so its methods must each be one of {}; '{}' is not",
                r.name,
                CALL_METHODS.join(", "),
                m.0.as_str()
            ));
        }
        Ok(Rule {
            name: r.name,
            callers: r.callers,
            methods: r.methods,
            tools: r.tools,
            resources: r.resources,
            prompts: r.prompts,
            require: r.require,
            rego: r.rego,
        })
    }
}

/// A `require` clause: some verified entry must have this `step`, be signed
/// by a workload matching `by`, carry `result` (default `approved`; `"*"` for
/// any) and, with `within`, be at most that old.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub step: StepName,
    pub by: Vec<CallerPattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Within>,
    #[serde(default = "approved")]
    pub result: String,
    /// The entry that meets this clause authorises one request (per Envoy, or
    /// across replicas with the etcd ledger; see `crate::ledger`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_use: bool,
    /// `call`: the entry's `claims.call` must equal the request's call claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binds: Option<Binds>,
}

fn approved() -> String {
    "approved".to_owned()
}

impl Policy {
    /// Whether any `require` clause binds the call (so the request's call
    /// claim must be computed).
    pub fn binds_calls(&self) -> bool {
        self.rules
            .iter()
            .flat_map(|r| &r.require)
            .any(|q| q.binds.is_some())
    }

    /// Prepares the Rego engine for every rule that names one.
    pub fn prepare_rego(&mut self) {
        let rules: Vec<RegoRule> = self.rules.iter().filter_map(|r| r.rego.clone()).collect();
        for rule in &rules {
            self.modules.prepare(rule);
        }
    }

    /// Rules whose `rego` runs on regorus's interpreter after [`Policy::prepare_rego`]
    /// (the RVM compiler refused it): correct, but several times slower.
    pub fn interpreted_rego(&self) -> Vec<&str> {
        self.rules
            .iter()
            .filter(|r| r.rego.as_ref().is_some_and(|g| !self.modules.compiled(g)))
            .map(|r| r.name.as_str())
            .collect()
    }

    /// Whether any rule evaluates Rego (so the input document is needed).
    pub fn uses_rego(&self) -> bool {
        self.rules.iter().any(|r| r.rego.is_some())
    }

    /// Every rule's `rego` names a rule of the policy's modules.
    pub fn check_rego(&self) -> Result<(), String> {
        self.rules
            .iter()
            .filter_map(|r| r.rego.as_ref().map(|g| (r, g)))
            .try_for_each(|(rule, g)| {
                self.modules
                    .check_rule(g)
                    .map_err(|e| format!("rule '{}': {e}", rule.name))
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::policy::fixtures::{bound_policy, policy, refund_policy, sample};
    use serde_json::{json, Value};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn refuses_invalid_policies_with_a_reason() {
        let cases = [
            (
                json!({"rules": [{"name": "a", "callers": ["spiffe://Example.org/x"], "methods": ["ping"]}]}),
                "trust domain",
            ),
            (
                json!({"rules": [{"name": "a", "callers": ["spiffe://example.*/x"], "methods": ["ping"]}]}),
                "trust domain",
            ),
            (
                json!({"rules": [{"name": "a", "callers": ["example.org/x"], "methods": ["ping"]}]}),
                "spiffe://",
            ),
            (
                json!({"rules": [{"name": "a", "callers": ["spiffe://example.org/a**"], "methods": ["ping"]}]}),
                "whole path segment",
            ),
            (
                json!({"rules": [{"name": "a", "callers": [], "methods": ["ping"]}]}),
                "no callers",
            ),
            (
                json!({"rules": [{"name": "a", "callers": ["spiffe://example.org/x"], "methods": []}]}),
                "no methods",
            ),
            (
                json!({"rules": [{"name": "a", "callers": ["spiffe://example.org/x"], "methods": ["to ols"]}]}),
                "may only contain",
            ),
            (
                json!({"rules": [{"name": "a", "callers": ["spiffe://example.org/x"], "methods": ["ping"], "tool": ["x"]}]}),
                "unknown field",
            ),
            (
                json!({"rules": [{"name": "a", "callers": ["spiffe://example.org/x"], "methods": ["ping"], "tools": [""]}]}),
                "empty pattern",
            ),
            (
                json!({"rules": [{"name": "a b", "callers": ["spiffe://example.org/x"], "methods": ["ping"]}]}),
                "rule name",
            ),
            (
                json!({"rules": [{"name": "a", "callers": ["spiffe://example.org/x"], "methods": ["ping"]},
                              {"name": "a", "callers": ["spiffe://example.org/y"], "methods": ["ping"]}]}),
                "used twice",
            ),
            (json!({"default": "allow", "rules": []}), "unknown variant"),
            (json!({"version": 2, "rules": []}), "not supported"),
            (json!({"rules": [], "extra": 1}), "unknown field"),
        ];
        for (input, want) in cases {
            let err = policy(input.clone()).unwrap_err();
            assert!(err.contains(want), "{input}: {err}");
        }
    }
    #[test]
    fn binds_call_is_checked_when_the_policy_loads() {
        let rule = |methods: Value, binds: Value| {
            policy(
                json!({"rules": [{"name": "r", "callers": ["spiffe://example.org/x"], "methods": methods,
                "require": [{"step": "a", "by": ["spiffe://example.org/x"], "binds": binds}]}]}),
            )
        };
        assert!(rule(
            json!(["tools/call", "prompts/get", "resources/read"]),
            json!("call")
        )
        .is_ok());
        for (methods, binds, want) in [
            (
                json!(["tools/call", "ping"]),
                json!("call"),
                "'ping' is not",
            ),
            (json!(["tools/*"]), json!("call"), "'tools/*' is not"),
            (
                json!(["resources/subscribe"]),
                json!("call"),
                "must each be one of",
            ),
            (json!(["tools/call"]), json!("args"), "unknown variant"),
            (json!(["tools/call"]), json!(true), "invalid type"),
        ] {
            let err = rule(methods.clone(), binds.clone()).unwrap_err();
            assert!(err.contains(want), "{methods} {binds}: {err}");
        }
        let p = bound_policy(false);
        assert!(p.binds_calls());
        assert!(!refund_policy().binds_calls());
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["rules"][0]["require"][0]["binds"], "call");
        let again: Policy = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&again).unwrap(), json);
    }
    #[test]
    fn refuses_invalid_requirements() {
        for (req, want) in [
            (
                json!({"step": "", "by": ["spiffe://example.org/x"]}),
                "step",
            ),
            (
                json!({"step": "a b", "by": ["spiffe://example.org/x"]}),
                "step",
            ),
            (
                json!({"step": "a", "by": ["spiffe://example.org/x"], "within": "soon"}),
                "duration",
            ),
            (json!({"step": "a", "by": ["nope"]}), "spiffe://"),
            (json!({"step": "a"}), "missing field `by`"),
            (
                json!({"step": "a", "by": ["spiffe://example.org/x"], "sigle_use": true}),
                "unknown field",
            ),
        ] {
            let err = policy(json!({"rules": [{"name": "r", "callers": ["spiffe://example.org/x"], "methods": ["ping"], "require": [req.clone()]}]}))
                .unwrap_err();
            assert!(err.contains(want), "{req}: {err}");
        }
    }

    #[test]
    fn round_trips_through_the_bundle_json() {
        let p = sample();
        let json = serde_json::to_value(&p).unwrap();
        let refunds = serde_json::to_value(refund_policy()).unwrap();
        assert_eq!(refunds["rules"][0]["require"][1]["within"], "30m");
        assert_eq!(refunds["rules"][0]["require"][1]["result"], "approved");
        let again: Policy = serde_json::from_value(refunds.clone()).unwrap();
        assert_eq!(serde_json::to_value(&again).unwrap(), refunds);
        assert_eq!(json["version"], 1);
        assert_eq!(json["default"], "deny");
        let again: Policy = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&again).unwrap(), json);
    }
}
