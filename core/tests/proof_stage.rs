//! Stage 4 inside the pipeline, with real signatures: the committed fixture
//! CA and SVIDs of history/testdata. Runs natively and on wasm32.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use custody_core::config::Config;
use custody_core::decide::on_head;
use custody_core::decision::Decision;
use custody_core::ledger::{Judged, Kind, MAX_SINGLE_USE_SECS};
use custody_core::proof::{ProofEnv, CERTS_HEADER, HISTORY_HEADER, PROOF_HEADER};
use custody_core::reason::Reason;
use custody_core::transport::Head;
use custody_core::SpiffeId;
use custody_history::sign::{append_entry, certs_header, make_proof, EntryFields, ProofFields};
use custody_history::{Code, P256Verifier, ReplayCache, VerifyCache};
use serde_json::{json, Value};

use custody_testkit::{fixtures, sa, signer, AUD, NOW};

/// A call the `ping` rule allows without any history.
const LOOKUP: &[u8] =
    br#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"lookup"}}"#;
const BODY: &[u8] =
    br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"refund","arguments":{"amount":12000}}}"#;

fn config(with_trust: bool) -> Config {
    config_with(with_trust, false)
}

fn config_with(with_trust: bool, single_use: bool) -> Config {
    let mut c = json!({
        "policy": {"rules": [
            {"name": "refunds", "callers": [sa("refund-agent")], "methods": ["tools/call"], "tools": ["refund"],
             "require": [
                {"step": "fraud_check_passed", "by": [sa("fraud-*")]},
                {"step": "human_approval", "by": [sa("approvals")], "within": "30m", "single_use": single_use}]},
            {"name": "ping", "callers": ["spiffe://example.org/**"], "methods": ["ping", "tools/call"], "tools": ["lookup"]}
        ]},
    });
    if with_trust {
        c["audience"] = json!(AUD);
        c["trust_domains"] = json!({"example.org": {"spiffe_bundle": fixtures()["cas"]["example"]["spiffe_bundle"]}});
    } else {
        c["policy"]["rules"].as_array_mut().unwrap().remove(0);
    }
    Config::from_json(c.to_string().as_bytes()).unwrap()
}

/// fraud-agent → approvals → refund-agent, entries `age` seconds old.
fn history(steps: &[(&str, &str, &str)], age: u64) -> (String, String) {
    history_at(steps, NOW - age, NOW + 3600)
}

/// The same, issued from `iat` on and expiring at `exp`.
fn history_at(steps: &[(&str, &str, &str)], iat: u64, exp: u64) -> (String, String) {
    let mut chain: Option<String> = None;
    let mut certs = Vec::new();
    let claims = json!({"amount": 12000});
    for (i, (who, step, next)) in steps.iter().enumerate() {
        let s = signer(who);
        let fields = EntryFields {
            wid: "wf-1",
            nxt: &sa(next),
            step,
            result: "approved",
            iat: iat + i as u64,
            exp,
            claims: Some(&claims),
        };
        chain = Some(append_entry(chain.as_deref(), &s, &fields).unwrap());
        certs.push(s.cert_der().to_vec());
    }
    certs.push(signer("refund-agent").cert_der().to_vec());
    (
        chain.unwrap(),
        certs_header(certs.iter().map(Vec::as_slice)),
    )
}

type Headers = Vec<(String, Vec<u8>)>;

fn headers(history: &str, certs: &str, prover: &str, body: &[u8], jti: u8) -> Headers {
    headers_at(history, certs, prover, body, jti, NOW)
}

fn headers_at(history: &str, certs: &str, prover: &str, body: &[u8], jti: u8, now: u64) -> Headers {
    let proof = make_proof(
        history,
        &signer(prover),
        body,
        &ProofFields {
            aud: AUD,
            iat: now,
            exp: now + 60,
            jti: &[jti; 16],
        },
    )
    .unwrap();
    vec![
        (HISTORY_HEADER.to_owned(), history.as_bytes().to_vec()),
        (PROOF_HEADER.to_owned(), proof.into_bytes()),
        (CERTS_HEADER.to_owned(), certs.as_bytes().to_vec()),
    ]
}

struct Host {
    replay: ReplayCache,
    cache: VerifyCache,
}

impl Host {
    fn new() -> Self {
        Host {
            replay: ReplayCache::new(64, 0),
            cache: VerifyCache::new(64, 64),
        }
    }

    fn decide(&mut self, config: &Config, caller: &str, h: Headers, body: &[u8]) -> Decision {
        let judged = self.judge(config, caller, h, body, NOW);
        custody_core::ledger::settle_local(judged, &mut self.replay, NOW)
    }

