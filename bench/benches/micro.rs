//! Micro-benchmarks of Custody's pure stages, natively (criterion).
//! `./build.sh bench micro`, or `cargo bench -p custody-bench --bench micro -- --quick`.
//! Not part of `./build.sh test`. Native numbers: inside Envoy the same code
//! runs as wasm32 in V8, typically 1.5-3x slower.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use custody_core::config::Config;
use custody_core::identity::{from_peer_certificate, Authorities, CertCache, PeerFacts};
use custody_core::mcp::{self, Target};
use custody_core::policy::{Query, Step};
use custody_core::rego::{RegoModules, RegoRule};
use custody_history::sign::{make_proof, ProofFields};
use custody_history::{Limits, P256Verifier, Verifier, VerifyCache};
use custody_spiffe::SpiffeId;
use serde_json::{json, Value};

use custody_testkit::bench::*;
use custody_testkit::{cert_der, fixtures, sa, signer, AUD, NOW};

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

fn bench_parsing(c: &mut Criterion) {
    c.bench_function("mcp::parse tools/call", |b| {
        b.iter(|| mcp::parse(black_box(BODY), 64).unwrap())
    });
    let id = "spiffe://example.org/ns/payments/sa/refund-agent";
    c.bench_function("SpiffeId::parse", |b| {
        b.iter(|| SpiffeId::parse(black_box(id)).unwrap())
    });
    let cert_pem = pem(&cert_der("refund-agent"));
    let facts = PeerFacts {
        mtls: true,
        validated: true,
        certificate_pem: Some(cert_pem.as_bytes()),
        ..Default::default()
    };
    c.bench_function("X.509-SVID peer identity (PEM parse + leaf rules)", |b| {
        b.iter(|| from_peer_certificate(black_box(&facts), None, &mut CertCache::new(0)).unwrap())
    });
    let mut cache = CertCache::new(16);
    c.bench_function("X.509-SVID peer identity, cached", |b| {
        b.iter(|| from_peer_certificate(black_box(&facts), None, &mut cache).unwrap())
    });
    let bundle = bundle();
    let limits = Limits::default();
    let auth = Authorities {
        bundle: &bundle,
        limits: &limits,
        ecdsa: &P256Verifier,
        now: NOW,
    };
    c.bench_function(
        "X.509-SVID peer identity + trust-domain path, cached",
        |b| b.iter(|| from_peer_certificate(black_box(&facts), Some(&auth), &mut cache).unwrap()),
    );
}

fn bench_history(c: &mut Criterion) {
    let bundle = bundle();
    let limits = Limits::default();
    let verifier = Verifier::new(&bundle, &limits);
    let peer = SpiffeId::parse(&sa("refund-agent")).unwrap();
    let caller = signer("refund-agent");
    let mut g = c.benchmark_group("history verify");
    for n in [1usize, 4, 16] {
        let signed = signed(n, "wf-bench");
        let req = request(&signed, &peer);
        verifier.verify(&req, None).unwrap();
        g.bench_function(
            format!("{n} entries + proof, no cache (incl. X.509 path validation)"),
            |b| b.iter(|| verifier.verify(black_box(&req), None).unwrap()),
        );
        let mut cache = VerifyCache::new(4096, 1024);
        g.bench_function(format!("{n} entries + proof, VerifyCache warm"), |b| {
            b.iter(|| verifier.verify(black_box(&req), Some(&mut cache)).unwrap())
        });
        // Inside Envoy the ECDSA check is Envoy's BoringSSL; this is the rest.
        let rest = Verifier::new(&bundle, &limits).with_ecdsa(&NoEcdsa);
        g.bench_function(
            format!("{n} entries + proof, VerifyCache warm, without the ECDSA check"),
            |b| b.iter(|| rest.verify(black_box(&req), Some(&mut cache)).unwrap()),
        );
    }
    g.finish();
    c.bench_function("sign: make_proof (load generator cost)", |b| {
        let (h, _) = history(4, "wf-bench");
        b.iter(|| {
            make_proof(
                &h,
                &caller,
                BODY,
                &ProofFields {
                    aud: AUD,
                    iat: NOW,
                    exp: NOW + 60,
                    jti: &[9; 16],
                },
            )
            .unwrap()
        })
    });
}

