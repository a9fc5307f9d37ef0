//! Known-answer vectors (testdata/vectors.json, reproduced in
//! docs/history-format.md): fixed signed artefacts with expected verdicts
//! at a fixed `now`. The verdict test needs no signing code, so it runs on
//! every target; with `sign`, the vectors are also rebuilt byte for byte
//! (RFC 6979 signatures are deterministic).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;

use custody_history::{Headers, Limits, Request, SpiffeId, Verifier};
use serde_json::Value;

const VECTORS: &str = include_str!("../testdata/vectors.json");

#[test]
fn vectors_give_their_verdicts() {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    let bundle = common::bundle();
    let limits = Limits::default();
    let verifier = Verifier::new(&bundle, &limits);
    let aud = doc["audience"].as_str().unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 8);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let peer = SpiffeId::parse(v["peer"].as_str().unwrap()).unwrap();
        let req = Request {
            headers: Headers {
                history: v["workflow-history"].as_str(),
                proof: v["workflow-history-proof"].as_str(),
                certs: v["workflow-history-certs"].as_str(),
            },
            peer: &peer,
            audience: aud,
            body: v["body"].as_str().unwrap().as_bytes(),
            now: v["now"].as_u64().unwrap(),
        };
        let got = match verifier.verify(&req, None) {
            Ok(h) => {
                assert_eq!(
                    h.entries.len() as u64,
                    v["entries"].as_u64().unwrap(),
                    "{name}"
                );
                "ok"
            }
            Err(e) => e.reason(),
        };
        assert_eq!(got, v["expect"].as_str().unwrap(), "vector {name}");
    }
}

