//! Every refusal path of the verifier, each asserting its reason code.
//! Runs natively and on wasm32-unknown-unknown (wasm-bindgen-test, Node).
#![cfg(feature = "sign")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use custody_testkit as common;

use std::cell::Cell;

use common::*;
use custody_history::sign::{
    append_entry, certs_header, make_proof, EntryFields, ProofFields, Signer,
};
use custody_history::{
    b64url, b64url_decode, entry_hash, sha256, Code, EcdsaP256Verifier, Headers, Limits,
    P256Verifier, Presented, Refusal, ReplayCache, SpiffeId, TrustBundle, VerifiedHistory,
    Verifier, VerifyCache, ENTRY_TYP, PROOF_TYP,
};
use serde_json::{json, Value};

const WID: &str = "wf-123";
const BODY: &[u8] =
    br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"refund","arguments":{"amount":12000}}}"#;
const JTI: [u8; 16] = [7; 16];

/// An entry payload with the usual members; tests edit the Value.
fn payload(seq: u64, prev: Option<&str>, iss: &str, nxt: &str, iat: u64) -> Value {
    json!({
        "v": 1, "wid": WID, "seq": seq,
        "prev": prev.map(|p| b64url(&entry_hash(p))),
        "iss": iss, "nxt": nxt, "step": "fraud_check_passed", "result": "approved",
        "iat": iat, "exp": iat + 3600, "claims": {"amount": 12000, "currency": "USD"},
    })
}

fn entry(s: &Signer, p: &Value) -> String {
    s.sign_raw(&s.header_json(ENTRY_TYP), &p.to_string())
}

fn proof_payload(history: &str, iss: &str, iat: u64) -> Value {
    let entries: Vec<&str> = history.split('~').collect();
    json!({
        "v": 1, "iss": iss, "aud": AUD, "wid": WID,
        "head": b64url(&entry_hash(entries[entries.len() - 1])), "len": entries.len(),
        "bdy": b64url(&sha256(BODY)), "iat": iat, "exp": iat + 60, "jti": b64url(&JTI),
    })
}

fn proof(s: &Signer, p: &Value) -> String {
    s.sign_raw(&s.header_json(PROOF_TYP), &p.to_string())
}

/// One request to verify, editable field by field.
#[derive(Clone)]
struct Case {
    entries: Vec<String>,
    proof: Option<String>,
    certs: Option<String>,
    peer: String,
    aud: String,
    body: Vec<u8>,
    now: u64,
    limits: Limits,
    bundle: TrustBundle,
}

impl Case {
    /// fraud-agent -> approvals -> refund-agent, who calls the tool.
    fn standard() -> Case {
        let fraud = signer("fraud-agent");
        let appr = signer("approvals");
        let refund = signer("refund-agent");
        let e0 = entry(
            &fraud,
            &payload(0, None, &sa("fraud-agent"), &sa("approvals"), NOW - 100),
        );
        let mut p1 = payload(
            1,
            Some(&e0),
            &sa("approvals"),
            &sa("refund-agent"),
            NOW - 50,
        );
        p1["step"] = json!("human_approval");
        let e1 = entry(&appr, &p1);
        let mut c = Case {
            entries: vec![e0, e1],
            proof: None,
            certs: Some(certs_header([
                fraud.cert_der(),
                appr.cert_der(),
                refund.cert_der(),
            ])),
            peer: sa("refund-agent"),
            aud: AUD.into(),
            body: BODY.to_vec(),
            now: NOW,
            limits: Limits::default(),
            bundle: bundle(),
        };
        c.reprove(&refund);
        c
    }

    fn history(&self) -> String {
        self.entries.join("~")
    }

    /// Re-signs a fresh, matching proof by `s`.
    fn reprove(&mut self, s: &Signer) {
        let p = proof_payload(&self.history(), s.spiffe_id().as_str(), NOW - 5);
        self.proof = Some(proof(s, &p));
    }

    fn add_cert(&mut self, name: &str) {
        let c = self.certs.take().unwrap_or_default();
        let add = b64url(&cert_der(name));
        self.certs = Some(if c.is_empty() {
            add
        } else {
            format!("{c}~{add}")
        });
    }

    fn run(&self, cache: Option<&mut VerifyCache>) -> Result<VerifiedHistory, Refusal> {
        self.run_with(&P256Verifier, cache)
    }

    fn run_with(
        &self,
        ecdsa: &dyn EcdsaP256Verifier,
        cache: Option<&mut VerifyCache>,
    ) -> Result<VerifiedHistory, Refusal> {
        let history = self.history();
        let peer = SpiffeId::parse(&self.peer).unwrap();
        let req = Presented {
            headers: Headers {
                history: if self.entries.is_empty() {
                    None
                } else {
                    Some(&history)
                },
                proof: self.proof.as_deref(),
                certs: self.certs.as_deref(),
            },
            peer: &peer,
            audience: &self.aud,
            body: &self.body,
            now: self.now,
        };
        Verifier::new(&self.bundle, &self.limits)
            .with_ecdsa(ecdsa)
            .verify(&req, cache)
    }

    #[track_caller]
    fn ok(&self) -> VerifiedHistory {
        match self.run(None) {
            Ok(v) => v,
            Err(e) => panic!("expected success, got {e}"),
        }
    }

    #[track_caller]
    fn refused(&self) -> &'static str {
        match self.run(None) {
            Ok(_) => panic!("expected a refusal, got success"),
            Err(e) => {
                assert!(!e.detail().is_empty());
                e.reason()
            }
        }
    }
}

/// Replaces the segments of a compact JWS.
fn segments(jws: &str) -> (String, String, String) {
    let v: Vec<&str> = jws.split('.').collect();
    (v[0].into(), v[1].into(), v[2].into())
}

fn with_header(jws: &str, header_json: &str) -> String {
    let (_, p, s) = segments(jws);
    format!("{}.{p}.{s}", b64url(header_json.as_bytes()))
}

fn with_sig(jws: &str, sig: &[u8]) -> String {
    let (h, p, _) = segments(jws);
    format!("{h}.{p}.{}", b64url(sig))
}

fn sig_of(jws: &str) -> Vec<u8> {
    b64url_decode(&segments(jws).2).unwrap()
}

// ---------------------------------------------------------------- success

#[test]
fn standard_history_verifies() {
    let c = Case::standard();
    let v = c.ok();
    assert_eq!(v.wid, WID);
    assert_eq!(v.entries.len(), 2);
    assert_eq!(v.entries[0].step, "fraud_check_passed");
    assert_eq!(v.entries[1].step, "human_approval");
    assert_eq!(v.entries[1].iss.as_str(), sa("approvals"));
    assert_eq!(v.entries[1].nxt.as_str(), sa("refund-agent"));
    assert_eq!(v.entries[0].claims["amount"], 12000);
    assert_eq!(v.entries[1].hash, sha256(c.entries[1].as_bytes()));
    assert_eq!(v.proof.jti, b64url(&JTI));
    assert_eq!(v.proof.exp, NOW + 55);
    assert_eq!(v.proof.iss.as_str(), sa("refund-agent"));
}