    /// refund-agent's call of `body` with the history `h` and `certs`,
    /// proved by refund-agent with proof id `jti`.
    fn call(&mut self, config: &Config, h: &str, certs: &str, body: &[u8], jti: u8) -> Decision {
        let proved = headers(h, certs, "refund-agent", body, jti);
        self.decide(config, &sa("refund-agent"), proved, body)
    }

    /// The same call judged (not settled) at `now`.
    fn judge_call(
        &mut self,
        config: &Config,
        h: &str,
        certs: &str,
        body: &[u8],
        jti: u8,
        now: u64,
    ) -> Judged {
        let proved = headers_at(h, certs, "refund-agent", body, jti, now);
        self.judge(config, &sa("refund-agent"), proved, body, now)
    }

    fn judge(
        &mut self,
        config: &Config,
        caller: &str,
        h: Headers,
        body: &[u8],
        now: u64,
    ) -> Judged {
        let head = Head {
            method: "POST",
            path: "/mcp",
            content_type: Some("application/json"),
            content_length: None,
        };
        let pending = on_head(config, Ok(SpiffeId::parse(caller).unwrap()), &head, &h).unwrap();
        let mut unused = ReplayCache::new(0, 0);
        let mut env = ProofEnv {
            now,
            trust: &config.trust,
            ecdsa: &P256Verifier,
            cache: Some(&mut self.cache),
            input: None,
            replay: &mut unused,
        };
        pending.judge(config, body, &mut env)
    }
}

const STEPS: [(&str, &str, &str); 2] = [
    ("fraud-agent", "fraud_check_passed", "approvals"),
    ("approvals", "human_approval", "refund-agent"),
];

#[test]
fn a_verified_history_meets_the_rule() {
    let c = config(true);
    let (h, certs) = history(&STEPS, 100);
    let d = Host::new().call(&c, &h, &certs, BODY, 1);
    assert_eq!(d.verdict, Ok("refunds".to_owned()), "{:?}", d.detail);
    assert_eq!(d.workflow.as_deref(), Some("wf-1"));
    assert_eq!(d.history_len, 2);
}

#[test]
fn without_history_the_step_is_missing() {
    let c = config(true);
    let d = Host::new().decide(&c, &sa("refund-agent"), Vec::new(), BODY);
    assert_eq!(d.verdict, Err(Reason::MissingStep));
    // The decision log names the rule and the first step it lacks.
    assert_eq!(d.closest_rule.as_deref(), Some("refunds"));
    assert_eq!(
        d.detail.as_deref(),
        Some("fraud_check_passed is not in the verified history")
    );
    let (h, certs) = history(&STEPS[..1], 100);
    // A history that ends with approvals as holder cannot be presented by refund-agent.
    let d = Host::new().call(&c, &h, &certs, BODY, 2);
    assert_eq!(d.verdict, Err(Reason::History(Code::ProofHolder)));
}

#[test]
fn stale_approval_is_refused() {
    let c = config(true);
    let (h, certs) = history(&STEPS, 31 * 60);
    let d = Host::new().call(&c, &h, &certs, BODY, 3);
    assert_eq!(d.verdict, Err(Reason::StaleStep));
}

#[test]
fn a_proof_is_accepted_once() {
    let c = config(true);
    let (h, certs) = history(&STEPS, 100);
    let mut host = Host::new();
    let first = headers(&h, &certs, "refund-agent", BODY, 4);
    assert!(host
        .decide(&c, &sa("refund-agent"), first.clone(), BODY)
        .is_allowed());
    let again = host.decide(&c, &sa("refund-agent"), first, BODY);
    assert_eq!(again.verdict, Err(Reason::History(Code::ProofReplayed)));
}

#[test]
fn a_single_use_approval_authorises_one_request() {
    let c = config_with(true, true);
    let (h, certs) = history(&STEPS, 100);
    let mut host = Host::new();
    let first = host.call(&c, &h, &certs, BODY, 20);
    assert!(first.is_allowed(), "{:?}", first.detail);
    // A fresh proof, the same approval: used up.
    let second = host.call(&c, &h, &certs, BODY, 21);
    assert_eq!(second.verdict, Err(Reason::StepConsumed));
    // The log names the rule that would have allowed it and the used-up step.
    assert_eq!(second.closest_rule.as_deref(), Some("refunds"));
    assert_eq!(
        second.detail.as_deref(),
        Some("single_use entry already consumed (this Envoy)")
    );
    // A new approval in a new workflow authorises again.
    let (h2, certs2) = history(&STEPS, 50);
    let third = host.call(&c, &h2, &certs2, BODY, 22);
    assert!(third.is_allowed(), "{:?}", third.detail);
    // Without single_use the same approval may be used again.
    let reusable = config_with(true, false);
    let mut host = Host::new();
    for jti in 23..26 {
        assert!(host.call(&reusable, &h, &certs, BODY, jti).is_allowed());
    }
}

