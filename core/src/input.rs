//! The Rego input document (docs/policy.md), built only from verified data:
//! the caller from the validated certificate, the MCP message as parsed, and
//! history entries that passed every check. Built directly in regorus's own
//! value type: going through JSON costs more than the Rego evaluation.

use crate::mcp::McpMessage;
use crate::SpiffeId;
use custody_history::VerifiedHistory;
use serde_json::Value;
use std::collections::BTreeMap;

/// What the input document is made of.
pub struct Facts<'a> {
    pub caller: &'a SpiffeId,
    /// This tool server's SPIFFE ID (`audience`), if configured.
    pub target: Option<&'a str>,
    pub now: u64,
    pub http_method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(String, String)],
    pub mcp: &'a McpMessage,
    pub history: Option<&'a VerifiedHistory>,
}

/// The input document of docs/policy.md, as regorus's value.
pub fn rego_document(f: &Facts) -> regorus::Value {
    use regorus::Value as V;
    fn object<const N: usize>(members: [(&str, V); N]) -> V {
        V::from(
            members
                .into_iter()
                .map(|(k, v)| (V::from(k), v))
                .collect::<BTreeMap<V, V>>(),
        )
    }
    let text = |s: Option<&str>| s.map_or(V::Null, V::from);
    let json = |v: Option<&Value>| v.map_or(V::Null, |v| V::from(v.clone()));

    let mut joined: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in f.headers {
        // Repeated headers are joined, as HTTP allows.
        joined
            .entry(name)
            .and_modify(|j| {
                j.push_str(", ");
                j.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    let headers: BTreeMap<V, V> = joined
        .into_iter()
        .map(|(k, v)| (V::from(k), V::from(v)))
        .collect();
    let mut mcp: BTreeMap<V, V> = BTreeMap::from([
        (V::from("method"), V::from(f.mcp.method.as_str())),
        (V::from("id"), json(f.mcp.id.as_ref())),
        (V::from("arguments"), json(f.mcp.arguments.as_ref())),
    ]);
    if let Some(target) = &f.mcp.target {
        mcp.insert(V::from(target.kind()), V::from(target.name()));
    }
    let history: Vec<V> = f
        .history
        .iter()
        .flat_map(|h| &h.entries)
        .map(|e| {
            object([
                ("seq", V::from(e.seq)),
                ("step", V::from(e.step.as_str())),
                ("result", V::from(e.result.as_str())),
                ("agent", V::from(e.iss.as_str())),
                ("next", V::from(e.nxt.as_str())),
                ("iat", V::from(e.iat)),
                ("exp", V::from(e.exp)),
                ("age", V::from(f.now.saturating_sub(e.iat))),
                ("claims", V::from(e.claims.clone())),
            ])
        })
        .collect();
    object([
        ("calling_agent", V::from(f.caller.as_str())),
        ("target", text(f.target)),
        ("now", V::from(f.now)),
        (
            "request",
            object([
                ("http_method", V::from(f.http_method)),
                ("path", V::from(f.path)),
                ("headers", V::from(headers)),
            ]),
        ),
        ("mcp", V::from(mcp)),
        ("workflow", text(f.history.map(|h| h.wid.as_str()))),
        ("history", V::from(history)),
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::mcp::Target;
    use custody_history::{VerifiedEntry, VerifiedProof};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn entry(seq: u64, step: &str, claims: Value) -> VerifiedEntry {
        VerifiedEntry {
            seq,
            step: step.into(),
            result: "approved".into(),
            iss: id("spiffe://example.org/ns/p/sa/approvals"),
            nxt: id("spiffe://example.org/ns/p/sa/refund-agent"),
            iat: 1_000 + seq,
            exp: 5_000,
            claims,
            hash: [seq as u8; 32],
            signer_not_after: 9_000,
        }
    }

    #[test]
    fn the_document_is_built_from_the_facts() {
        let caller = id("spiffe://example.org/ns/p/sa/refund-agent");
        let history = VerifiedHistory {
            wid: "wf-1".into(),
            entries: vec![
                entry(0, "fraud_check_passed", json!({})),
                entry(
                    1,
                    "human_approval",
                    json!({"amount": 5000, "note": "ok", "ratio": 0.5, "tags": ["a", null, true], "neg": -3}),
                ),
            ],
            proof: VerifiedProof {
                jti: "j".into(),
                iat: 1_010,
                exp: 1_060,
                iss: caller.clone(),
            },
        };
        let headers = [
            ("accept".to_owned(), "a".to_owned()),
            ("x-b".to_owned(), "1".to_owned()),
            ("accept".to_owned(), "b".to_owned()),
        ];
        let call = McpMessage {
            method: "tools/call".into(),
            id: Some(json!(7)),
            target: Some(Target::Tool("refund".into())),
            arguments: Some(json!({"amount": 1200, "order": "A-1"})),
        };
        let list = McpMessage {
            method: "tools/list".into(),
            id: Some(json!("s-1")),
            target: None,
            arguments: None,
        };
        let resource = McpMessage {
            method: "resources/read".into(),
            id: None,
            target: Some(Target::Resource("file:///a".into())),
            arguments: None,
        };
        let entries = json!([
            {"seq": 0, "step": "fraud_check_passed", "result": "approved",
             "agent": "spiffe://example.org/ns/p/sa/approvals", "next": "spiffe://example.org/ns/p/sa/refund-agent",
             "iat": 1000, "exp": 5000, "age": 100, "claims": {}},
            {"seq": 1, "step": "human_approval", "result": "approved",
             "agent": "spiffe://example.org/ns/p/sa/approvals", "next": "spiffe://example.org/ns/p/sa/refund-agent",
             "iat": 1001, "exp": 5000, "age": 99,
             "claims": {"amount": 5000, "note": "ok", "ratio": 0.5, "tags": ["a", null, true], "neg": -3}},
        ]);
        let request = json!({"http_method": "POST", "path": "/mcp", "headers": {"accept": "a, b", "x-b": "1"}});
        let agent = "spiffe://example.org/ns/p/sa/refund-agent";
        for (mcp, history, target, expected) in [
            (
                &call,
                Some(&history),
                Some("spiffe://example.org/ns/p/sa/tool"),
                json!({
                "calling_agent": agent, "target": "spiffe://example.org/ns/p/sa/tool", "now": 1100,
                "request": request,
                "mcp": {"method": "tools/call", "id": 7, "arguments": {"amount": 1200, "order": "A-1"}, "tool": "refund"},
                "workflow": "wf-1", "history": entries}),
            ),
            (
                &list,
                None,
                None,
                json!({
                "calling_agent": agent, "target": null, "now": 1100, "request": request,
                "mcp": {"method": "tools/list", "id": "s-1", "arguments": null},
                "workflow": null, "history": []}),
            ),
            (
                &resource,
                Some(&history),
                None,
                json!({
                "calling_agent": agent, "target": null, "now": 1100, "request": request,
                "mcp": {"method": "resources/read", "id": null, "arguments": null, "resource": "file:///a"},
                "workflow": "wf-1", "history": entries}),
            ),
        ] {
            let facts = Facts {
                caller: &caller,
                target,
                now: 1_100,
                http_method: "POST",
                path: "/mcp",
                headers: &headers,
                mcp,
                history,
            };
            let expected_value = regorus::Value::from(expected.clone());
            assert_ne!(expected_value, regorus::Value::Undefined);
            assert_eq!(rego_document(&facts), expected_value, "{expected}");
        }
    }
}