#[test]
fn sign_helpers_build_a_verifiable_history() {
    let fraud = signer("fraud-agent");
    let appr = signer("approvals");
    let refund = signer("refund-agent");
    let (to_appr, to_refund) = (sa("approvals"), sa("refund-agent"));
    let f = |step: &'static str, nxt: &'static str, iat: u64| EntryFields {
        wid: WID,
        step,
        result: "approved",
        nxt: if nxt == "approvals" {
            &to_appr
        } else {
            &to_refund
        },
        iat,
        exp: iat + 600,
        claims: None,
    };
    let h = append_entry(None, &fraud, &f("fraud_check_passed", "approvals", NOW - 9)).unwrap();
    // Only the named next holder may append.
    assert!(append_entry(Some(&h), &refund, &f("x", "refund-agent", NOW)).is_err());
    let h = append_entry(
        Some(&h),
        &appr,
        &f("human_approval", "refund-agent", NOW - 8),
    )
    .unwrap();
    let pf = ProofFields {
        aud: AUD,
        iat: NOW,
        exp: NOW + 60,
        jti: &[9; 16],
    };
    let p = make_proof(&h, &refund, BODY, &pf).unwrap();
    let mut c = Case::standard();
    c.entries = h.split('~').map(String::from).collect();
    c.proof = Some(p);
    let v = c.ok();
    assert_eq!(v.entries[1].seq, 1);
    assert_eq!(v.entries[0].claims, json!({}));
    // Signatures are low-S and deterministic (RFC 6979).
    for e in &c.entries {
        let s = sig_of(e);
        assert!(custody_history::check_es256_signature(&s).is_ok());
    }
    assert_eq!(
        append_entry(None, &fraud, &f("fraud_check_passed", "approvals", NOW - 9)).unwrap(),
        c.entries[0]
    );
}

#[test]
fn intermediate_chain_verifies_and_needs_the_intermediate() {
    let mut c = Case::standard();
    let via = signer("via-intermediate");
    let e0 = entry(
        &via,
        &payload(
            0,
            None,
            &sa("via-intermediate"),
            &sa("refund-agent"),
            NOW - 10,
        ),
    );
    c.entries = vec![e0];
    c.reprove(&signer("refund-agent"));
    c.add_cert("via-intermediate");
    assert_eq!(c.refused(), "cert_untrusted");
    c.add_cert("intermediate");
    c.ok();
    c.limits.max_chain_depth = 1;
    assert_eq!(c.refused(), "cert_chain_depth");
}

/// A trust bundle with, for each `(trust domain, fixture CA)`, that CA's PEM.
fn authorities(cas: &[(&str, &str)]) -> TrustBundle {
    let mut b = TrustBundle::new();
    for (td, ca) in cas {
        b.add_pem(td, &ca_pem(ca)).unwrap();
    }
    b
}

#[test]
fn rsa_authority_verifies() {
    let mut c = Case::standard();
    let istio = signer("rsa-agent");
    let id = "spiffe://rsa.example/ns/default/sa/istio-agent";
    let e0 = entry(&istio, &payload(0, None, id, &sa("refund-agent"), NOW - 10));
    c.entries = vec![e0];
    c.reprove(&signer("refund-agent"));
    c.add_cert("rsa-agent");
    c.ok();
    // The RSA authority is for rsa.example only.
    c.bundle = authorities(&[("rsa.example", "example"), ("example.org", "example")]);
    assert_eq!(c.refused(), "cert_untrusted");
}

// ---------------------------------------------------------- presence, caps

#[test]
fn missing_headers() {
    let mut c = Case::standard();
    c.proof = None;
    assert_eq!(c.refused(), "proof_missing");
    let mut c = Case::standard();
    c.certs = None;
    assert_eq!(c.refused(), "certs_missing");
    let mut c = Case::standard();
    c.entries.clear();
    assert_eq!(c.refused(), "history_missing");
    assert_eq!(
        Refusal::HeaderRepeated(custody_history::Header::Proof).reason(),
        "header_repeated"
    );
}

#[test]
fn entry_count_cap() {
    let fraud = signer("fraud-agent");
    let mut c = Case::standard();
    let mut entries = Vec::new();
    for i in 0..33u64 {
        let prev = entries.last().cloned();
        let nxt = if i == 32 {
            sa("refund-agent")
        } else {
            sa("fraud-agent")
        };
        let e = entry(
            &fraud,
            &payload(i, prev.as_deref(), &sa("fraud-agent"), &nxt, NOW - 100 + i),
        );
        entries.push(e);
    }
    c.entries = entries.clone();
    c.reprove(&signer("refund-agent"));
    assert_eq!(c.refused(), "history_too_large");
    // 32 is fine (the last names refund-agent).
    let mut e31 = payload(
        31,
        Some(&entries[30]),
        &sa("fraud-agent"),
        &sa("refund-agent"),
        NOW - 69,
    );
    e31["step"] = json!("s");
    entries.truncate(31);
    entries.push(entry(&fraud, &e31));
    c.entries = entries;
    c.reprove(&signer("refund-agent"));
    let v = c.ok();
    assert_eq!(v.entries.len(), 32);
}

#[test]
fn header_size_caps() {
    let c = Case::standard();
    for which in 0..3 {
        let mut c = c.clone();
        c.limits.max_header_bytes = 100;
        let reason = c.refused();
        assert_eq!(reason, "header_too_large");
        let mut d = c.clone();
        d.limits.max_header_bytes = 48 * 1024;
        let big = "A".repeat(48 * 1024 + 1);
        match which {
            0 => d.entries = vec![big],
            1 => d.proof = Some(big),
            _ => d.certs = Some(big),
        }
        assert_eq!(d.refused(), "header_too_large");
    }
}

#[test]
fn claims_cap() {
    let mut c = Case::standard();
    let fraud = signer("fraud-agent");
    let mut p = payload(0, None, &sa("fraud-agent"), &sa("refund-agent"), NOW - 10);
    p["claims"] = json!({"note": "x".repeat(2048)});
    c.entries = vec![entry(&fraud, &p)];
    c.reprove(&signer("refund-agent"));
    assert_eq!(c.refused(), "claims_too_large");
    c.limits.max_claims_bytes = 4096;
    c.ok();
    p["claims"] = json!([1]);
    c.entries = vec![entry(&fraud, &p)];
    c.reprove(&signer("refund-agent"));
    assert_eq!(c.refused(), "member_type");
}

