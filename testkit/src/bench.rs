//! Signed requests for the benchmarks (native criterion micro-benchmarks
//! and the V8 timings of bench/wasm-micro): a request body, histories of
//! any length, refund-agent's proof, one Rego rule, and verifiers that skip
//! ECDSA and replay, to time what is left.

use crate::{sa, signer, AUD, NOW};
use custody_history::sign::{append_entry, certs_header, EntryFields, Signer};
use serde_json::{json, Value};

pub const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"refund","arguments":{"amount":1200,"order":"A-1001","reason":"damaged"}}}"#;

/// `n` entries of workflow `wid` alternating fraud-agent / approvals, the
/// last a human approval naming refund-agent; and the certs header.
pub fn history(n: usize, wid: &str) -> (String, String) {
    let who = |i: usize| {
        if i.is_multiple_of(2) {
            "fraud-agent"
        } else {
            "approvals"
        }
    };
    let mut chain: Option<String> = None;
    for i in 0..n {
        let nxt = if i + 1 == n {
            sa("refund-agent")
        } else {
            sa(who(i + 1))
        };
        let step = if i + 1 == n {
            "human_approval".to_owned()
        } else {
            format!("step_{i}")
        };
        let claims = json!({"amount": 5000});
        let f = EntryFields {
            wid,
            step: &step,
            result: "approved",
            nxt: &nxt,
            iat: NOW - 100,
            exp: NOW + 3600,
            claims: Some(&claims),
        };
        chain = Some(append_entry(chain.as_deref(), &signer(who(i)), &f).unwrap());
    }
    let certs = [
        signer("fraud-agent"),
        signer("approvals"),
        signer("refund-agent"),
    ];
    (
        chain.unwrap(),
        certs_header(certs.iter().map(Signer::cert_der)),
    )
}

/// The payments rule: the amount asked for is covered by a human approval.
pub const REGO: &str = r#"package payments.refund
import rego.v1

default allow := false

allow if {
    some h in input.history
    h.step == "human_approval"
    input.mcp.arguments.amount <= h.claims.amount
}
"#;
pub const RULE: &str = "data.payments.refund.allow";

/// refund-agent's proof binding `history` to BODY for AUD, valid from NOW for 60 s.
pub fn proof(history: &str, jti: [u8; 16]) -> String {
    custody_history::sign::make_proof(
        history,
        &signer("refund-agent"),
        BODY,
        &custody_history::sign::ProofFields {
            aud: AUD,
            iat: NOW,
            exp: NOW + 60,
            jti: &jti,
        },
    )
    .unwrap()
}

/// The example.org trust bundle the fixture SVIDs chain to.
pub fn bundle() -> custody_history::TrustBundle {
    let mut bundle = custody_history::TrustBundle::new();
    bundle
        .load_spiffe_bundle(crate::TD, &crate::ca_spiffe_bundle("example"))
        .unwrap();
    bundle
}

/// The three headers of one request: a history of `n` entries of workflow
/// `wid` (see [`history`]), the certs header, and refund-agent's proof.
pub struct Signed {
    pub history: String,
    pub certs: String,
    pub proof: String,
}

pub fn signed(n: usize, wid: &str) -> Signed {
    let (history, certs) = history(n, wid);
    let proof = proof(&history, [7; 16]);
    Signed {
        history,
        certs,
        proof,
    }
}

/// `s` as a verifier request from `peer` to AUD over BODY, at NOW.
pub fn request<'a>(
    s: &'a Signed,
    peer: &'a custody_history::SpiffeId,
) -> custody_history::Presented<'a> {
    custody_history::Presented {
        headers: custody_history::Headers {
            history: Some(&s.history),
            proof: Some(&s.proof),
            certs: Some(&s.certs),
        },
        peer,
        audience: AUD,
        body: BODY,
        now: NOW,
    }
}

/// Accepts every signature: what verification costs besides ECDSA, which
/// the filter hands to Envoy.
pub struct NoEcdsa;

impl custody_history::EcdsaP256Verifier for NoEcdsa {
    fn verify(&self, _: &[u8], _: &[u8], _: &[u8; 64]) -> bool {
        true
    }
}

/// Admits every proof id (the benchmarks reuse proofs).
pub struct NoReplay;

impl custody_core::proof::ReplayGuard for NoReplay {
    fn admit(&mut self, _: &str, _: u64, _: u64) -> Result<(), custody_history::Refusal> {
        Ok(())
    }
}

/// A `tools/list` response of 1,000 tools with small JSON schemas (about
/// 200 KB), of which a caller allowed `tool_0500` keeps one; as one JSON body
/// and as an SSE stream (a priming event, then the response event).
pub fn thousand_tools() -> (Vec<u8>, Vec<u8>) {
    let tools: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"name": format!("tool_{i:04}"), "description": format!("Tool number {i}: does one thing well."),
                   "inputSchema": {"type": "object", "properties": {"order_id": {"type": "string"},
                   "amount": {"type": "integer", "minimum": 0}}, "required": ["order_id"]}})
        })
        .collect();
    let body = json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": tools, "nextCursor": "p2"}})
        .to_string();
    let sse = format!("id: 0\r\ndata:\r\n\r\nevent: message\r\ndata: {body}\r\n\r\n");
    (body.into_bytes(), sse.into_bytes())
}

/// The policy of [`thousand_tools`]: 20 other rules, then the caller's one tool.
pub fn list_policy() -> custody_core::policy::Policy {
    let mut rules: Vec<Value> = (0..20)
        .map(|i| json!({"name": format!("other-{i}"), "callers": [format!("spiffe://example.org/ns/team{i}/sa/*")],
                        "methods": ["tools/call"], "tools": [format!("team{i}_*")]}))
        .collect();
    rules.push(json!({"name": "one", "callers": [sa("refund-agent")], "methods": ["tools/call"], "tools": ["tool_0500"]}));
    serde_json::from_value(json!({"rules": rules})).unwrap()
}
