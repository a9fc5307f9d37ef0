//! Signed requests for the benchmarks (native criterion micro-benchmarks
//! and the V8 timings of bench/wasm-micro): a request body, histories of
//! any length, refund-agent's proof, one Rego rule, and verifiers that skip
//! ECDSA and replay, to time what is left.

use crate::{sa, signer, AUD, NOW};
use custody_history::sign::{append_entry, certs_header, EntryFields, Signer};
use serde_json::json;

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
) -> custody_history::Request<'a> {
    custody_history::Request {
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