fn bench_policy(c: &mut Criterion) {
    let rules: Vec<Value> = (0..20)
        .map(|i| json!({"name": format!("r{i}"), "callers": [format!("spiffe://example.org/ns/team{i}/sa/*")], "methods": ["tools/call"], "tools": [format!("tool_{i}_*")]}))
        .chain([json!({"name": "refunds", "callers": [sa("refund-*")], "methods": ["tools/call"], "tools": ["refund"],
            "require": [{"step": "fraud_check_passed", "by": [sa("fraud-*")]}, {"step": "human_approval", "by": [sa("approvals")], "within": "30m"}]})])
        .collect();
    let config = Config::from_json(
        json!({"audience": AUD,
               "trust_domains": {"example.org": {"spiffe_bundle": fixtures()["cas"]["example"]["spiffe_bundle"]}},
               "policy": {"rules": rules}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let caller = SpiffeId::parse(&sa("refund-agent")).unwrap();
    let target = Target::Tool("refund".into());
    let fraud = sa("fraud-agent");
    let approvals = sa("approvals");
    let steps = [
        Step {
            step: "fraud_check_passed",
            result: "approved",
            signer: &fraud,
            iat: NOW - 100,
            call: None,
        },
        Step {
            step: "human_approval",
            result: "approved",
            signer: &approvals,
            iat: NOW - 50,
            call: None,
        },
    ];
    let req = Query {
        caller: &caller,
        method: "tools/call",
        target: Some(&target),
        history: &steps,
        now: NOW,
        input: None,
        call: None,
    };
    c.bench_function(
        "Policy::evaluate (21 rules, last matches, 2 require clauses)",
        |b| b.iter(|| config.policy.evaluate(black_box(&req))),
    );

    let mut modules = RegoModules::try_from(BTreeMap::from([(
        "refund.rego".to_owned(),
        REGO.to_owned(),
    )]))
    .unwrap();
    let rule = RegoRule::try_from("data.payments.refund.allow".to_owned()).unwrap();
    let input = regorus::Value::from(
        json!({"calling_agent": caller.as_str(), "mcp": {"method": "tools/call", "tool": "refund", "arguments": {"amount": 1200}},
        "history": [{"seq": 0, "step": "fraud_check_passed", "claims": {}}, {"seq": 1, "step": "human_approval", "claims": {"amount": 5000}}]}),
    );
    c.bench_function(
        "RegoModules::eval, interpreter, unprepared engine (amount <= approved claims)",
        |b| b.iter(|| modules.eval(&rule, black_box(&input))),
    );
    modules.prepare(&rule);
    assert!(modules.compiled(&rule));
    c.bench_function("RegoModules::eval, register VM (the filter's path)", |b| {
        b.iter(|| modules.eval(&rule, black_box(&input)))
    });
}

/// The whole pure part of one request as the filter runs it in case c of
/// `./build.sh bench` (identity rules): peer certificate (cached) → head →
/// body → decision, then its filter-state values and log line. Each stage
/// also on its own, to see where the time goes.
fn bench_request(c: &mut Criterion) {
    use custody_core::decide::{self, Pending};
    use custody_core::log;
    use custody_core::proof::ProofEnv;
    use custody_core::transport::Head;

    let config = Config::from_json(
        json!({"paths": ["/mcp"], "policy": {"rules": [
            {"name": "lifecycle", "callers": ["spiffe://example.org/**"], "methods": ["initialize", "ping", "notifications/*", "tools/list"]},
            {"name": "refund", "callers": [sa("refund-agent")], "methods": ["tools/call"], "tools": ["refund"]}]}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let cert_pem = pem(&cert_der("refund-agent"));
    let facts = PeerFacts {
        mtls: true,
        validated: true,
        certificate_pem: Some(cert_pem.as_bytes()),
        ..Default::default()
    };
    let mut certs = CertCache::new(16);
    let len = BODY.len().to_string();
    let headers: Vec<(String, Vec<u8>)> = [
        (":authority", "localhost:10000"),
        (":path", "/mcp"),
        (":method", "POST"),
        (":scheme", "https"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("content-length", &len),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "6d1f0e2a-6c39-4c1e-9a8e-1c7f8f5a9b21"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
    .collect();
    let head = Head {
        method: "POST",
        path: "/mcp",
        content_type: Some("application/json"),
        content_length: Some(&len),
    };
    let verifier = P256Verifier;
    let on_body = |pending: &Pending| {
        let mut replay = NoReplay;
        let mut env = ProofEnv {
            now: NOW,
            trust: &config.trust,
            ecdsa: &verifier,
            cache: None,
            input: None,
            replay: &mut replay,
        };
        pending.on_body(&config, BODY, &mut env)
    };
    let mut g = c.benchmark_group("one request, identity rules (case c)");
    g.bench_function("identity (CertCache hit)", |b| {
        b.iter(|| from_peer_certificate(black_box(&facts), None, &mut certs).unwrap())
    });
    let caller = from_peer_certificate(&facts, None, &mut certs).unwrap();
    g.bench_function("on_head", |b| {
        b.iter(|| decide::on_head(&config, Ok(caller.clone()), &head, black_box(&headers)).unwrap())
    });
    let pending = decide::on_head(&config, Ok(caller.clone()), &head, &headers).unwrap();
    g.bench_function("on_body", |b| b.iter(|| on_body(black_box(&pending))));
    let decision = on_body(&pending);
    assert!(decision.is_allowed());
    let ctx = log::Context {
        decision_id: "0123456789abcdef0123456789abcdef",
        latency_us: 40,
        http_status: None,
    };
    g.bench_function("filter_state + decision_line", |b| {
        b.iter(|| {
            (
                log::filter_state(black_box(&decision), ctx.decision_id),
                log::decision_line(&decision, config.mode, &ctx),
            )
        })
    });
    g.bench_function("all of it", |b| {
        b.iter(|| {
            let id = from_peer_certificate(black_box(&facts), None, &mut certs).unwrap();
            let pending = decide::on_head(&config, Ok(id), &head, &headers).unwrap();
            let d = on_body(&pending);
            (
                log::filter_state(&d, ctx.decision_id),
                log::decision_line(&d, config.mode, &ctx),
            )
        })
    });
    g.finish();
}

fn bench_lists(c: &mut Criterion) {
    use custody_core::listing::{Format, ListResponse};
    use custody_core::lists::{Expect, ListKind, Listing};
    let (json_body, sse_body) = thousand_tools();
    let policy = list_policy();
    let caller = SpiffeId::parse(&sa("refund-agent")).unwrap();
    let listing = Listing {
        policy: &policy,
        caller: &caller,
        max_depth: 64,
    };
    let expect = Expect::Response {
        id: Some(json!(2)),
        kind: ListKind::Tools,
    };
    let mut g = c.benchmark_group("lists");
    g.bench_function(
        format!(
            "tools/list, 1,000 tools ({} KB JSON), 1 kept",
            json_body.len() / 1000
        ),
        |b| {
            b.iter(|| {
                let mut r = ListResponse::new(expect.clone(), Format::Json, true, "d");
                let out = r.json(&listing, black_box(&json_body), 1 << 20);
                assert_eq!(r.removed, 999);
                out
            })
        },
    );
    g.bench_function(
        "tools/list, 1,000 tools as SSE in 16 KiB chunks, 1 kept",
        |b| {
            b.iter(|| {
                let mut r = ListResponse::new(expect.clone(), Format::Sse, true, "d");
                let chunks: Vec<&[u8]> = sse_body.chunks(16384).collect();
                let mut out = 0;
                for (i, chunk) in chunks.iter().enumerate() {
                    out += r
                        .sse(&listing, black_box(chunk), i + 1 == chunks.len(), 1 << 20)
                        .len();
                }
                assert_eq!(r.removed, 999);
                out
            })
        },
    );
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group!(name = benches; config = config(); targets = bench_parsing, bench_history, bench_policy, bench_request, bench_lists);
criterion_main!(benches);
