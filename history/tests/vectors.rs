//! Known-answer vectors (testdata/vectors.json, reproduced in
//! docs/history-format.md): fixed signed artefacts with expected verdicts
//! at a fixed `now`. The verdict test needs no signing code, so it runs on
//! every target; with `sign`, the vectors are also rebuilt byte for byte
//! (RFC 6979 signatures are deterministic).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use custody_testkit as common;

use custody_history::{Headers, Limits, Presented, SpiffeId, Verifier};
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
        let req = Presented {
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

    use custody_testkit::{sa, signer, AUD, NOW};
    pub const BODY: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"refund","arguments":{"amount":12000,"currency":"USD"}}}"#;

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
        out.extend(edges(&refund));
        // The numbers every implementation must share (the clients' tests
        // check their constants against these).
        let limits = custody_history::Limits::default();
        json!({
            "comment": "Generated by tests/vectors.rs (regenerate_vectors) from testdata/fixtures.json. Trust bundle: example.org (fixtures cas.example), example.org.evil (cas.evil), rsa.example (cas.rsa). Limits: defaults. Vectors with \"holder_check\": true are refused (or accepted) before any certificate is judged: a holder's check without the trust bundle (the Python and TypeScript clients) gives the same verdict.",
            "reproduce": "To rebuild these vectors byte for byte (docs/history-format.md section 10): deterministic ECDSA P-256 signing (RFC 6979 with HMAC-SHA-256), signatures normalised to low-S; JWS headers exactly {\"alg\":\"ES256\",\"typ\":...,\"x5t#S256\":...} (members in that order, no white space); payloads as compact JSON, members sorted by byte value, claims sorted the same way recursively; workflow-history-certs listing each signer's certificate once, in the order of first use (entry 0's signer, entry 1's, ..., then the prover's). The edge vectors' payloads are raw text, so number spellings survive; each of their entries is by refund-agent, handed to itself, who proves.",
            "audience": AUD,
            "limits": {
                "max_entries": limits.max_entries,
                "max_header_bytes": limits.max_header_bytes,
                "max_claims_bytes": limits.max_claims_bytes,
                "max_certs": limits.max_certs,
                "max_chain_depth": limits.max_chain_depth,
                "skew_seconds": limits.skew_secs,
                "max_proof_lifetime_seconds": limits.max_proof_lifetime_secs,
                "max_jti_chars": custody_history::MAX_JTI_CHARS,
                "max_json_depth": custody_history::MAX_JSON_DEPTH,
                "max_safe_integer": custody_history::MAX_SAFE_INTEGER,
            },
            "ok_decoded": {
                "entries": ok_entries,
                "proof_payload": String::from_utf8(b64url_decode(p.split('.').nth(1).unwrap()).unwrap()).unwrap(),
                "body_sha256": b64url(&sha256(BODY.as_bytes())),
                "x5t": {"fraud-agent": fraud.x5t(), "approvals": appr.x5t(), "refund-agent": refund.x5t()},
            },
            "vectors": out,
        })
    }

    /// The entry payload of the edge vectors, as members in this order, with
    /// `changes` applied: `(member, Some(raw JSON text))` replaces or adds a
    /// member, `(member, None)` removes it. Values are raw text, so numbers
    /// keep the spelling under test.
    fn payload(changes: &[(&str, Option<&str>)]) -> String {
        let iss = format!("\"{}\"", sa("refund-agent"));
        let (iat, exp) = ((NOW - 100).to_string(), (NOW + 3500).to_string());
        let mut members: Vec<(String, String)> = [
            ("v", "1"),
            ("wid", "\"wf-edge\""),
            ("seq", "0"),
            ("prev", "null"),
            ("iss", iss.as_str()),
            ("nxt", iss.as_str()),
            ("step", "\"checked\""),
            ("result", "\"ok\""),
            ("iat", iat.as_str()),
            ("exp", exp.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in changes {
            let at = members.iter().position(|(m, _)| m == k);
            match (at, v) {
                (Some(i), Some(v)) => members[i].1 = v.to_string(),
                (Some(i), None) => {
                    members.remove(i);
                }
                (None, Some(v)) => members.push((k.to_string(), v.to_string())),
                (None, None) => {}
            }
        }
        let body: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    /// Adds one edge vector: name, about, history, expected verdict, and a
    /// proof (default: a good proof of that history).
    type Edge<'a> = dyn FnMut(&str, &str, String, &str, Option<String>) + 'a;

    /// Edge cases of the spec (docs/history-format.md §2-§4, §7, §8): one
    /// entry by refund-agent handed to itself, proved by itself.
    fn edges(refund: &Signer) -> Vec<Value> {
        let peer = sa("refund-agent");
        let certs = certs_header([refund.cert_der()]);
        let header = refund.header_json(custody_history::ENTRY_TYP);
        let proof_header = refund.header_json(custody_history::PROOF_TYP);
        let proof_for = |history: &str, changes: &[(&str, Option<&str>)]| {
            let last = history.rsplit('~').next().unwrap();
            let mut members: Vec<(String, String)> = vec![
                ("aud".into(), format!("\"{AUD}\"")),
                (
                    "bdy".into(),
                    format!("\"{}\"", b64url(&sha256(BODY.as_bytes()))),
                ),
                ("exp".into(), (NOW + 55).to_string()),
                (
                    "head".into(),
                    format!("\"{}\"", b64url(&sha256(last.as_bytes()))),
                ),
                ("iat".into(), (NOW - 5).to_string()),
                ("iss".into(), format!("\"{peer}\"")),
                ("jti".into(), format!("\"{}\"", b64url(&[7u8; 16]))),
                ("len".into(), history.split('~').count().to_string()),
                ("v".into(), "1".into()),
                ("wid".into(), "\"wf-edge\"".into()),
            ];
            for (k, v) in changes {
                if let Some(m) = members.iter_mut().find(|(m, _)| m == k) {
                    m.1 = v.unwrap_or_default().to_string();
                }
            }
            let body: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect();
            refund.sign_raw(&proof_header, &format!("{{{}}}", body.join(",")))
        };
        let mut out: Vec<Value> = Vec::new();
        let mut edge =
            |name: &str, about: &str, history: String, expect: &str, proof: Option<String>| {
                let proof = proof.unwrap_or_else(|| proof_for(&history, &[]));
                let mut v = vector(
                    name, about, &history, &proof, &certs, &peer, BODY, NOW, expect,
                );
                v["holder_check"] = json!(true);
                out.push(v);
            };
        let entry = |changes: &[(&str, Option<&str>)]| refund.sign_raw(&header, &payload(changes));
        let one = |edge: &mut Edge,
                   changes: &[(&str, Option<&str>)],
                   name: &str,
                   about: &str,
                   expect: &str| edge(name, about, entry(changes), expect, None);

        // §2: claims are measured as their RFC 8785 (JCS) form, whatever the
        // number spellings sent; 2048 bytes is allowed, 2049 is not.
        let claims = |pad: usize| {
            format!(
                r#"{{"b":1E2,"a":-0,"c":1e-7,"d":100.0,"pad":"{}"}}"#,
                "x".repeat(pad)
            )
        };
        let jcs_len = |pad: usize| {
            let v: Value = serde_json::from_str(&claims(pad)).unwrap();
            custody_json::jcs::canonical(&v).unwrap().len()
        };
        let at_limit = 2048 - jcs_len(0);
        assert_eq!(jcs_len(at_limit), 2048);
        one(
            &mut edge,
            &[("claims", Some(&claims(at_limit)))],
            "claims_jcs_2048",
            "claims whose RFC 8785 form is exactly 2048 bytes (the text sent is longer)",
            "ok",
        );
        one(
            &mut edge,
            &[("claims", Some(&claims(at_limit + 1)))],
            "claims_jcs_2049",
            "claims whose RFC 8785 form is 2049 bytes",
            "claims_too_large",
        );
        one(
            &mut edge,
            &[("claims", Some(r#"{"n":9007199254740992}"#))],
            "claims_unsafe_integer",
            "a claims number of magnitude above 2^53 - 1",
            "member_type",
        );
        let nest =
            |levels: usize| format!("{{\"d\":{}0{}}}", "[".repeat(levels), "]".repeat(levels));
        one(
            &mut edge,
            &[("claims", Some(&nest(30)))],
            "json_depth_32",
            "a payload nested 32 levels deep (payload, claims, 30 arrays)",
            "ok",
        );
        one(
            &mut edge,
            &[("claims", Some(&nest(31)))],
            "json_depth_33",
            "a payload nested 33 levels deep",
            "history_malformed",
        );
        one(
            &mut edge,
            &[("claims", Some(r#"{"a":{"b":1,"b":2}}"#))],
            "claims_duplicate_member",
            "a member twice inside claims",
            "duplicate_member",
        );

        // §2, §3: integer members.
        one(
            &mut edge,
            &[("iat", Some("1e400"))],
            "number_out_of_range",
            "iat 1e400: not a finite IEEE 754 double, so not JSON this verifier reads",
            "history_malformed",
        );
        one(
            &mut edge,
            &[("iat", Some(&"9".repeat(400)))],
            "integer_400_digits",
            "a 400-digit integer",
            "history_malformed",
        );
        one(
            &mut edge,
            &[("seq", Some("9007199254740992"))],
            "integer_2p53",
            "seq 2^53, above the integer range",
            "member_type",
        );
        one(
            &mut edge,
            &[("seq", Some("-0"))],
            "integer_negative_zero",
            "seq -0",
            "member_type",
        );
        let iat = (NOW - 100).to_string();
        one(
            &mut edge,
            &[("iat", Some(&format!("{iat}.0")))],
            "integer_with_fraction",
            "iat written with a fraction",
            "member_type",
        );
        one(
            &mut edge,
            &[("iat", Some(&format!("{}e1", (NOW - 100) / 10)))],
            "integer_with_exponent",
            "iat written with an exponent",
            "member_type",
        );
        one(
            &mut edge,
            &[("wid", Some("\"\""))],
            "wid_empty",
            "an empty wid",
            "member_type",
        );
        one(
            &mut edge,
            &[("prev", Some(&format!("\"{}\"", b64url(&[1u8; 31]))))],
            "hash_31_bytes",
            "prev of 31 bytes at seq 0",
            "member_type",
        );

        // §7: which code wins when several checks fail.
        one(
            &mut edge,
            &[("seq", None), ("iss", Some("7"))],
            "first_member_wins",
            "seq missing and iss not a string: seq comes first",
            "missing_member",
        );
        one(
            &mut edge,
            &[("seq", None), ("zzz", Some("1"))],
            "unknown_before_missing",
            "an unknown member and a missing one",
            "unknown_member",
        );
        one(
            &mut edge,
            &[("v", Some("2")), ("zzz", Some("1"))],
            "version_before_unknown",
            "v 2 and an unknown member",
            "version_unsupported",
        );
        let p = payload(&[]);
        let bad_alg = refund.sign_raw(
            &format!(
                r#"{{"alg":"HS256","typ":"JWT","x5t#S256":"{}"}}"#,
                refund.x5t()
            ),
            &p,
        );
        edge(
            "alg_before_typ",
            "alg HS256 and typ JWT: alg comes first",
            bad_alg,
            "signature_alg",
            None,
        );
        let bad_typ = refund.sign_raw(
            &format!(
                r#"{{"alg":"ES256","typ":"JWT","kid":"k","x5t#S256":"{}"}}"#,
                refund.x5t()
            ),
            &p,
        );
        edge(
            "typ_before_members",
            "typ JWT and an extra kid: typ comes first",
            bad_typ,
            "header_typ",
            None,
        );
        let short_x5t = refund.sign_raw(
            &format!(
                r#"{{"alg":"ES256","typ":"wfh+jwt","x5t#S256":"{}"}}"#,
                b64url(&[1u8; 20])
            ),
            &p,
        );
        edge(
            "x5t_20_bytes",
            "x5t#S256 of 20 bytes",
            short_x5t,
            "member_type",
            None,
        );

        // §4: the proof's jti.
        let h = entry(&[]);
        for (name, about, jti, expect) in [
            (
                "jti_257_chars",
                "a jti of 257 characters",
                "A".repeat(257),
                "member_type",
            ),
            (
                "jti_15_bytes",
                "a jti of 15 bytes",
                b64url(&[7u8; 15]),
                "proof_jti",
            ),
            (
                "jti_trailing_bits",
                "a jti with non-zero trailing bits",
                format!("{}B", &b64url(&[7u8; 16])[..21]),
                "base64_noncanonical",
            ),
            (
                "jti_length_1_mod_4",
                "a jti of 21 characters (length 1 mod 4)",
                "A".repeat(21),
                "base64_noncanonical",
            ),
        ] {
            let quoted = format!("\"{jti}\"");
            edge(
                name,
                about,
                h.clone(),
                expect,
                Some(proof_for(&h, &[("jti", Some(&quoted))])),
            );
        }
        let lifetime = (NOW + 56).to_string();
        edge(
            "proof_lifetime_61",
            "a proof living 61 s",
            h.clone(),
            "proof_lifetime",
            Some(proof_for(&h, &[("exp", Some(&lifetime))])),
        );

        // §7, §8: skew applies to comparisons with now, not between two signed times.
        let at = |iat: u64, exp: u64| {
            entry(&[
                ("iat", Some(&iat.to_string())),
                ("exp", Some(&exp.to_string())),
            ])
        };
        let future_ok = at(NOW + 30, NOW + 3600);
        edge(
            "entry_iat_now_plus_skew",
            "an entry issued 30 s in the future: within the skew",
            future_ok,
            "ok",
            None,
        );
        let future = at(NOW + 31, NOW + 3600);
        edge(
            "entry_iat_past_skew",
            "an entry issued 31 s in the future",
            future,
            "entry_future",
            None,
        );
        let backwards = at(NOW - 100, NOW - 101);
        edge(
            "entry_lifetime_no_skew",
            "exp one second before iat (no skew between signed times)",
            backwards,
            "entry_lifetime",
            None,
        );
        let first = at(NOW - 100, NOW + 3500);
        let second_payload = payload(&[
            ("seq", Some("1")),
            (
                "prev",
                Some(&format!("\"{}\"", b64url(&sha256(first.as_bytes())))),
            ),
            ("iat", Some(&(NOW - 101).to_string())),
        ]);
        let two = format!("{first}~{}", refund.sign_raw(&header, &second_payload));
        edge(
            "chain_order_no_skew",
            "entry 1 issued one second before entry 0 (no skew between signed times)",
            two,
            "chain_order",
            None,
        );
        out
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
