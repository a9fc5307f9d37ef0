//! Stage 6 (record): the one structured log line written per decision.

use crate::config::Mode;
use crate::decide::Decision;
use serde::Serialize;

/// Facts about a decision that only the host knows.
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    pub decision_id: &'a str,
    pub latency_us: u64,
    pub http_status: Option<u32>,
}

/// The fields of the line, in the order they are written.
#[derive(Serialize)]
struct Line<'a> {
    custody: &'static str,
    decision_id: &'a str,
    decision: &'static str,
    reason: Option<&'static str>,
    rule: Option<&'a str>,
    mode: &'static str,
    caller: Option<&'a str>,
    method: Option<&'a str>,
    target: Option<Target<'a>>,
    workflow: Option<&'a str>,
    history_len: usize,
    status: Option<u32>,
    latency_us: u64,
    detail: Option<&'a str>,
    /// Only with `debug.log_input`.
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
struct Target<'a> {
    kind: &'static str,
    name: &'a str,
}

/// The decision as (name, value) pairs for Envoy's filter state, so a stock
/// access log can print them: `%FILTER_STATE(wasm.custody_decision:PLAIN)%`.
/// Absent values are `-`, as Envoy prints them.
pub fn filter_state(d: &Decision, decision_id: &str) -> [(&'static str, String); 8] {
    let or_dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
    [
        ("custody_decision_id", decision_id.to_owned()),
        (
            "custody_decision",
            (if d.is_allowed() { "allow" } else { "deny" }).to_owned(),
        ),
        ("custody_reason", or_dash(d.reason().map(|r| r.code()))),
        ("custody_caller", or_dash(d.caller.as_deref())),
        ("custody_method", or_dash(d.method.as_deref())),
        (
            "custody_target",
            d.target
                .as_ref()
                .map_or("-".to_owned(), |t| format!("{}:{}", t.kind(), t.name())),
        ),
        ("custody_workflow", or_dash(d.workflow.as_deref())),
        ("custody_history_len", d.history_len.to_string()),
    ]
}

/// `{"custody":"decision", …}` as one line of JSON.
pub fn decision_line(d: &Decision, mode: Mode, ctx: &Context) -> String {
    let line = Line {
        custody: "decision",
        decision_id: ctx.decision_id,
        decision: if d.is_allowed() { "allow" } else { "deny" },
        reason: d.reason().map(|r| r.code()),
        rule: d.verdict.as_deref().ok().or(d.closest_rule.as_deref()),
        mode: mode.name(),
        caller: d.caller.as_deref(),
        method: d.method.as_deref(),
        target: d.target.as_ref().map(|t| Target {
            kind: t.kind(),
            name: t.name(),
        }),
        workflow: d.workflow.as_deref(),
        history_len: d.history_len,
        status: ctx.http_status,
        latency_us: ctx.latency_us,
        detail: d.detail.as_deref(),
        input: d.input.as_ref(),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::reason::Reason;
    use serde_json::{json, Value};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn one_line_with_every_field() {
        let mut d = Decision::refuse(Reason::NoRule);
        d.caller = Some("spiffe://example.org/a".into());
        d.method = Some("tools/call".into());
        d.target = Some(crate::mcp::Target::Tool("rm".into()));
        let ctx = Context {
            decision_id: "abc",
            latency_us: 12,
            http_status: Some(403),
        };
        let line = decision_line(&d, Mode::Audit, &ctx);
        assert!(!line.contains('\n'));
        assert!(line.starts_with(r#"{"custody":"decision","decision_id":"abc","#));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["decision"], "deny");
        assert_eq!(v["reason"], "no_rule");
        assert_eq!(v["mode"], "audit");
        assert_eq!(v["target"], json!({"kind":"tool","name":"rm"}));
        assert_eq!(v["latency_us"], 12);
        assert_eq!(v["decision_id"], "abc");
    }

    #[test]
    fn a_denial_names_its_closest_rule_and_the_input_only_when_asked() {
        let mut d = Decision::refuse(Reason::StaleStep);
        d.closest_rule = Some("refunds".into());
        d.detail = Some("human_approval is 1860 s old, within 1800 s".into());
        let ctx = Context::default();
        let v: Value = serde_json::from_str(&decision_line(&d, Mode::Enforce, &ctx)).unwrap();
        assert_eq!(v["rule"], "refunds");
        assert_eq!(v["detail"], "human_approval is 1860 s old, within 1800 s");
        assert!(v.get("input").is_none());
        d.input = Some(json!({"calling_agent": "spiffe://example.org/a"}));
        let v: Value = serde_json::from_str(&decision_line(&d, Mode::Enforce, &ctx)).unwrap();
        assert_eq!(v["input"]["calling_agent"], "spiffe://example.org/a");
        // An allowed request names the rule that allowed it.
        let mut ok = Decision::refuse(Reason::NoRule);
        ok.verdict = Ok("lifecycle".into());
        ok.closest_rule = Some("ignored".into());
        let v: Value = serde_json::from_str(&decision_line(&ok, Mode::Enforce, &ctx)).unwrap();
        assert_eq!(v["rule"], "lifecycle");
    }
}
