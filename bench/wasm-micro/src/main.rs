//! Custody's pure stages timed where they really run: compiled to
//! wasm32-wasip1 and run under Node's V8, the engine Envoy embeds
//! (`./build.sh bench wasm`), and natively for comparison. Envoy's host calls
//! (headers, properties, its BoringSSL ECDSA) are not part of these figures;
//! docs/performance.md puts them together.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use custody_core::config::Config;
use custody_core::decide;
use custody_core::log;
use custody_core::proof::ProofEnv;
use custody_core::rego::{RegoModules, RegoRule};
use custody_core::transport::Head;
use custody_history::{sha256, Limits, P256Verifier, Verifier, VerifyCache};
use custody_spiffe::SpiffeId;
use serde_json::json;

use custody_testkit::bench::*;
use custody_testkit::{fixtures, sa, AUD, NOW};

/// Median over 7 rounds of the time per call, in µs. With
/// `CUSTODY_MICRO_ONLY=<text>` only the stages whose name contains it run,
/// `CUSTODY_MICRO_REPEAT` times as many calls (for `perf record`).
fn time(name: &str, per_round: u32, mut f: impl FnMut()) {
    if std::env::var("CUSTODY_MICRO_ONLY").is_ok_and(|only| !name.contains(&only)) {
        return;
    }
    let repeat = std::env::var("CUSTODY_MICRO_REPEAT")
        .ok()
        .and_then(|r| r.parse::<u32>().ok())
        .unwrap_or(1);
    let per_round = per_round.saturating_mul(repeat.max(1));
    for _ in 0..per_round.div_ceil(4) {
        f(); // warm-up (and, in V8, time to tier up)
    }
    let mut rounds: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_round {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(per_round)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    println!("{name:<86} {:>9.2} us", rounds[3]);
}

fn main() {
    let engine = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "native".to_owned());
    println!("Custody's pure stages, {engine}; median of 7 rounds per stage");

    let kib = vec![7u8; 1024];
    time("SHA-256 of 1 KiB", 2000, || {
        black_box(sha256(black_box(&kib)));
    });
    time("mcp::parse, a tools/call body", 2000, || {
        black_box(custody_core::mcp::parse(black_box(BODY), 64).unwrap());
    });

    let bundle = bundle();
    let limits = Limits::default();
    let peer = SpiffeId::parse(&sa("refund-agent")).unwrap();
    let warm4 = signed(4, "wf-warm");
    let rest = Verifier::new(&bundle, &limits).with_ecdsa(&NoEcdsa);
    let p256 = Verifier::new(&bundle, &limits).with_ecdsa(&P256Verifier);
    let mut cache = VerifyCache::new(4096, 1024);
    p256.verify(&request(&warm4, &peer), Some(&mut cache))
        .unwrap();
    time(
        "history verify, 4 entries + proof, cache warm, pure-Rust p256 (one ECDSA check)",
        20,
        || {
            black_box(
                p256.verify(&request(&warm4, &peer), Some(&mut cache))
                    .unwrap(),
            );
        },
    );
    time(
        "history verify, 4 entries + proof, cache warm, without ECDSA",
        500,
        || {
            black_box(
                rest.verify(&request(&warm4, &peer), Some(&mut cache))
                    .unwrap(),
            );
        },
    );
    let cold: Vec<Signed> = (0..24)
        .map(|i| signed(16, &format!("wf-cold-{i}")))
        .collect();
    let mut next = cold.iter().cycle();
    time(
        "history verify, 16 new entries + proof, signer certificates warm, without ECDSA",
        24,
        || {
            // A fresh cache each time, its certificates warmed by another workflow.
            let mut c = VerifyCache::new(4096, 1024);
            c.clone_from(&cache);
            black_box(
                rest.verify(&request(next.next().unwrap(), &peer), Some(&mut c))
                    .unwrap(),
            );
        },
    );

    let sources = BTreeMap::from([("refund.rego".to_owned(), REGO.to_owned())]);
    let rule = RegoRule::try_from(RULE.to_owned()).unwrap();
    let input = regorus::Value::from(json!({"calling_agent": peer.as_str(),
        "mcp": {"method": "tools/call", "tool": "refund", "arguments": {"amount": 1200}},
        "history": [{"seq": 0, "step": "fraud_check_passed", "claims": {}},
                    {"seq": 1, "step": "human_approval", "claims": {"amount": 5000}}]}));
    let interpreter = RegoModules::try_from(sources.clone()).unwrap();
    time(
        "Rego rule, regorus interpreter (engine not prepared)",
        200,
        || {
            black_box(interpreter.eval(&rule, &input));
        },
    );
    let mut rvm = RegoModules::try_from(sources).unwrap();
    rvm.prepare(&rule);
    assert!(rvm.compiled(&rule));
    time("Rego rule, register VM (the filter's path)", 1000, || {
        black_box(rvm.eval(&rule, &input));
    });

    let config = Config::from_json(
        json!({"paths": ["/mcp"], "audience": AUD,
               "trust_domains": {"example.org": {"spiffe_bundle": fixtures()["cas"]["example"]["spiffe_bundle"]}},
               "policy": {"rules": [
                   {"name": "lifecycle", "callers": ["spiffe://example.org/**"], "methods": ["initialize", "ping", "tools/list"]},
                   {"name": "refund", "callers": [sa("refund-agent")], "methods": ["tools/call"], "tools": ["refund"],
                    "require": [{"step": "human_approval", "by": [sa("approvals")], "within": "30m"}], "rego": RULE}],
                          "modules": {"refund.rego": REGO}}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let len = BODY.len().to_string();
    let head = Head {
        method: "POST",
        path: "/mcp",
        content_type: Some("application/json"),
        content_length: Some(&len),
    };
    let headers: Vec<(String, Vec<u8>)> = [
        (":authority", "localhost:10000"),
        (":path", "/mcp"),
        (":method", "POST"),
        ("content-type", "application/json"),
        ("content-length", len.as_str()),
        ("workflow-history", warm4.history.as_str()),
        ("workflow-history-proof", warm4.proof.as_str()),
        ("workflow-history-certs", warm4.certs.as_str()),
        ("x-request-id", "6d1f0e2a-6c39-4c1e-9a8e-1c7f8f5a9b21"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
    .collect();
    let ctx = log::Context {
        decision_id: "0123456789abcdef0123456789abcdef",
        latency_us: 40,
        http_status: None,
    };
    let mut verified = VerifyCache::new(4096, 1024);
    let mut input_cache = custody_core::input::InputCache::new(1024, 1 << 20);
    time(
        "one warm 4-entry request with require + Rego, stages 1-5 + decision line, without ECDSA",
        300,
        || {
            let pending = decide::on_head(&config, Ok(peer.clone()), &head, &headers).unwrap();
            let mut replay = NoReplay;
            let mut env = ProofEnv {
                now: NOW,
                trust: &config.trust,
                ecdsa: &NoEcdsa,
                cache: Some(&mut verified),
                input: Some(&mut input_cache),
                replay: &mut replay,
            };
            let d = pending.on_body(&config, BODY, &mut env);
            assert!(d.is_allowed(), "{d:?}");
            black_box((
                log::filter_state(&d, ctx.decision_id),
                log::decision_line(&d, config.mode, &ctx),
            ));
        },
    );
    let plain: Vec<(String, Vec<u8>)> = headers
        .iter()
        .filter(|(n, _)| !n.starts_with("workflow-"))
        .cloned()
        .collect();
    let lifecycle = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    time(
        "one identity-rules request (tools/list), stages 1-5 + decision line",
        2000,
        || {
            let pending = decide::on_head(&config, Ok(peer.clone()), &head, &plain).unwrap();
            let mut replay = NoReplay;
            let mut env = ProofEnv {
                now: NOW,
                trust: &config.trust,
                ecdsa: &NoEcdsa,
                cache: None,
                input: None,
                replay: &mut replay,
            };
            let d = pending.on_body(&config, lifecycle, &mut env);
            assert!(d.is_allowed(), "{d:?}");
            black_box((
                log::filter_state(&d, ctx.decision_id),
                log::decision_line(&d, config.mode, &ctx),
            ));
        },
    );

    let (json_body, sse_body) = thousand_tools();
    let policy = list_policy();
    let listing = custody_core::lists::Listing {
        policy: &policy,
        caller: &peer,
        max_depth: 64,
    };
    let expect = custody_core::lists::Expect::Response {
        id: Some(json!(2)),
        kind: custody_core::lists::ListKind::Tools,
    };
    use custody_core::listing::{Format, ListResponse};
    time(
        &format!(
            "lists: tools/list, 1,000 tools ({} KB JSON), 1 kept",
            json_body.len() / 1000
        ),
        20,
        || {
            let mut r = ListResponse::new(expect.clone(), Format::Json, true, "d");
            black_box(r.json(&listing, black_box(&json_body), 1 << 20));
            assert_eq!(r.removed, 999);
        },
    );
    time("lists: the same as SSE in 16 KiB chunks", 20, || {
        let mut r = ListResponse::new(expect.clone(), Format::Sse, true, "d");
        let chunks: Vec<&[u8]> = sse_body.chunks(16384).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            black_box(r.sse(&listing, black_box(chunk), i + 1 == chunks.len(), 1 << 20));
        }
        assert_eq!(r.removed, 999);
    });
}