/// The approvals SVID of the fixtures expires then.
const APPROVALS_NOT_AFTER: u64 = 1_780_272_000;

#[test]
fn a_single_use_entry_is_remembered_until_it_expires_or_its_signer_does() {
    let c = config_with(true, true);
    // An approval that expires in an hour: kept until then (+ skew).
    let (h, certs) = history_at(&STEPS, NOW - 100, NOW + 3600);
    let j = Host::new().judge_call(&c, &h, &certs, BODY, 40, NOW);
    assert!(j.decision.is_allowed(), "{:?}", j.decision.detail);
    assert_eq!(j.claims.proof.as_ref().unwrap().horizon, NOW + 60 + 30);
    assert_eq!(j.claims.steps.len(), 1);
    assert_eq!(j.claims.steps[0].kind, Kind::Step);
    assert_eq!(j.claims.steps[0].horizon, NOW + 3600 + 30);
    assert!(j.claims.shared, "the rule requires history");

    // An approval valid for 30 days, two days before its signer's SVID
    // expires: kept until the SVID's notAfter (+ skew), not 30 days.
    let now = APPROVALS_NOT_AFTER - 2 * 86_400;
    let (h, certs) = history_at(&STEPS, now - 100, now + 30 * 86_400);
    let j = Host::new().judge_call(&c, &h, &certs, BODY, 41, now);
    assert!(j.decision.is_allowed(), "{:?}", j.decision.detail);
    assert_eq!(j.claims.steps[0].horizon, APPROVALS_NOT_AFTER + 30);

    // The same approval weeks before that: it would stay acceptable longer
    // than consumed entries are remembered, so a single_use clause refuses it.
    let (h, certs) = history_at(&STEPS, NOW - 100, NOW + 30 * 86_400);
    let j = Host::new().judge_call(&c, &h, &certs, BODY, 42, NOW);
    const { assert!(APPROVALS_NOT_AFTER - NOW > MAX_SINGLE_USE_SECS) };
    assert_eq!(j.decision.verdict, Err(Reason::SingleUseTooLong));
    // Without single_use the same entry is fine.
    let j = Host::new().judge_call(&config(true), &h, &certs, BODY, 43, NOW);
    assert!(j.decision.is_allowed(), "{:?}", j.decision.detail);
    assert!(j.claims.steps.is_empty());
}

#[test]
fn rules_without_history_claim_only_locally() {
    let c = config(true);
    let (h, certs) = history(&STEPS, 100);
    let j = Host::new().judge_call(&c, &h, &certs, LOOKUP, 44, NOW);
    assert_eq!(j.decision.verdict, Ok("ping".to_owned()));
    assert!(j.claims.proof.is_some(), "the proof's jti is still claimed");
    assert!(
        !j.claims.shared,
        "but this rule does not need it across replicas"
    );
}

#[test]
fn history_refusals_stop_the_request_before_the_rules() {
    let c = config(true);
    let (h, certs) = history(&STEPS, 100);
    let caller = sa("refund-agent");
    let mut host = Host::new();

    // The body the caller sends differs from the one it proved.
    let other = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"refund","arguments":{"amount":99000}}}"#;
    let d = host.decide(
        &c,
        &caller,
        headers(&h, &certs, "refund-agent", BODY, 5),
        other,
    );
    assert_eq!(d.verdict, Err(Reason::History(Code::ProofBody)));

    // A header sent twice.
    let mut twice = headers(&h, &certs, "refund-agent", BODY, 6);
    twice.push((HISTORY_HEADER.to_owned(), h.clone().into_bytes()));
    assert_eq!(
        host.decide(&c, &caller, twice, BODY).verdict,
        Err(Reason::History(Code::HeaderRepeated))
    );

    // Non-ASCII bytes in a header.
    let mut binary = headers(&h, &certs, "refund-agent", BODY, 7);
    binary[2].1.push(0xff);
    assert_eq!(
        host.decide(&c, &caller, binary, BODY).verdict,
        Err(Reason::History(Code::CertMalformed))
    );

    // Even a rule that needs no history refuses a bad one.
    let d = host.decide(
        &c,
        &caller,
        headers(&h, &certs, "refund-agent", BODY, 8),
        LOOKUP,
    );
    assert_eq!(d.verdict, Err(Reason::History(Code::ProofBody)));
    assert_eq!(d.method.as_deref(), Some("tools/call"));
}

