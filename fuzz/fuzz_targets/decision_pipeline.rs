//! The whole decision (`decide::on_head` then `Pending::on_body`) over one
//! fixed configuration, for any request head and body: it never panics, an
//! allow is always attributable (caller, method, rule), a body that is not
//! strict JSON is never allowed, and what is allowed is checked against an
//! oracle written independently of the glob code.
//!
//! The configuration verifies no workflow history (no `audience`), so any
//! request carrying history headers must be refused.
//!
//! Input layout (see `Input`): six selector bytes, then the raw body, so a
//! seed is `\x00\x00\x01\x00\x00\x00` followed by a JSON-RPC message.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use custody_core::config::Config;
use custody_core::decide::{on_head, Decision};
use custody_core::identity::IdentityError;
use custody_core::json::{parse_strict, JsonError};
use custody_core::log::{decision_line, Context};
use custody_core::mcp::{self, Target};
use custody_core::proof::{ProofEnv, CERTS_HEADER, HISTORY_HEADER, PROOF_HEADER};
use custody_core::reason::Reason;
use custody_core::reply::error_body;
use custody_core::transport::{Head, HttpKind};
use custody_core::SpiffeId;
use custody_history::{P256Verifier, ReplayCache};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const CONFIG: &str = r#"{
  "mode": "enforce",
  "identity": "peer_certificate",
  "paths": ["/mcp"],
  "limits": {"max_body_bytes": 4096, "max_json_depth": 16},
  "policy": {
    "version": 1,
    "default": "deny",
    "rules": [
      {"name": "lifecycle", "callers": ["spiffe://example.org/**"],
       "methods": ["server/discover", "initialize", "ping", "notifications/*", "tools/list",
                   "jsonrpc:response", "http:GET", "http:DELETE"]},
      {"name": "calculator", "callers": ["spiffe://example.org/ns/demo/sa/agent"],
       "methods": ["tools/call"], "tools": ["add", "refund_*"]},
      {"name": "docs", "callers": ["spiffe://example.org/ns/*/sa/reader"],
       "methods": ["resources/read", "prompts/get", "completion/complete"],
       "resources": ["file:///docs/**"], "prompts": ["summar*"]}
    ]
  }
}"#;

const MAX_BODY: usize = 4096;
const MAX_DEPTH: usize = 16;

const METHODS: &[&str] = &["POST", "GET", "DELETE", "PUT", "post", "", "HEAD"];
const PATHS: &[&str] = &["/mcp", "/mcp?session=1", "/mcp/", "/MCP", "/", "", "/mcp#x"];
const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("application/json"),
    Some("Application/JSON; charset=utf-8"),
    Some("text/plain"),
    Some("application/json-seq"),
    Some(""),
    Some(" application/json ;"),
];
const CALLERS: &[&str] = &[
    "spiffe://example.org/ns/demo/sa/agent",
    "spiffe://example.org/ns/docs/sa/reader",
    "spiffe://example.org/ns/other/sa/intruder",
    "spiffe://evil.org/ns/demo/sa/agent",
    "spiffe://example.org.evil/ns/demo/sa/agent",
    "spiffe://example.org",
];

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    path: u8,
    content_type: u8,
    /// 0: none; 1: the body's length; 2: one more; 3: one less; others fixed.
    content_length: u8,
    /// Index into `CALLERS`; past the end, an identity failure.
    caller: u8,
    /// 0: no history headers; otherwise which header(s) to send, with junk.
    history: u8,
    /// The rest of the input, byte for byte.
    body: Body,
}

/// Raw bytes: all that is left of the input, even none (a derived or
/// `with =` field would claim a minimum input size and skip short inputs).
#[derive(Debug)]
struct Body(Vec<u8>);

impl<'a> Arbitrary<'a> for Body {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Body(u.bytes(u.len())?.to_vec()))
    }
    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (0, None)
    }
}

fn pick<T: Copy>(list: &[T], i: u8) -> T {
    list[usize::from(i) % list.len()]
}

