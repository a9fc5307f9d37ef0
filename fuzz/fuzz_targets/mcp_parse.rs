//! `mcp::parse` never panics, and what it accepts is exactly what it claims:
//! strict JSON that serde_json reads the same way, a non-empty method, and the
//! target member that the method calls for.
#![no_main]

use custody_core::json::parse_strict;
use custody_core::mcp::{parse, Target, RESPONSE_METHOD};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = parse(data, 64) else {
        return;
    };
    assert!(!msg.method.is_empty(), "empty method accepted");

    // What the filter accepted, serde_json (as the server would) reads too,
    // and the method it authorised is the one in the body.
    let value: Value = serde_json::from_slice(data).expect("accepted body serde_json refuses");
    assert_eq!(parse_strict(data, 64).ok().as_ref(), Some(&value));
    let obj = value
        .as_object()
        .expect("accepted message is not an object");
    assert_eq!(obj.get("jsonrpc"), Some(&Value::String("2.0".into())));
    match obj.get("method") {
        Some(Value::String(m)) => assert_eq!(m, &msg.method),
        None => assert_eq!(msg.method, RESPONSE_METHOD),
        Some(other) => panic!("non-string method accepted: {other}"),
    }
    if let Some(id) = &msg.id {
        assert!(id.is_string() || id.is_i64() || id.is_u64(), "bad id {id}");
        assert_eq!(obj.get("id"), Some(id));
    }
    if let Some(args) = &msg.arguments {
        assert!(args.is_object(), "arguments not an object");
    }
    let params = obj.get("params");
    let param = |name: &str| params.and_then(|p| p.get(name)).and_then(Value::as_str);

    let is_request = obj.contains_key("method");
    match (is_request, msg.method.as_str(), &msg.target) {
        (false, _, target) => {
            assert!(target.is_none());
            assert!(msg.id.is_some(), "response without id");
            assert!(obj.contains_key("result") != obj.contains_key("error"));
        }
        (true, "tools/call", Some(Target::Tool(n))) => assert_eq!(Some(n.as_str()), param("name")),
        (true, "prompts/get", Some(Target::Prompt(n))) => {
            assert_eq!(Some(n.as_str()), param("name"))
        }
        (
            true,
            "resources/read" | "resources/subscribe" | "resources/unsubscribe",
            Some(Target::Resource(u)),
        ) => assert_eq!(Some(u.as_str()), param("uri")),
        (true, "completion/complete", Some(Target::Prompt(_) | Target::Resource(_))) => {}
        (
            true,
            "tools/call"
            | "prompts/get"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "completion/complete",
            target,
        ) => panic!("{} accepted with target {target:?}", msg.method),
        (true, _, target) => assert!(target.is_none(), "unexpected target {target:?}"),
    }
    if let Some(t) = &msg.target {
        assert!(!t.name().is_empty(), "empty target name");
    }
});
