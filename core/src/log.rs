//! Stage 6 (record): the one structured log line written per decision, and
//! for a list response a second line once its body was filtered.

use crate::config::Mode;
use crate::decision::Decision;
use crate::listing::{ListResponse, Outcome};
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

/// The list line's fields, in the order they are written.
#[derive(Serialize)]
struct ListLine<'a> {
    custody: &'static str,
    decision_id: &'a str,
    method: &'a str,
    mode: &'static str,
    outcome: &'static str,
    reason: Option<&'static str>,
    format: &'static str,
    status: u32,
    kept: usize,
    removed: usize,
    latency_us: u64,
    detail: Option<&'static str>,
}

/// `{"custody":"list", …}`: how one list response was filtered, written when
/// its body ended (after the request's decision line, same `decision_id`).
/// `status` is the HTTP status the client received.
pub fn list_line(r: &ListResponse, method: &str, mode: Mode, status: u32, ctx: &Context) -> String {
    let line = ListLine {
        custody: "list",
        decision_id: ctx.decision_id,
        method,
        mode: mode_name(mode),
        outcome: match r.outcome() {
            Outcome::Filtered => "filtered",
            Outcome::Refused(_) => "refused",
        },
        reason: r.reason().map(|r| r.code()),
        format: r.format().as_str(),
        status,
        kept: r.kept,
        removed: r.removed,
        latency_us: ctx.latency_us,
        detail: r.refused.map(|e| e.detail()),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// The list response as filter state, for the access log:
/// `custody_list_removed` (items removed) and `custody_list_reason` (`-` unless refused).
pub fn list_filter_state(r: &ListResponse) -> [(&'static str, String); 2] {
    [
        ("custody_list_removed", r.removed.to_string()),
        (
            "custody_list_reason",
            r.reason().map_or("-", |r| r.code()).to_owned(),
        ),
    ]
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    }
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
    fn a_list_line_says_how_many_items_were_removed() {
        use crate::listing::Format;
        use crate::lists::{Expect, ListError, ListKind};
        let expect = Expect::Response {
            id: Some(json!(1)),
            kind: ListKind::Tools,
        };
        let mut r = ListResponse::new(expect, Format::Sse, true, "abc");
        r.kept = 1;
        r.removed = 999;
        let ctx = Context {
            decision_id: "abc",
            latency_us: 40,
            http_status: None,
        };
        let v: Value =
            serde_json::from_str(&list_line(&r, "tools/list", Mode::Enforce, 200, &ctx)).unwrap();
        assert_eq!(
            v,
            json!({"custody":"list","decision_id":"abc","method":"tools/list","mode":"enforce",
                   "outcome":"filtered","reason":null,"format":"sse","status":200,"kept":1,
                   "removed":999,"latency_us":40,"detail":null})
        );
        let _ = r.refuse(ListError::Encoded, b"");
        let v: Value =
            serde_json::from_str(&list_line(&r, "tools/list", Mode::Audit, 502, &ctx)).unwrap();
        assert_eq!(v["outcome"], "refused");
        assert_eq!(v["reason"], "list_encoded");
        assert_eq!(list_filter_state(&r)[1].1, "list_encoded");
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