#[test]
fn history_without_trust_configuration_is_refused() {
    let c = config(false);
    let (h, certs) = history(&STEPS, 100);
    let d = Host::new().call(&c, &h, &certs, LOOKUP, 9);
    assert_eq!(d.verdict, Err(Reason::HistoryUnconfigured));
    let d = Host::new().decide(&c, &sa("refund-agent"), Vec::new(), LOOKUP);
    assert_eq!(d.verdict, Ok("ping".to_owned()));
}

#[test]
fn rules_with_requirements_need_trust_configuration() {
    let err = Config::from_json(
        json!({"policy": {"rules": [{"name": "r", "callers": [sa("a")], "methods": ["ping"],
            "require": [{"step": "s", "by": [sa("b")]}]}]}})
        .to_string()
        .as_bytes(),
    )
    .unwrap_err();
    assert!(err.contains("audience and trust_domains"), "{err}");
}

/// fraud-agent's check, then one approval per call claim, the last handing the chain to refund-agent.
fn approvals_for(calls: &[Value]) -> (String, String) {
    let mut certs = vec![signer("fraud-agent").cert_der().to_vec()];
    let fraud = EntryFields {
        wid: "wf-bound",
        nxt: &sa("approvals"),
        step: "fraud_check_passed",
        result: "approved",
        iat: NOW - 100,
        exp: NOW + 3600,
        claims: None,
    };
    let mut chain = append_entry(None, &signer("fraud-agent"), &fraud).unwrap();
    for (i, call) in calls.iter().enumerate() {
        let next = if i + 1 == calls.len() {
            "refund-agent"
        } else {
            "approvals"
        };
        let claims = json!({"amount": 12000, "call": call});
        let fields = EntryFields {
            wid: "wf-bound",
            nxt: &sa(next),
            step: "human_approval",
            result: "approved",
            iat: NOW - 50 + i as u64,
            exp: NOW + 3600,
            claims: Some(&claims),
        };
        chain = append_entry(Some(&chain), &signer("approvals"), &fields).unwrap();
    }
    certs.push(signer("approvals").cert_der().to_vec());
    certs.push(signer("refund-agent").cert_der().to_vec());
    (chain, certs_header(certs.iter().map(Vec::as_slice)))
}

fn refund_body(order: &str) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"refund","arguments":{{"order_id":"{order}","amount":12000}}}}}}"#).into_bytes()
}

fn call_of(body: &[u8]) -> Value {
    custody_core::call::of_message(&custody_core::mcp::parse(body, 64).unwrap()).unwrap()
}

#[test]
fn a_bound_approval_authorises_exactly_the_call_it_names() {
    let mut c = json!({
        "audience": AUD,
        "trust_domains": {"example.org": {"spiffe_bundle": fixtures()["cas"]["example"]["spiffe_bundle"]}},
        "policy": {"rules": [
            {"name": "refunds", "callers": [sa("refund-agent")], "methods": ["tools/call"], "tools": ["refund"],
             "require": [
                {"step": "fraud_check_passed", "by": [sa("fraud-*")]},
                {"step": "human_approval", "by": [sa("approvals")], "within": "30m", "binds": "call", "single_use": true}]}
        ]},
    });
    let config = Config::from_json(c.to_string().as_bytes()).unwrap();
    let (o1, o2) = (refund_body("o-1"), refund_body("o-2"));
    let (h, certs) = approvals_for(&[call_of(&o1)]);
    let mut host = Host::new();
    // The approval of o-1 does not authorise o-2, even for the same amount.
    let d = host.call(&config, &h, &certs, &o2, 40);
    assert_eq!(d.verdict, Err(Reason::StepCallMismatch));
    let d = host.call(&config, &h, &certs, &o1, 41);
    assert!(d.is_allowed(), "{:?}", d.detail);
    // Single use: the o-1 approval is spent.
    let d = host.call(&config, &h, &certs, &o1, 42);
    assert_eq!(d.verdict, Err(Reason::StepConsumed));

    // Two approvals in one history: each call uses its own.
    let (h, certs) = approvals_for(&[call_of(&o1), call_of(&o2)]);
    let mut host = Host::new();
    for (body, jti) in [(&o2, 43), (&o1, 44)] {
        let d = host.call(&config, &h, &certs, body, jti);
        assert!(d.is_allowed(), "{:?}", d.detail);
    }

    // Without `binds`, the o-1 approval lets o-2 through: what binding prevents.
    c["policy"]["rules"][0]["require"][1]
        .as_object_mut()
        .unwrap()
        .remove("binds");
    let unbound = Config::from_json(c.to_string().as_bytes()).unwrap();
    let (h, certs) = approvals_for(&[call_of(&o1)]);
    let d = Host::new().call(&unbound, &h, &certs, &o2, 45);
    assert!(d.is_allowed());
}