// ------------------------------------------------------------- JWS header

fn entry0_with_header(h: &str) -> &'static str {
    let mut c = Case::standard();
    c.entries[0] = with_header(&c.entries[0], h);
    c.refused()
}

#[test]
fn alg_none_hs256_and_other_algs_refused() {
    let x5t = signer("fraud-agent").x5t().to_owned();
    // alg none with an empty signature, as an attacker would send it.
    let mut c = Case::standard();
    let (_, p, _) = segments(&c.entries[0]);
    c.entries[0] = format!("{}.{p}.", b64url(br#"{"alg":"none","typ":"wfh+jwt"}"#));
    assert_eq!(c.refused(), "signature_alg");
    // HS256 with an HMAC-sized signature.
    let mut c = Case::standard();
    let (_, p, _) = segments(&c.entries[0]);
    let h = format!(r#"{{"alg":"HS256","typ":"wfh+jwt","x5t#S256":"{x5t}"}}"#);
    c.entries[0] = format!("{}.{p}.{}", b64url(h.as_bytes()), b64url(&[1; 32]));
    assert_eq!(c.refused(), "signature_alg");
    for alg in ["ES384", "RS256", "EdDSA", "es256", ""] {
        let h = format!(r#"{{"alg":"{alg}","typ":"wfh+jwt","x5t#S256":"{x5t}"}}"#);
        assert_eq!(entry0_with_header(&h), "signature_alg", "{alg}");
    }
    let h = format!(r#"{{"typ":"wfh+jwt","x5t#S256":"{x5t}"}}"#);
    assert_eq!(entry0_with_header(&h), "signature_alg");
    let h = format!(r#"{{"alg":["ES256"],"typ":"wfh+jwt","x5t#S256":"{x5t}"}}"#);
    assert_eq!(entry0_with_header(&h), "signature_alg");
}

#[test]
fn wrong_typ_refused() {
    let x5t = signer("fraud-agent").x5t().to_owned();
    for typ in ["JWT", "wfh-proof+jwt", "WFH+JWT", ""] {
        let h = format!(r#"{{"alg":"ES256","typ":"{typ}","x5t#S256":"{x5t}"}}"#);
        assert_eq!(entry0_with_header(&h), "header_typ", "{typ}");
    }
    let h = format!(r#"{{"alg":"ES256","x5t#S256":"{x5t}"}}"#);
    assert_eq!(entry0_with_header(&h), "header_typ");
    // A proof with an entry typ.
    let mut c = Case::standard();
    let p = c.proof.clone().unwrap();
    c.proof = Some(with_header(
        &p,
        &format!(
            r#"{{"alg":"ES256","typ":"wfh+jwt","x5t#S256":"{}"}}"#,
            signer("refund-agent").x5t()
        ),
    ));
    assert_eq!(c.refused(), "header_typ");
}

#[test]
fn extra_or_missing_header_members_refused() {
    let x5t = signer("fraud-agent").x5t().to_owned();
    for extra in [
        r#""jwk":{"kty":"EC"}"#,
        r#""jku":"https://evil.example/jwks""#,
        r#""x5c":["MIIB"]"#,
        r#""x5u":"https://evil.example/c""#,
        r#""kid":"k1""#,
        r#""crit":["b64"]"#,
        r#""b64":false"#,
    ] {
        let h = format!(r#"{{"alg":"ES256","typ":"wfh+jwt","x5t#S256":"{x5t}",{extra}}}"#);
        assert_eq!(entry0_with_header(&h), "header_members", "{extra}");
    }
    assert_eq!(
        entry0_with_header(r#"{"alg":"ES256","typ":"wfh+jwt"}"#),
        "header_members"
    );
    assert_eq!(
        entry0_with_header(r#"{"alg":"ES256","typ":"wfh+jwt","kid":"x"}"#),
        "header_members"
    );
    // x5t#S256 of the wrong length.
    let h = format!(
        r#"{{"alg":"ES256","typ":"wfh+jwt","x5t#S256":"{}"}}"#,
        b64url(&[1; 20])
    );
    assert_eq!(entry0_with_header(&h), "member_type");
}

#[test]
fn duplicate_members_refused() {
    let x5t = signer("fraud-agent").x5t().to_owned();
    let h = format!(r#"{{"alg":"ES256","alg":"ES256","typ":"wfh+jwt","x5t#S256":"{x5t}"}}"#);
    assert_eq!(entry0_with_header(&h), "duplicate_member");
    let h = format!(r#"{{"alg":"none","typ":"wfh+jwt","x5t#S256":"{x5t}","alg":"ES256"}}"#);
    assert_eq!(entry0_with_header(&h), "duplicate_member");
    // In the payload: a second "iss" (a parser keeping the last would be fooled).
    let fraud = signer("fraud-agent");
    let mut c = Case::standard();
    let p = payload(0, None, &sa("fraud-agent"), &sa("approvals"), NOW - 100).to_string();
    let dup = p.replacen('{', &format!(r#"{{"iss":"{}","#, sa("mallory")), 1);
    c.entries[0] = fraud.sign_raw(&fraud.header_json(ENTRY_TYP), &dup);
    assert_eq!(c.refused(), "duplicate_member");
    // Nested duplicate inside claims.
    let dup = p.replace(r#""amount":12000"#, r#""amount":12000,"amount":1"#);
    c.entries[0] = fraud.sign_raw(&fraud.header_json(ENTRY_TYP), &dup);
    assert_eq!(c.refused(), "duplicate_member");
}

// --------------------------------------------------------------- payloads

#[test]
fn unknown_missing_and_mistyped_payload_members() {
    let fraud = signer("fraud-agent");
    let base = payload(0, None, &sa("fraud-agent"), &sa("approvals"), NOW - 100);
    let run = |p: &Value| {
        let mut c = Case::standard();
        c.entries[0] = entry(&fraud, p);
        c.refused()
    };
    let newer = with(&base, &[("v", json!(2)), ("admin", json!(true))]);
    assert_eq!(run(&newer), "version_unsupported");
    let required = [
        "v", "wid", "seq", "prev", "iss", "nxt", "step", "result", "iat", "exp",
    ];
    let mistyped = [
        ("v", json!(1.0)),
        ("v", json!("1")),
        ("seq", json!(0.0)),
        ("seq", json!(-1)),
        ("seq", json!("0")),
        ("iat", json!(1776521900.5)),
        ("iat", json!("1776521900")),
        ("exp", json!(1e10)),
        ("wid", json!(1)),
        ("wid", json!("")),
        ("step", json!(null)),
        ("result", json!(1)),
        ("prev", json!(1)),
        ("claims", json!(null)),
        ("claims", json!("x")),
    ];
    assert_member_rules(run, &base, ("admin", json!(true)), &required, &mistyped);
    let iss = json!("spiffe://Example.org/ns/payments/sa/fraud-agent");
    assert_eq!(run(&with(&base, &[("iss", iss)])), "member_spiffe_id");
    let nxt = json!("https://example.org/x");
    assert_eq!(run(&with(&base, &[("nxt", nxt)])), "member_spiffe_id");
    // The payload must be a JSON object.
    let mut c = Case::standard();
    c.entries[0] = fraud.sign_raw(&fraud.header_json(ENTRY_TYP), "[1]");
    assert_eq!(c.refused(), "history_malformed");
    c.entries[0] = fraud.sign_raw(&fraud.header_json(ENTRY_TYP), "{\"v\":1");
    assert_eq!(c.refused(), "history_malformed");
}

/// `base` with each `(member, value)` of `changes` set.
fn with(base: &Value, changes: &[(&str, Value)]) -> Value {
    let mut p = base.clone();
    for (member, value) in changes {
        p[*member] = value.clone();
    }
    p
}

/// `base` without `member`.
fn without(base: &Value, member: &str) -> Value {
    let mut p = base.clone();
    p.as_object_mut().unwrap().remove(member);
    p
}

/// `run` refuses `base` with the `unknown` member added (unknown_member),
/// without each `required` member (missing_member), and with each
/// `(member, value)` of `mistyped` (member_type).
fn assert_member_rules(
    run: impl Fn(&Value) -> &'static str,
    base: &Value,
    unknown: (&str, Value),
    required: &[&str],
    mistyped: &[(&str, Value)],
) {
    assert_eq!(run(&with(base, &[unknown])), "unknown_member");
    for m in required {
        assert_eq!(run(&without(base, m)), "missing_member", "{m}");
    }
    for (m, bad) in mistyped {
        let p = with(base, &[(*m, bad.clone())]);
        assert_eq!(run(&p), "member_type", "{m} = {bad}");
    }
}

#[test]
fn proof_payload_members() {
    let refund = signer("refund-agent");
    let c0 = Case::standard();
    let base = proof_payload(&c0.history(), &sa("refund-agent"), NOW - 5);
    let run = |p: &Value| {
        let mut c = Case::standard();
        c.proof = Some(proof(&refund, p));
        c.refused()
    };
    let required = [
        "v", "iss", "aud", "wid", "head", "len", "bdy", "iat", "exp", "jti",
    ];
    let mistyped = [
        ("len", json!(2.0)),
        ("iat", json!("1")),
        ("exp", json!(-1)),
        ("jti", json!(5)),
    ];
    assert_member_rules(run, &base, ("nonce", json!("x")), &required, &mistyped);
    let short_jti = json!(b64url(&[1; 15]));
    assert_eq!(run(&with(&base, &[("jti", short_jti)])), "proof_jti");
    let padded_jti = json!("AAAAAAAAAAAAAAAAAAAAAA==");
    assert_eq!(
        run(&with(&base, &[("jti", padded_jti)])),
        "base64_noncanonical"
    );
    let short_bdy = json!(b64url(&[0; 31]));
    assert_eq!(run(&with(&base, &[("bdy", short_bdy)])), "member_type");
}

// -------------------------------------------------------------- base64url

#[test]
fn noncanonical_base64url_refused_everywhere() {
    let c0 = Case::standard();
    let (h, p, s) = segments(&c0.entries[0]);
    let pad = |x: &str| {
        let mut x = x.to_owned();
        while x.len() % 4 != 0 {
            x.push('=');
        }
        x
    };
    // Header segment: padding (the header JSON length makes it need some).
    let cases = [
        format!(
            "{}.{p}.{s}",
            pad(&h) + if h.len() % 4 == 0 { "====" } else { "" }
        ),
        format!("{h}.{}.{s}", p.replace('-', "+").replace('_', "/") + "+"),
        format!("{h}.{p}.{}", s.replace('-', "+").replace('_', "/") + "/"),
        format!("{h}.{p}.{s}="),
        format!("{h}.{p} .{s}"),
    ];
    for bad in cases {
        let mut c = c0.clone();
        c.entries[0] = bad.clone();
        assert_eq!(c.refused(), "base64_noncanonical", "{bad}");
    }
    // Non-zero trailing bits: the 64-byte signature leaves 2 spare bits.
    let mut c = c0.clone();
    let mut s2 = s.clone();
    let last = s2.pop().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    s2.push(alphabet.as_bytes()[idx | 1] as char);
    assert_ne!(s2, s);
    c.entries[0] = format!("{h}.{p}.{s2}");
    assert_eq!(c.refused(), "base64_noncanonical");
    // A certificate with padding or the standard alphabet.
    let mut c = c0.clone();
    let certs = c.certs.clone().unwrap();
    let first = certs.split('~').next().unwrap().to_owned();
    c.certs = Some(certs.replacen(&first, &pad(&first), 1));
    if first.len() % 4 != 0 {
        assert_eq!(c.refused(), "base64_noncanonical");
    }
    let mut c = c0.clone();
    c.certs = Some(format!("{}~{certs}", first.replace('A', "+")));
    let mut c2 = c0.clone();
    c2.certs = Some(format!("{certs}~{first}="));
    assert_eq!(c2.refused(), "base64_noncanonical");
    let _ = c;
}

#[test]
fn malformed_structure() {
    let c0 = Case::standard();
    for bad in ["a.b", "a.b.c.d", "", "...."] {
        let mut c = c0.clone();
        c.entries[0] = bad.into();
        assert_eq!(c.refused(), "history_malformed", "{bad:?}");
    }
    let mut c = c0.clone();
    c.proof = Some("x.y".into());
    assert_eq!(c.refused(), "proof_malformed");
    let mut c = c0.clone();
    c.certs = Some(format!(
        "{}~{}",
        c.certs.clone().unwrap(),
        b64url(b"not a certificate")
    ));
    assert_eq!(c.refused(), "cert_malformed");
    let mut c = c0.clone();
    c.certs = Some(format!("{}~", c.certs.clone().unwrap()));
    assert_eq!(c.refused(), "cert_malformed");
    // A trailing ~ gives an empty entry.
    let mut c = c0.clone();
    c.entries.push(String::new());
    assert_eq!(c.refused(), "history_malformed");
}

// ------------------------------------------------------------- signatures

#[test]
fn der_and_wrong_length_signatures_refused() {
    let c0 = Case::standard();
    let raw = sig_of(&c0.entries[0]);
    let sig = p256::ecdsa::Signature::from_slice(&raw).unwrap();
    let der = sig.to_der();
    for bad in [
        der.as_bytes().to_vec(),
        raw[..63].to_vec(),
        [raw.clone(), vec![0]].concat(),
        vec![],
    ] {
        let mut c = c0.clone();
        c.entries[0] = with_sig(&c.entries[0], &bad);
        assert_eq!(c.refused(), "signature_format", "{} bytes", bad.len());
    }
}

#[test]
fn high_s_refused_even_though_mathematically_valid() {
    let c0 = Case::standard();
    let raw = sig_of(&c0.entries[0]);
    let sig = p256::ecdsa::Signature::from_slice(&raw).unwrap();
    let (r, s) = sig.split_scalars();
    let high = p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
    // The high-S twin does verify under plain ECDSA…
    let fraud = signer("fraud-agent");
    let (h, p, _) = segments(&c0.entries[0]);
    let sec1 = {
        use p256::pkcs8::DecodePrivateKey;
        let k = p256::ecdsa::SigningKey::from_pkcs8_der(&key_der("fraud-agent")).unwrap();
        k.verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    };
    let high_bytes: [u8; 64] = high.to_bytes().into();
    assert!(P256Verifier.verify(&sec1, format!("{h}.{p}").as_bytes(), &high_bytes));
    let _ = fraud;
    // …but is refused.
    let mut c = c0.clone();
    c.entries[0] = with_sig(&c.entries[0], &high_bytes);
    assert_eq!(c.refused(), "signature_high_s");
    let mut c = c0.clone();
    let praw = sig_of(c.proof.as_ref().unwrap());
    let ps = p256::ecdsa::Signature::from_slice(&praw).unwrap();
    let (r, s) = ps.split_scalars();
    let high = p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
    c.proof = Some(with_sig(c.proof.as_ref().unwrap(), &high.to_bytes()));
    assert_eq!(c.refused(), "signature_high_s");
}

#[test]
fn r_or_s_out_of_range_refused() {
    let c0 = Case::standard();
    let raw = sig_of(&c0.entries[0]);
    let n = custody_history::P256_N;
    let mut cases = Vec::new();
    for (lo, val) in [
        (0, [0u8; 32]),
        (32, [0u8; 32]),
        (0, n),
        (32, n),
        (0, [0xff; 32]),
    ] {
        let mut s = raw.clone();
        s[lo..lo + 32].copy_from_slice(&val);
        cases.push(s);
    }
    for bad in cases {
        let mut c = c0.clone();
        c.entries[0] = with_sig(&c.entries[0], &bad);
        assert_eq!(c.refused(), "signature_range");
    }
}

#[test]
fn flipped_payload_or_signature_byte_refused() {
    let c0 = Case::standard();
    let (h, p, s) = segments(&c0.entries[0]);
    let json = String::from_utf8(b64url_decode(&p).unwrap()).unwrap();
    let flipped = json.replace("approved", "approvee");
    let mut c = c0.clone();
    c.entries[0] = format!("{h}.{}.{s}", b64url(flipped.as_bytes()));
    assert_eq!(c.refused(), "signature_invalid");
    let mut raw = sig_of(&c0.entries[0]);
    raw[31] ^= 1;
    let mut c = c0.clone();
    c.entries[0] = with_sig(&c.entries[0], &raw);
    assert_eq!(c.refused(), "signature_invalid");
    // The proof too.
    let mut c = c0.clone();
    let (h, p, s) = segments(c.proof.as_ref().unwrap());
    let json = String::from_utf8(b64url_decode(&p).unwrap()).unwrap();
    let flipped = json.replace(AUD, &sa("other-tool"));
    c.proof = Some(format!("{h}.{}.{s}", b64url(flipped.as_bytes())));
    assert_eq!(c.refused(), "signature_invalid");
}

#[test]
fn verifier_is_called_only_after_format_checks() {
    struct Yes(Cell<u32>);
    impl EcdsaP256Verifier for Yes {
        fn verify(&self, _: &[u8], _: &[u8], _: &[u8; 64]) -> bool {
            self.0.set(self.0.get() + 1);
            true
        }
    }
    let yes = Yes(Cell::new(0));
    let c0 = Case::standard();
    let raw = sig_of(&c0.entries[0]);
    let sig = p256::ecdsa::Signature::from_slice(&raw).unwrap();
    let (r, s) = sig.split_scalars();
    let high = p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
    let mut c = c0.clone();
    c.entries[0] = with_sig(&c.entries[0], &high.to_bytes());
    // Even a verifier that accepts everything cannot let a high-S signature through.
    assert_eq!(
        c.run_with(&yes, None).unwrap_err().reason(),
        "signature_high_s"
    );
    let mut c = c0.clone();
    c.entries[0] = with_sig(&c.entries[0], &[0u8; 64]);
    assert_eq!(
        c.run_with(&yes, None).unwrap_err().reason(),
        "signature_range"
    );
}

// ------------------------------------------------------------ certificates

fn single_entry_by(name: &str, iss: &str, iat: u64) -> Case {
    let mut c = Case::standard();
    let s = signer(name);
    c.entries = vec![entry(&s, &payload(0, None, iss, &sa("refund-agent"), iat))];
    c.reprove(&signer("refund-agent"));
    c.add_cert(name);
    c
}

#[test]
fn signer_certificate_rules() {
    let c = single_entry_by("expired", &sa("expired-agent"), NOW - 10);
    assert_eq!(c.refused(), "cert_expired");
    let c = single_entry_by("future", &sa("future-agent"), NOW - 10);
    assert_eq!(c.refused(), "cert_not_yet_valid");
    let c = single_entry_by("ca-leaf", &sa("ca-agent"), NOW - 10);
    assert_eq!(c.refused(), "cert_is_ca");
    let c = single_entry_by("two-uris", &sa("two-uris"), NOW - 10);
    assert_eq!(c.refused(), "cert_spiffe_id");
    // Certificate valid now but not at the entry's iat (before notBefore = 2026-04-01).
    let c = single_entry_by("fraud-agent", &sa("fraud-agent"), 1_775_001_600 - 31);
    match c.run(None) {
        Err(Refusal::CertNotYetValid { at, depth: 0, .. }) => {
            assert_eq!(at, custody_history::CheckedAt::Iat)
        }
        other => panic!("{other:?}"),
    }
    // Within the skew it is fine.
    let mut c = single_entry_by("fraud-agent", &sa("fraud-agent"), NOW);
    let mut p = payload(
        0,
        None,
        &sa("fraud-agent"),
        &sa("refund-agent"),
        1_775_001_600 - 30,
    );
    p["exp"] = json!(NOW + 600);
    c.entries = vec![entry(&signer("fraud-agent"), &p)];
    c.reprove(&signer("refund-agent"));
    c.ok();
}

#[test]
fn entry_iss_must_equal_certificate_spiffe_id() {
    // Signed with fraud-agent's key and certificate but claiming approvals.
    let c = single_entry_by("fraud-agent", &sa("approvals"), NOW - 10);
    assert_eq!(c.refused(), "signer_mismatch");
    // The proof too.
    let mut c = Case::standard();
    let mallory = signer("mallory");
    let p = proof_payload(&c.history(), &sa("refund-agent"), NOW - 5);
    c.proof = Some(proof(&mallory, &p));
    c.add_cert("mallory");
    assert_eq!(c.refused(), "signer_mismatch");
}

#[test]
fn certificate_from_another_trust_domain() {
    // other.org is not in the bundle at all.
    let c = single_entry_by(
        "other-agent",
        "spiffe://other.org/ns/payments/sa/fraud-agent",
        NOW - 10,
    );
    assert_eq!(c.refused(), "cert_unknown_trust_domain");
    // Federated with other.org: its agent may sign as itself, not as example.org's.
    let mut c = single_entry_by("other-agent", &sa("fraud-agent"), NOW - 10);
    c.bundle.add_pem("other.org", &ca_pem("other")).unwrap();
    assert_eq!(c.refused(), "signer_mismatch");
    let mut c = single_entry_by(
        "other-agent",
        "spiffe://other.org/ns/payments/sa/fraud-agent",
        NOW - 10,
    );
    c.bundle.add_pem("other.org", &ca_pem("other")).unwrap();
    c.ok();
}

#[test]
fn look_alike_trust_domain() {
    // example.org.evil's CA issued a certificate claiming example.org: the
    // bundle trusts example.org.evil for example.org.evil only.
    let c = single_entry_by("impostor", &sa("fraud-agent"), NOW - 10);
    assert_eq!(c.refused(), "cert_untrusted");
    // An example.org.evil identity with no bundle for that domain.
    let mut c = single_entry_by(
        "evil-fraud-agent",
        "spiffe://example.org.evil/ns/payments/sa/fraud-agent",
        NOW - 10,
    );
    c.bundle = authorities(&[("example.org", "example")]);
    assert_eq!(c.refused(), "cert_unknown_trust_domain");
    // Even if example.org.evil's CA were (wrongly) listed for example.org, its
    // identities' trust domain is example.org.evil.
    c.bundle = authorities(&[("example.org", "evil")]);
    assert_eq!(c.refused(), "cert_unknown_trust_domain");
}

#[test]
fn signer_certificate_must_be_sent() {
    let mut c = Case::standard();
    let certs = c.certs.clone().unwrap();
    let parts: Vec<&str> = certs.split('~').collect();
    c.certs = Some(format!("{}~{}", parts[1], parts[2]));
    assert_eq!(c.refused(), "cert_missing");
    let mut c = Case::standard();
    c.certs = Some(format!("{}~{}", parts[0], parts[1]));
    assert_eq!(c.refused(), "cert_missing");
}

// ------------------------------------------------------------------- chain

/// fraud -> approvals -> refund, then refund records a step naming itself.
fn three() -> Case {
    let mut c = Case::standard();
    let refund = signer("refund-agent");
    let mut p2 = payload(
        2,
        Some(&c.entries[1]),
        &sa("refund-agent"),
        &sa("refund-agent"),
        NOW - 20,
    );
    p2["step"] = json!("refund_prepared");
    c.entries.push(entry(&refund, &p2));
    c.reprove(&refund);
    c.ok();
    c
}

#[test]
fn last_entry_dropped() {
    let mut c = three();
    c.entries.pop();
    assert_eq!(c.refused(), "proof_len");
    // Dropping the last of a plain handoff chain also breaks custody of the proof.
    let mut c = Case::standard();
    c.entries.pop();
    assert_eq!(c.refused(), "proof_holder");
}

#[test]
fn middle_entry_dropped_swapped_duplicated() {
    let mut c = three();
    c.entries.remove(1);
    assert_eq!(c.refused(), "chain_seq");
    let mut c = three();
    c.entries.swap(0, 1);
    assert_eq!(c.refused(), "chain_seq");
    let mut c = three();
    let e = c.entries[1].clone();
    c.entries.insert(2, e);
    assert_eq!(c.refused(), "chain_seq");
}

#[test]
fn prev_links() {
    let fraud = signer("fraud-agent");
    let appr = signer("approvals");
    // Root with a prev.
    let mut c = Case::standard();
    let other = entry(
        &fraud,
        &payload(0, None, &sa("fraud-agent"), &sa("x"), NOW - 200),
    );
    let e0 = entry(
        &fraud,
        &payload(
            0,
            Some(&other),
            &sa("fraud-agent"),
            &sa("refund-agent"),
            NOW - 100,
        ),
    );
    c.entries = vec![e0];
    c.reprove(&signer("refund-agent"));
    assert_eq!(c.refused(), "chain_prev");
    // seq 1 pointing at another entry, and seq 1 with a null prev.
    let mut c = Case::standard();
    let e1 = entry(
        &appr,
        &payload(
            1,
            Some(&other),
            &sa("approvals"),
            &sa("refund-agent"),
            NOW - 50,
        ),
    );
    c.entries[1] = e1;
    c.reprove(&signer("refund-agent"));
    assert_eq!(c.refused(), "chain_prev");
    let mut c = Case::standard();
    let e1 = entry(
        &appr,
        &payload(1, None, &sa("approvals"), &sa("refund-agent"), NOW - 50),
    );
    c.entries[1] = e1;
    c.reprove(&signer("refund-agent"));
    assert_eq!(c.refused(), "chain_prev");
}

#[test]
fn prefix_handed_on_by_another_holder() {
    // fraud-agent named approvals; mallory appends anyway.
    let mut c = Case::standard();
    let mallory = signer("mallory");
    c.entries[1] = entry(
        &mallory,
        &payload(
            1,
            Some(&c.entries[0]),
            &sa("mallory"),
            &sa("refund-agent"),
            NOW - 50,
        ),
    );
    c.add_cert("mallory");
    c.reprove(&signer("refund-agent"));
    assert_eq!(c.refused(), "chain_custody");
}

#[test]
fn wid_and_order_and_entry_times() {
    let appr = signer("approvals");
    let edit1 = |f: &dyn Fn(&mut Value)| {
        let mut c = Case::standard();
        let mut p = payload(
            1,
            Some(&c.entries[0]),
            &sa("approvals"),
            &sa("refund-agent"),
            NOW - 50,
        );
        f(&mut p);
        c.entries[1] = entry(&appr, &p);
        c.reprove(&signer("refund-agent"));
        c
    };
    assert_eq!(
        edit1(&|p| p["wid"] = json!("wf-other")).refused(),
        "chain_wid"
    );
    assert_eq!(
        edit1(&|p| p["iat"] = json!(NOW - 101)).refused(),
        "chain_order"
    );
    edit1(&|p| p["iat"] = json!(NOW - 100)).ok();
    assert_eq!(
        edit1(&|p| {
            p["iat"] = json!(NOW + 31);
            p["exp"] = json!(NOW + 600)
        })
        .refused(),
        "entry_future"
    );
    edit1(&|p| p["iat"] = json!(NOW + 30)).ok();
    assert_eq!(
        edit1(&|p| p["exp"] = json!(NOW - 31)).refused(),
        "entry_expired"
    );
    edit1(&|p| p["exp"] = json!(NOW - 30)).ok();
    assert_eq!(
        edit1(&|p| p["exp"] = json!(NOW - 51)).refused(),
        "entry_lifetime"
    );
    // The whole chain expires with its first entry.
    let mut c = Case::standard();
    c.now = NOW - 100 + 3600 + 31;
    c.reprove(&signer("refund-agent"));
    assert_eq!(c.refused(), "entry_expired");
}

// ------------------------------------------------------------------- proof

#[test]
fn proof_signer_and_holder() {
    // mallory holds a valid SVID and proves, but the peer is refund-agent.
    let mut c = Case::standard();
    c.reprove(&signer("mallory"));
    c.add_cert("mallory");
    assert_eq!(c.refused(), "proof_signer");
    // mallory is the peer and proves, but the chain names refund-agent.
    c.peer = sa("mallory");
    assert_eq!(c.refused(), "proof_holder");
}

#[test]
fn proof_bindings() {
    let refund = signer("refund-agent");
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut c = Case::standard();
        let mut p = proof_payload(&c.history(), &sa("refund-agent"), NOW - 5);
        f(&mut p);
        c.proof = Some(proof(&refund, &p));
        c
    };
    let c0 = Case::standard();
    assert_eq!(
        edit(&|p| p["aud"] = json!(sa("other-tool"))).refused(),
        "proof_audience"
    );
    let mut c = Case::standard();
    c.aud = sa("other-tool");
    assert_eq!(c.refused(), "proof_audience");
    assert_eq!(
        edit(&|p| p["wid"] = json!("wf-other")).refused(),
        "proof_wid"
    );
    assert_eq!(edit(&|p| p["len"] = json!(3)).refused(), "proof_len");
    let head0 = b64url(&entry_hash(&c0.entries[0]));
    assert_eq!(
        edit(&|p| p["head"] = json!(head0.clone())).refused(),
        "proof_head"
    );
    let mut c = Case::standard();
    c.body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"refund","arguments":{"amount":99000}}}"#.to_vec();
    assert_eq!(c.refused(), "proof_body");
    assert_eq!(
        edit(&|p| {
            p["iat"] = json!(NOW + 31);
            p["exp"] = json!(NOW + 60)
        })
        .refused(),
        "proof_not_yet_valid"
    );
    assert_eq!(
        edit(&|p| {
            p["iat"] = json!(NOW - 100);
            p["exp"] = json!(NOW - 31)
        })
        .refused(),
        "proof_expired"
    );
    edit(&|p| {
        p["iat"] = json!(NOW - 90);
        p["exp"] = json!(NOW - 30)
    })
    .ok();
    assert_eq!(
        edit(&|p| p["exp"] = json!(NOW - 5 + 61)).refused(),
        "proof_lifetime"
    );
    assert_eq!(
        edit(&|p| p["exp"] = json!(NOW - 6)).refused(),
        "proof_lifetime"
    );
    // An expired proof, seen later.
    let mut c = Case::standard();
    c.now = NOW + 200;
    assert_eq!(c.refused(), "proof_expired");
}

#[test]
fn replayed_jti_refused_by_replay_cache() {
    let c = Case::standard();
    let mut rc = ReplayCache::new(1024, 30);
    let v = c.ok();
    rc.check_and_insert(&v.proof.jti, v.proof.exp, NOW).unwrap();
    let v2 = c.ok();
    assert_eq!(
        rc.check_and_insert(&v2.proof.jti, v2.proof.exp, NOW + 1)
            .unwrap_err()
            .reason(),
        "proof_replayed"
    );
}

// ------------------------------------------------------------------- caches

#[test]
fn cache_hit_is_as_strict_as_a_miss() {
    struct Count(Cell<u32>);
    impl EcdsaP256Verifier for Count {
        fn verify(&self, k: &[u8], m: &[u8], s: &[u8; 64]) -> bool {
            self.0.set(self.0.get() + 1);
            P256Verifier.verify(k, m, s)
        }
    }
    let count = Count(Cell::new(0));
    let mut cache = VerifyCache::new(64, 16);
    let c = Case::standard();
    c.run_with(&count, Some(&mut cache)).unwrap();
    // Cold: 2 entries + proof + 3 certificate signatures.
    assert_eq!(count.0.get(), 6);
    count.0.set(0);
    c.run_with(&count, Some(&mut cache)).unwrap();
    // Warm: only the proof's signature.
    assert_eq!(count.0.get(), 1);
    let st = cache.stats();
    assert_eq!((st.entry_hits, st.cert_hits), (2, 3));

    let run = |c: &Case, cache: &mut VerifyCache| c.run(Some(cache)).unwrap_err().reason();
    // The first entry expires later: still refused on a hit.
    let mut later = c.clone();
    later.now = NOW - 100 + 3600 + 31;
    assert_eq!(run(&later, &mut cache), "entry_expired");
    assert_eq!(later.refused(), "entry_expired");
    // The certificates expire (2026-06-01): refused on a hit.
    let mut c2 = c.clone();
    c2.now = 1_780_272_000 + 31;
    assert_eq!(run(&c2, &mut cache), c2.refused());
    assert_eq!(run(&c2, &mut cache), "cert_expired");
    // The signer's certificate is no longer sent.
    let mut c3 = c.clone();
    let certs = c.certs.clone().unwrap();
    c3.certs = Some(certs.split('~').skip(1).collect::<Vec<_>>().join("~"));
    assert_eq!(run(&c3, &mut cache), "cert_missing");
    // The bundle changed: no trust for example.org any more.
    let mut c4 = c.clone();
    c4.bundle = authorities(&[("rsa.example", "rsa")]);
    assert_eq!(run(&c4, &mut cache), "cert_unknown_trust_domain");
    // A lower claims cap applies to cached entries too.
    let mut c5 = c.clone();
    c5.limits.max_claims_bytes = 10;
    assert_eq!(run(&c5, &mut cache), "claims_too_large");
    // Chain and proof checks are re-evaluated: reorder cached entries.
    let mut c6 = c.clone();
    c6.entries.swap(0, 1);
    assert_eq!(run(&c6, &mut cache), "chain_seq");
    // The cached cert's trust domain still needs its bundle and the same iss.
    let mut c7 = c.clone();
    c7.peer = sa("mallory");
    assert_eq!(run(&c7, &mut cache), "proof_signer");
}

/// The caches are keyed by the exact text sent: another spelling of a cached
/// entry or certificate is a miss, verified (and refused) in full.
#[test]
fn a_warm_cache_refuses_other_spellings_of_what_it_holds() {
    let mut cache = VerifyCache::new(64, 16);
    let c0 = Case::standard();
    c0.run(Some(&mut cache)).unwrap();
    let run = |c: &Case, cache: &mut VerifyCache| c.run(Some(cache)).unwrap_err().reason();
    // The entry's signature with non-zero trailing bits.
    let (h, p, s) = segments(&c0.entries[0]);
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s2 = s.clone();
    let last = s2.pop().unwrap();
    s2.push(alphabet.as_bytes()[alphabet.find(last).unwrap() | 1] as char);
    let mut c = c0.clone();
    c.entries[0] = format!("{h}.{p}.{s2}");
    assert_eq!(run(&c, &mut cache), "base64_noncanonical");
    // A cached certificate with padding.
    let certs = c0.certs.clone().unwrap();
    let mut c = c0.clone();
    c.certs = Some(format!("{certs}="));
    assert_eq!(run(&c, &mut cache), "base64_noncanonical");
    // A different signature on a cached entry's header and payload.
    let mut c = c0.clone();
    let mut s3 = s.clone();
    let first = s3.remove(0);
    s3.insert(0, if first == 'A' { 'B' } else { 'A' });
    c.entries[0] = format!("{h}.{p}.{s3}");
    assert_eq!(run(&c, &mut cache), "signature_invalid");
    // And the original still verifies from the cache.
    c0.run(Some(&mut cache)).unwrap();
}

#[test]
fn cached_intermediate_path_needs_the_intermediate_again() {
    let mut cache = VerifyCache::new(64, 16);
    let mut c = single_entry_by("via-intermediate", &sa("via-intermediate"), NOW - 10);
    c.add_cert("intermediate");
    c.run(Some(&mut cache)).unwrap();
    let mut c2 = single_entry_by("via-intermediate", &sa("via-intermediate"), NOW - 10);
    assert_eq!(
        c2.run(Some(&mut cache)).unwrap_err().reason(),
        "cert_untrusted"
    );
    c2.add_cert("intermediate");
    c2.run(Some(&mut cache)).unwrap();
}

// ----------------------------------------------------------------- bundles

#[test]
fn spiffe_bundle_sequence_and_format() {
    let json = ca_spiffe_bundle("example");
    let mut v: Value = serde_json::from_str(&json).unwrap();
    let mut b = TrustBundle::new();
    v["spiffe_sequence"] = json!(5);
    assert_eq!(
        b.load_spiffe_bundle("example.org", &v.to_string()).unwrap(),
        1
    );
    assert_eq!(b.sequence("example.org"), Some(5));
    v["spiffe_sequence"] = json!(4);
    let e = b
        .load_spiffe_bundle("example.org", &v.to_string())
        .unwrap_err();
    assert_eq!(e.reason(), "bundle_sequence");
    assert_eq!(
        e,
        Refusal::BundleSequence {
            loaded: 5,
            offered: 4
        }
    );
    v["spiffe_sequence"] = json!(5);
    b.load_spiffe_bundle("example.org", &v.to_string()).unwrap();
    v["spiffe_sequence"] = json!(6);
    b.load_spiffe_bundle("example.org", &v.to_string()).unwrap();
    // Another domain has its own sequence.
    v["spiffe_sequence"] = json!(1);
    b.load_spiffe_bundle("other.org", &v.to_string()).unwrap();

    // A member twice is a bundle that cannot be used (docs/history-format.md §6).
    let dup = json.replacen("{", r#"{"spiffe_sequence":9,"#, 1);
    assert_eq!(
        TrustBundle::new()
            .load_spiffe_bundle("example.org", &dup)
            .unwrap_err()
            .reason(),
        "bundle_malformed"
    );
    // X509-SVID §6.2: an x509-svid entry without x5c (or with an empty one) is
    // ignored, and only the first x5c value is the authority.
    let authority = v["keys"][0]["x5c"][0].clone();
    for lenient in [
        json!({"keys": [{"use": "x509-svid", "kty": "EC"}, {"use": "x509-svid", "x5c": [authority]}]}),
        json!({"keys": [{"use": "x509-svid", "x5c": []}, {"use": "x509-svid", "x5c": [authority]}]}),
        json!({"keys": [{"use": "x509-svid", "x5c": [authority, "not even base64!"]}]}),
    ] {
        assert_eq!(
            TrustBundle::new()
                .load_spiffe_bundle("example.org", &lenient.to_string())
                .unwrap(),
            1,
            "{lenient}"
        );
    }
    for bad in [
        "{}".to_string(),
        r#"{"keys":[{"use":"jwt-svid","kty":"EC"}]}"#.to_string(),
        r#"{"keys":[{"use":"x509-svid","x5c":[]}]}"#.to_string(),
        r#"{"keys":[{"use":"x509-svid","x5c":["!!"]}]}"#.to_string(),
        r#"{"keys":[],"spiffe_sequence":1.5}"#.to_string(),
        "not json".to_string(),
    ] {
        assert_eq!(
            TrustBundle::new()
                .load_spiffe_bundle("example.org", &bad)
                .unwrap_err()
                .reason(),
            "bundle_malformed",
            "{bad}"
        );
    }
    assert_eq!(
        TrustBundle::new()
            .load_spiffe_bundle("Example.org", &json)
            .unwrap_err()
            .reason(),
        "bundle_trust_domain"
    );
    assert_eq!(
        TrustBundle::new()
            .add_pem(
                "example.org",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            )
            .unwrap_err()
            .reason(),
        "bundle_malformed"
    );
}

#[test]
fn reason_codes_are_unique_and_listed() {
    let all = Code::ALL;
    let mut seen = std::collections::BTreeSet::new();
    for c in all {
        let r = c.as_str();
        assert!(seen.insert(r), "{r} twice");
        assert!(
            r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{r}"
        );
        assert_eq!(Code::parse(r), Some(*c));
    }
    assert_eq!(Code::parse("no_such_code"), None);
    let doc = include_str!("../../docs/history-format.md");
    for c in all {
        assert!(doc.contains(&format!("`{c}`")), "{c} is not documented");
    }
}
