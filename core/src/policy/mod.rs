//! Declarative rules, deny by default. The same types read the people-facing
//! YAML (in `custody policy compile`) and the compiled JSON bundle (in the
//! filter), so both apply exactly the same validation: a pattern that would
//! not compile ahead of time is also refused at load time.
//!
//! In three files, so that what a policy may say, what it is made of and
//! what it decides can each be read and changed alone: `schema.rs` (the
//! policy as written, checked as it is read), `values.rs` (the checked
//! values: step names, durations, patterns) and `evaluate.rs` (the policy
//! applied to one request). Why a denial came about is [`crate::explain`]'s.
//! Everything is re-exported here: `crate::policy::X` is the one path.

mod evaluate;
mod schema;
mod values;

pub use evaluate::{Query, Step, Verdict};
pub use schema::{Policy, Requirement, Rule, BUNDLE_VERSION};
pub use values::{
    Binds, CallerPattern, DefaultAction, MethodPattern, NamePattern, StepName, Within,
};

/// Policies and history steps shared by the tests of this module and of [`crate::explain`].
#[cfg(test)]
pub(crate) mod fixtures {
    #![allow(clippy::unwrap_used)]
    use super::{Policy, Step};
    use serde_json::json;

    pub(crate) fn policy(v: serde_json::Value) -> Result<Policy, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    pub(crate) fn sample() -> Policy {
        policy(json!({"rules": [
            {"name": "lifecycle", "callers": ["spiffe://example.org/**"],
             "methods": ["initialize", "ping", "notifications/*", "tools/list", "http:GET", "http:DELETE"]},
            {"name": "refunds", "callers": ["spiffe://example.org/ns/payments/sa/refund-*"],
             "methods": ["tools/call"], "tools": ["refund_*", "lookup"]},
            {"name": "docs", "callers": ["spiffe://example.org/ns/docs/sa/reader"],
             "methods": ["resources/read", "prompts/get"], "resources": ["file:///docs/**"], "prompts": ["summarise"]}
        ]}))
        .unwrap()
    }

    pub(crate) fn refund_policy() -> Policy {
        policy(json!({"rules": [
            {"name": "refunds", "callers": ["spiffe://example.org/ns/payments/sa/refund-agent"],
             "methods": ["tools/call"], "tools": ["refund"],
             "require": [
                {"step": "fraud_check_passed", "by": ["spiffe://example.org/ns/payments/sa/fraud-*"]},
                {"step": "human_approval", "by": ["spiffe://example.org/ns/payments/sa/approvals"], "within": "30m"}
             ]}
        ]}))
        .unwrap()
    }

    pub(crate) const FRAUD: &str = "spiffe://example.org/ns/payments/sa/fraud-agent";
    pub(crate) const APPROVALS: &str = "spiffe://example.org/ns/payments/sa/approvals";

    /// A verified entry without `claims.call` (also used by explain's tests).
    pub(crate) fn step<'a>(step: &'a str, signer: &'a str, result: &'a str, iat: u64) -> Step<'a> {
        Step {
            step,
            result,
            signer,
            iat,
            call: None,
        }
    }

    pub(crate) fn bound_policy(single_use: bool) -> Policy {
        policy(json!({"rules": [
            {"name": "refunds", "callers": ["spiffe://example.org/ns/payments/sa/refund-agent"],
             "methods": ["tools/call"], "tools": ["refund"],
             "require": [{"step": "human_approval", "by": [APPROVALS], "within": "30m",
                          "binds": "call", "single_use": single_use}]}
        ]}))
        .unwrap()
    }
}