fn config() -> &'static Config {
    static CELL: OnceLock<Config> = OnceLock::new();
    CELL.get_or_init(|| Config::from_json(CONFIG.as_bytes()).expect("fixed config loads"))
}

fn segment_chars(s: &str) -> bool {
    !s.is_empty() && !s.contains('/')
}

/// Independent oracle: would a reader of the policy above allow this?
fn oracle(caller: &str, method: &str, target: Option<&Target>) -> Option<&'static str> {
    let in_td = caller
        .strip_prefix("spiffe://example.org/")
        .is_some_and(|p| !p.is_empty());
    let lifecycle = [
        "server/discover",
        "initialize",
        "ping",
        "tools/list",
        "jsonrpc:response",
    ]
    .contains(&method)
        || ["http:GET", "http:DELETE"].contains(&method)
        || method
            .strip_prefix("notifications/")
            .is_some_and(|rest| !rest.contains('/'));
    if in_td && lifecycle {
        return Some("lifecycle");
    }
    if caller == "spiffe://example.org/ns/demo/sa/agent" && method == "tools/call" {
        if let Some(Target::Tool(t)) = target {
            if t == "add" || t.strip_prefix("refund_").is_some_and(|r| !r.contains('/')) {
                return Some("calculator");
            }
        }
    }
    let reader = caller
        .strip_prefix("spiffe://example.org/ns/")
        .and_then(|r| r.strip_suffix("/sa/reader"))
        .is_some_and(segment_chars);
    if reader && ["resources/read", "prompts/get", "completion/complete"].contains(&method) {
        match target {
            // `**` spans one or more segments, empty ones included.
            Some(Target::Resource(u)) if u.starts_with("file:///docs/") => return Some("docs"),
            Some(Target::Prompt(p))
                if p.strip_prefix("summar").is_some_and(|r| !r.contains('/')) =>
            {
                return Some("docs")
            }
            _ => {}
        }
    }
    None
}

/// What every decision must satisfy, allowed or not.
fn check_outputs(d: &Decision) {
    if let Err(reason) = &d.verdict {
        let body = error_body(*reason, d.id.as_ref(), "0123456789abcdef0123456789abcdef");
        let v = parse_strict(&body, 8).expect("refusal body is strict JSON");
        assert_eq!(v["error"]["data"]["reason"], reason.code());
        assert_eq!(v["id"], d.id.clone().unwrap_or_default());
    }
    let line = decision_line(d, config().mode, &Context::default());
    assert!(!line.contains('\n'), "log line spans lines");
    parse_strict(line.as_bytes(), 8).expect("log line is strict JSON");
}

