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

/// What redacted values read as in the log.
pub const REDACTED: &str = "<redacted>";

/// Request headers whose values are never logged: credentials.
const CREDENTIAL_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];

/// The input document for the decision log (`debug.log_input`). Credential
/// headers are always redacted; history entries' `claims` and
/// `mcp.arguments` too, unless `keep_claims`.
pub fn for_log(doc: &regorus::Value, keep_claims: bool) -> Value {
    let mut v = serde_json::to_value(doc).unwrap_or(Value::Null);
    if let Some(headers) = v
        .pointer_mut("/request/headers")
        .and_then(Value::as_object_mut)
    {
        for name in CREDENTIAL_HEADERS {
            if let Some(value) = headers.get_mut(name) {
                *value = Value::from(REDACTED);
            }
        }
    }
    if !keep_claims {
        if let Some(args) = v.pointer_mut("/mcp/arguments").filter(|a| !a.is_null()) {
            *args = Value::from(REDACTED);
        }
        for entry in v
            .get_mut("history")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(claims) = entry.get_mut("claims") {
                *claims = Value::from(REDACTED);
            }
        }
    }
    v
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

    #[test]
    fn the_logged_document_redacts_claims_arguments_and_credentials() {
        let doc = regorus::Value::from(json!({
            "calling_agent": "spiffe://example.org/a", "now": 5,
            "request": {"http_method": "POST", "path": "/mcp",
                        "headers": {"authorization": "Bearer s3cret", "cookie": "c=1", "accept": "x"}},
            "mcp": {"method": "tools/call", "id": 1, "tool": "refund", "arguments": {"card": "4111"}},
            "workflow": "w", "history": [{"step": "a", "claims": {"ssn": "123"}}, {"step": "b", "claims": {}}]}));
        let logged = for_log(&doc, false);
        assert_eq!(logged["request"]["headers"]["authorization"], REDACTED);
        assert_eq!(logged["request"]["headers"]["cookie"], REDACTED);
        assert_eq!(logged["request"]["headers"]["accept"], "x");
        assert_eq!(logged["mcp"]["arguments"], REDACTED);
        assert_eq!(logged["mcp"]["tool"], "refund");
        assert_eq!(logged["history"][0]["claims"], REDACTED);
        assert_eq!(logged["history"][1]["claims"], REDACTED);
        assert_eq!(logged["history"][1]["step"], "b");
        let text = for_log(&doc, false).to_string();
        assert!(
            !text.contains("s3cret") && !text.contains("4111") && !text.contains("123"),
            "{text}"
        );
        let kept = for_log(&doc, true);
        assert_eq!(kept["mcp"]["arguments"], json!({"card": "4111"}));
        assert_eq!(kept["history"][0]["claims"], json!({"ssn": "123"}));
        assert_eq!(
            kept["request"]["headers"]["authorization"], REDACTED,
            "credentials never"
        );
        // A message without arguments keeps its null.
        let none = regorus::Value::from(
            json!({"mcp": {"method": "ping", "arguments": null}, "history": []}),
        );
        let logged = for_log(&none, false);
        assert_eq!(logged["mcp"]["arguments"], Value::Null);
    }
}
