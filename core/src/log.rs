//! Stage 6 (record): the one structured log line written per decision.

use crate::config::Mode;
use crate::decide::Decision;
use serde_json::{json, Value};

/// Facts about a decision that only the host knows.
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    pub decision_id: &'a str,
    pub latency_us: u64,
    pub http_status: Option<u32>,
}

/// `{"custody":"decision", …}` as one line of JSON.
pub fn decision_line(d: &Decision, mode: Mode, ctx: &Context) -> String {
    let enforced = matches!(mode, Mode::Enforce);
    let line = json!({
        "custody": "decision",
        "decision_id": ctx.decision_id,
        "decision": if d.is_allowed() { "allow" } else { "deny" },
        "reason": d.reason().map(|r| r.code()),
        "rule": d.verdict.as_ref().ok(),
        "mode": if enforced { "enforce" } else { "audit" },
        "caller": d.caller,
        "method": d.method,
        "target": d.target.as_ref().map(|t| json!({"kind": t.kind(), "name": t.name()})),
        "workflow": Value::Null,
        "history_len": 0,
        "status": ctx.http_status,
        "latency_us": ctx.latency_us,
        "detail": d.detail,
    });
    line.to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::reason::Reason;
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
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["decision"], "deny");
        assert_eq!(v["reason"], "no_rule");
        assert_eq!(v["mode"], "audit");
        assert_eq!(v["target"], json!({"kind":"tool","name":"rm"}));
        assert_eq!(v["latency_us"], 12);
        assert_eq!(v["decision_id"], "abc");
    }
}