fuzz_target!(|input: Input| {
    let config = config();
    let len_text;
    let content_length = match input.content_length {
        0 => None,
        1..=3 => {
            let n = input.body.0.len() as i64 + [0, 1, -1][usize::from(input.content_length - 1)];
            len_text = n.to_string();
            Some(len_text.as_str())
        }
        n => Some(pick(
            &[
                "0",
                "4096",
                "4097",
                " 12 ",
                "-1",
                "abc",
                "99999999999999999999999",
                "+5",
                "",
            ],
            n,
        )),
    };
    let head = Head {
        method: pick(METHODS, input.method),
        path: pick(PATHS, input.path),
        content_type: pick(CONTENT_TYPES, input.content_type),
        content_length,
    };
    let identity = match CALLERS.get(usize::from(input.caller)) {
        Some(id) => Ok(SpiffeId::parse(id).expect("fixed caller parses")),
        None => Err(match input.caller % 3 {
            0 => IdentityError::NotMtls,
            1 => IdentityError::NotSvid(custody_history::svid::LeafRule::UriSanCount(2)),
            _ => IdentityError::NoCertificate,
        }),
    };
    let had_identity = identity.is_ok();
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for (bit, name) in [HISTORY_HEADER, PROOF_HEADER, CERTS_HEADER].into_iter().enumerate() {
        if input.history & (1 << bit) != 0 {
            headers.push((name.to_owned(), b"e30.e30.AAAA".to_vec()));
        }
    }
    let sends_history = !headers.is_empty();

    let pending = match on_head(config, identity, &head, &headers) {
        Ok(p) => p,
        Err(d) => {
            assert!(!d.is_allowed(), "on_head returned an allow");
            if !had_identity {
                assert_eq!(d.reason(), Some(Reason::NoIdentity));
            }
            check_outputs(&d);
            return;
        }
    };
    assert!(had_identity, "a request without identity passed the head");
    assert!(["POST", "GET", "DELETE"].contains(&head.method));
    assert!(head.path.split('?').next() == Some("/mcp"));

    let body = &input.body.0[..];
    let decide = || {
        let mut replay = ReplayCache::new(16, 30);
        let mut env = ProofEnv {
            now: 1_776_522_000,
            trust: &config.trust,
            ecdsa: &P256Verifier,
            cache: None,
            input: None,
            replay: &mut replay,
        };
        pending.on_body(config, body, &mut env)
    };
    let d = decide();
    assert_eq!(d, decide(), "decision not deterministic");
    check_outputs(&d);
    assert_eq!(d.caller.as_deref(), Some(pending.caller.as_str()));

    let strict = parse_strict(body, MAX_DEPTH);
    if body.len() > MAX_BODY {
        assert_eq!(d.reason(), Some(Reason::BodyTooLarge));
    } else if pending.kind == HttpKind::Post || !body.is_empty() {
        // Whenever the body is not strict JSON, the decision is a denial with
        // the parse fault as its reason (POST) or invalid_request (GET/DELETE).
        if let Err(e) = strict {
            assert!(
                !d.is_allowed(),
                "allowed a body that is not strict JSON: {body:?}"
            );
            if pending.kind == HttpKind::Post {
                let want = match e {
                    JsonError::Malformed => Reason::MalformedJson,
                    JsonError::DuplicateKey(_) => Reason::DuplicateKey,
                    JsonError::TooDeep => Reason::JsonTooDeep,
                };
                assert_eq!(d.reason(), Some(want));
            }
        }
    }

    if sends_history {
        assert!(
            !d.is_allowed(),
            "allowed with history headers no verifier is configured for"
        );
        if d.method.is_some() && d.reason() != Some(Reason::BodyTooLarge) {
            assert_eq!(d.reason(), Some(Reason::HistoryUnconfigured));
        }
    }

    if let Ok(rule) = &d.verdict {
        let caller = d.caller.as_deref().expect("allowed without caller");
        let method = d.method.as_deref().expect("allowed without method");
        assert!(!rule.is_empty(), "allowed without rule name");
        assert!(
            config.policy.rules.iter().any(|r| &r.name == rule),
            "allowed by unknown rule {rule}"
        );
        match pending.kind {
            HttpKind::Get => assert_eq!(method, "http:GET"),
            HttpKind::Delete => assert_eq!(method, "http:DELETE"),
            HttpKind::Post => {
                let msg = mcp::parse(body, MAX_DEPTH).expect("allowed a body mcp::parse refuses");
                assert_eq!(msg.method, method);
                assert_eq!(msg.target, d.target);
                assert_eq!(msg.id, d.id);
            }
        }
        assert_eq!(
            oracle(caller, method, d.target.as_ref()),
            Some(rule.as_str()),
            "allowed {caller} {method} {:?} by {rule}, the oracle disagrees",
            d.target
        );
    } else if d.reason() == Some(Reason::NoRule) {
        let method = d.method.as_deref().unwrap_or_default();
        let caller = d.caller.as_deref().unwrap_or_default();
        assert_eq!(
            oracle(caller, method, d.target.as_ref()),
            None,
            "denied {caller} {method} {:?}, the oracle allows it",
            d.target
        );
    }
});