#[cfg(feature = "sign")]
mod build {
    use super::*;
    use custody_history::sign::{
        append_entry, certs_header, make_proof, EntryFields, ProofFields, Signer,
    };
    use custody_history::{b64url, b64url_decode, sha256};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    pub const NOW: u64 = 1_776_522_000;
    pub const AUD: &str = "spiffe://example.org/ns/payments/sa/refund-tool";
    pub const BODY: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"refund","arguments":{"amount":12000,"currency":"USD"}}}"#;

    fn sa(n: &str) -> String {
        format!("spiffe://example.org/ns/payments/sa/{n}")
    }

    fn signer(name: &str) -> Signer {
        Signer::from_pkcs8_der(&common::key_der(name), &common::cert_der(name)).unwrap()
    }

    fn high_s(jws: &str) -> String {
        let (input, sig) = jws.rsplit_once('.').unwrap();
        let raw = b64url_decode(sig).unwrap();
        let s = p256::ecdsa::Signature::from_slice(&raw).unwrap();
        let (r, s) = s.split_scalars();
        let hi = p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        format!("{input}.{}", b64url(&hi.to_bytes()))
    }

    #[allow(clippy::too_many_arguments)]
    fn vector(
        name: &str,
        about: &str,
        history: &str,
        proof: &str,
        certs: &str,
        peer: &str,
        body: &str,
        now: u64,
        expect: &str,
    ) -> Value {
        json!({
            "name": name, "about": about, "now": now, "peer": peer, "body": body,
            "workflow-history": history, "workflow-history-proof": proof,
            "workflow-history-certs": certs, "expect": expect,
            "entries": history.split('~').count(),
        })
    }

    pub fn build() -> Value {
        let fraud = signer("fraud-agent");
        let appr = signer("approvals");
        let refund = signer("refund-agent");
        let (to_appr, to_refund) = (sa("approvals"), sa("refund-agent"));
        let claims = json!({"amount": 12000, "currency": "USD"});
        let h = append_entry(
            None,
            &fraud,
            &EntryFields {
                wid: "wf-123",
                step: "fraud_check_passed",
                result: "approved",
                nxt: &to_appr,
                iat: NOW - 100,
                exp: NOW + 3500,
                claims: Some(&claims),
            },
        )
        .unwrap();
        let h = append_entry(
            Some(&h),
            &appr,
            &EntryFields {
                wid: "wf-123",
                step: "human_approval",
                result: "approved",
                nxt: &to_refund,
                iat: NOW - 50,
                exp: NOW + 1750,
                claims: None,
            },
        )
        .unwrap();
        let jti: Vec<u8> = (0u8..16).collect();
        let pf = ProofFields {
            aud: AUD,
            iat: NOW - 5,
            exp: NOW + 55,
            jti: &jti,
        };
        let p = make_proof(&h, &refund, BODY.as_bytes(), &pf).unwrap();
        let certs = certs_header([fraud.cert_der(), appr.cert_der(), refund.cert_der()]);
        let entries: Vec<&str> = h.split('~').collect();
        let peer = sa("refund-agent");
        let mut out = vec![
            vector(
                "ok",
                "fraud-agent -> approvals -> refund-agent, who calls the tool",
                &h,
                &p,
                &certs,
                &peer,
                BODY,
                NOW,
                "ok",
            ),
            vector(
                "body_changed",
                "the body is not the one the proof covers",
                &h,
                &p,
                &certs,
                &peer,
                &BODY.replace("12000", "99000"),
                NOW,
                "proof_body",
            ),
            vector(
                "wrong_peer",
                "the mTLS peer is mallory, not the proof's signer",
                &h,
                &p,
                &certs,
                &sa("mallory"),
                BODY,
                NOW,
                "proof_signer",
            ),
            vector(
                "proof_expired",
                "seen 200 s later: the proof expired (exp + 30 s skew < now)",
                &h,
                &p,
                &certs,
                &peer,
                BODY,
                NOW + 200,
                "proof_expired",
            ),
        ];
        let hs = format!("{}~{}", entries[0], high_s(entries[1]));
        out.push(vector(
            "high_s",
            "entry 1 carries the high-S twin of its signature",
            &hs,
            &p,
            &certs,
            &peer,
            BODY,
            NOW,
            "signature_high_s",
        ));
        let (_, rest) = entries[0].split_once('.').unwrap();
        let (payload, _) = rest.split_once('.').unwrap();
        let none = format!(
            "{}.{payload}.~{}",
            b64url(br#"{"alg":"none","typ":"wfh+jwt"}"#),
            entries[1]
        );
        out.push(vector(
            "alg_none",
            "entry 0 re-sent unsigned with alg none",
            &none,
            &p,
            &certs,
            &peer,
            BODY,
            NOW,
            "signature_alg",
        ));
        let swapped = format!("{}~{}", entries[1], entries[0]);
        out.push(vector(
            "entries_swapped",
            "the two entries in the wrong order",
            &swapped,
            &p,
            &certs,
            &peer,
            BODY,
            NOW,
            "chain_seq",
        ));
        // An impostor: example.org.evil's CA issued a certificate for fraud-agent.
        let imp = signer("impostor");
        let hi = append_entry(
            None,
            &imp,
            &EntryFields {
                wid: "wf-123",
                step: "fraud_check_passed",
                result: "approved",
                nxt: &to_refund,
                iat: NOW - 100,
                exp: NOW + 3500,
                claims: None,
            },
        )
        .unwrap();
        let pi = make_proof(&hi, &refund, BODY.as_bytes(), &pf).unwrap();
        let ci = certs_header([imp.cert_der(), refund.cert_der()]);
        out.push(vector(
            "impostor",
            "fraud-agent's certificate issued by example.org.evil's CA",
            &hi,
            &pi,
            &ci,
            &peer,
            BODY,
            NOW,
            "cert_untrusted",
        ));
        // An RSA authority (rsa.example), as Istio's default CA.
        let istio = signer("rsa-agent");
        let hr = append_entry(
            None,
            &istio,
            &EntryFields {
                wid: "wf-9",
                step: "checked",
                result: "ok",
                nxt: &to_refund,
                iat: NOW - 10,
                exp: NOW + 600,
                claims: None,
            },
        )
        .unwrap();
        let pr = make_proof(&hr, &refund, BODY.as_bytes(), &pf).unwrap();
        let cr = certs_header([istio.cert_der(), refund.cert_der()]);
        out.push(vector(
            "rsa_authority",
            "one entry by an SVID of an RSA authority",
            &hr,
            &pr,
            &cr,
            &peer,
            BODY,
            NOW,
            "ok",
        ));

        let ok_entries: Vec<Value> = entries
            .iter()
            .map(|e| {
                let mut seg = e.split('.');
                let hd = String::from_utf8(b64url_decode(seg.next().unwrap()).unwrap()).unwrap();
                let pl = String::from_utf8(b64url_decode(seg.next().unwrap()).unwrap()).unwrap();
                json!({"header": hd, "payload": pl, "sha256": b64url(&sha256(e.as_bytes()))})
            })
            .collect();
        json!({
            "comment": "Generated by tests/vectors.rs (regenerate_vectors) from testdata/fixtures.json. Trust bundle: example.org (fixtures cas.example), example.org.evil (cas.evil), rsa.example (cas.rsa). Limits: defaults.",
            "audience": AUD,
            "ok_decoded": {
                "entries": ok_entries,
                "proof_payload": String::from_utf8(b64url_decode(p.split('.').nth(1).unwrap()).unwrap()).unwrap(),
                "body_sha256": b64url(&sha256(BODY.as_bytes())),
                "x5t": {"fraud-agent": fraud.x5t(), "approvals": appr.x5t(), "refund-agent": refund.x5t()},
            },
            "vectors": out,
        })
    }

    #[test]
    fn vectors_are_reproducible() {
        let built = serde_json::to_string_pretty(&build()).unwrap() + "\n";
        assert!(
            built == VECTORS,
            "testdata/vectors.json is stale: run regenerate_vectors"
        );
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    #[ignore = "writes testdata/vectors.json"]
    fn regenerate_vectors() {
        let built = serde_json::to_string_pretty(&build()).unwrap() + "\n";
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/vectors.json"),
            built,
        )
        .unwrap();
    }
}
