//! List filtering (core::lists, core::listing, core::sse): what a caller
//! sees of a list response, in JSON and SSE, and every way it is refused.
//! Runs natively and on wasm32.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use custody_core::listing::{plan, Format, ListResponse, Outcome, Plan};
use custody_core::lists::{Expect, ListError, ListKind, Listing};
use custody_core::policy::Policy;
use custody_core::reason::Reason;
use custody_core::sse::Splitter;
use custody_core::SpiffeId;
use serde_json::{json, Value};

const AGENT: &str = "spiffe://example.org/ns/demo/sa/agent";

fn policy() -> Policy {
    serde_json::from_value(json!({"rules": [
        {"name": "lifecycle", "callers": ["spiffe://example.org/**"],
         "methods": ["initialize", "tools/list", "prompts/list", "resources/list", "resources/templates/list"]},
        {"name": "calc", "callers": [AGENT], "methods": ["tools/call"], "tools": ["add"]},
        // Conditions on a future call's history do not hide the tool.
        {"name": "refunds", "callers": [AGENT], "methods": ["tools/call"], "tools": ["refund"],
         "require": [{"step": "human_approval", "by": ["spiffe://example.org/ns/a/sa/approvals"]}],
         "rego": "data.x.allow"},
        {"name": "docs", "callers": [AGENT], "methods": ["resources/read", "prompts/get"],
         "resources": ["file:///docs/**", "file:///one.txt"], "prompts": ["summarise"]},
        // Another caller's tool.
        {"name": "admin", "callers": ["spiffe://example.org/ns/ops/sa/admin"], "methods": ["tools/call"]}
    ], "modules": {"x.rego": "package x\nimport rego.v1\ndefault allow := false\n"}}))
    .unwrap()
}

fn listing<'a>(p: &'a Policy, caller: &'a SpiffeId) -> Listing<'a> {
    Listing {
        policy: p,
        caller,
        max_depth: 64,
    }
}

fn agent() -> SpiffeId {
    SpiffeId::parse(AGENT).unwrap()
}

fn tools_expect(id: Value) -> Expect {
    Expect::Response {
        id: Some(id),
        kind: ListKind::Tools,
    }
}

fn names(body: &[u8], member: &str, key: &str) -> Vec<String> {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["result"][member]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[key].as_str().unwrap().to_owned())
        .collect()
}

const TOOLS: &str = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[
  {"name":"delete_records","inputSchema":{"type":"object"}},
  {"name":"add","inputSchema":{"type":"object","properties":{"a":{"type":"integer","maximum":1e3}}}},
  {"name":"refund","inputSchema":{"type":"object"}} ,
  {"name":"secret","description":"add"}
 ],"nextCursor":"page-2","_meta":{"big":18446744073709551616}}}"#;

#[test]
fn a_json_list_keeps_exactly_the_callable_items_and_every_other_byte() {
    let (p, me) = (policy(), agent());
    let out = listing(&p, &me)
        .message(TOOLS.as_bytes(), &tools_expect(json!(3)), true)
        .unwrap()
        .unwrap();
    assert_eq!((out.kept, out.removed), (2, 2));
    let want = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"add","inputSchema":{"type":"object","properties":{"a":{"type":"integer","maximum":1e3}}}},{"name":"refund","inputSchema":{"type":"object"}}],"nextCursor":"page-2","_meta":{"big":18446744073709551616}}}"#;
    assert_eq!(String::from_utf8(out.text).unwrap(), want);
    // Another caller sees none of them; the admin sees all.
    let intruder = SpiffeId::parse("spiffe://example.org/ns/other/sa/x").unwrap();
    let out = listing(&p, &intruder)
        .message(TOOLS.as_bytes(), &tools_expect(json!(3)), true)
        .unwrap()
        .unwrap();
    assert_eq!(names(&out.text, "tools", "name"), Vec::<String>::new());
    let admin = SpiffeId::parse("spiffe://example.org/ns/ops/sa/admin").unwrap();
    let out = listing(&p, &admin)
        .message(TOOLS.as_bytes(), &tools_expect(json!(3)), true)
        .unwrap()
        .unwrap();
    assert_eq!(out.removed, 0);
    assert_eq!(out.text, TOOLS.as_bytes());
}

#[test]
fn prompts_resources_and_templates() {
    let (p, me) = (policy(), agent());
    let l = listing(&p, &me);
    // What is kept of the `member` list (by `key`) of a `kind` result to request "q".
    let kept = |kind, body: &[u8], member, key| {
        let expect = Expect::Response {
            id: Some(json!("q")),
            kind,
        };
        let out = l.message(body, &expect, true).unwrap().unwrap();
        names(&out.text, member, key)
    };
    let body = br#"{"jsonrpc":"2.0","id":"q","result":{"prompts":[{"name":"summarise"},{"name":"leak"}]}}"#;
    assert_eq!(
        kept(ListKind::Prompts, body, "prompts", "name"),
        ["summarise"]
    );

    let body = br#"{"jsonrpc":"2.0","id":"q","result":{"resources":[
        {"uri":"file:///docs/a.md","name":"a"},{"uri":"file:///etc/passwd","name":"p"},
        {"uri":"file:///docs/../etc/passwd","name":"climb"},{"uri":"file:///one.txt","name":"one"}]}}"#;
    assert_eq!(
        kept(ListKind::Resources, body, "resources", "uri"),
        ["file:///docs/a.md", "file:///one.txt"]
    );

    let body = br#"{"jsonrpc":"2.0","id":"q","result":{"resourceTemplates":[
        {"uriTemplate":"file:///docs/{path}","name":"docs"},
        {"uriTemplate":"file:///docs/{+path}/x","name":"deep"},
        {"uriTemplate":"file:///{dir}/docs","name":"prefix-not-literal"},
        {"uriTemplate":"file:///docs{/path}","name":"no-slash"},
        {"uriTemplate":"file:///one.txt","name":"literal"},
        {"uriTemplate":"file:///one.{ext}","name":"one-of-a-pattern-without-**"},
        {"uriTemplate":"file:///docs/../{x}","name":"climbs"},
        {"uriTemplate":"users://{id}","name":"other"}]}}"#;
    assert_eq!(
        kept(
            ListKind::ResourceTemplates,
            body,
            "resourceTemplates",
            "uriTemplate"
        ),
        [
            "file:///docs/{path}",
            "file:///docs/{+path}/x",
            "file:///one.txt"
        ]
    );
}

#[test]
fn every_list_member_of_a_result_is_filtered() {
    let (p, me) = (policy(), agent());
    let body = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"add"},{"name":"x"}],"prompts":[{"name":"leak"}]}}"#;
    let out = listing(&p, &me)
        .message(body, &tools_expect(json!(1)), true)
        .unwrap()
        .unwrap();
    assert_eq!((out.kept, out.removed), (1, 2));
    assert_eq!(
        out.text,
        br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"add"}],"prompts":[]}}"#
    );
}

#[test]
fn what_cannot_be_read_with_certainty_is_refused() {
    let (p, me) = (policy(), agent());
    let l = listing(&p, &me);
    for (body, why) in [
        (&br#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"add"}]}"#[..], "truncated"),
        (br#"{"jsonrpc":"2.0","id":4,"result":{"tools":[]}}"#, "another id"),
        (br#"{"jsonrpc":"2.0","id":"3","result":{"tools":[]}}"#, "string id"),
        (br#"{"jsonrpc":"2.0","id":3.0,"result":{"tools":[]}}"#, "fractional id"),
        (br#"{"jsonrpc":"2.0","result":{"tools":[]}}"#, "no id"),
        (br#"{"jsonrpc":"2.0","id":3,"result":{"prompts":[]}}"#, "no tools member"),
        (br#"{"jsonrpc":"2.0","id":3,"result":{"tools":{}}}"#, "tools not an array"),
        (br#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"title":"x"}]}}"#, "item without name"),
        (br#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":7}]}}"#, "name not a string"),
        (br#"{"jsonrpc":"2.0","id":3,"result":{"tools":["add"]}}"#, "item not an object"),
        (br#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"add","name":"secret"}]}}"#, "duplicate name"),
        (br#"{"jsonrpc":"2.0","id":3,"result":{"tools":[]},"result":{"tools":[{"name":"secret"}]}}"#, "duplicate result"),
        (br#"{"jsonrpc":"2.0","id":3,"result":[]}"#, "result not an object"),
        (br#"{"jsonrpc":"2.0","id":3,"result":{"tools":[]},"error":{}}"#, "result and error"),
        (br#"{"jsonrpc":"2.0","id":3,"result":{"tools":[]},"extra":1}"#, "unknown member"),
        (br#"{"jsonrpc":"1.0","id":3,"result":{"tools":[]}}"#, "jsonrpc 1.0"),
        (br#"[{"jsonrpc":"2.0","id":3,"result":{"tools":[]}}]"#, "batch"),
        (br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#, "not a response"),
        (b"", "empty"),
        (b"\xef\xbb\xbf{}", "bom"),
    ] {
        assert!(
            matches!(l.message(body, &tools_expect(json!(3)), true), Err(ListError::Malformed(_))),
            "{why}"
        );
    }
    // An error response carries no list: it passes.
    let err = br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"nope"}}"#;
    assert_eq!(l.message(err, &tools_expect(json!(3)), true), Ok(None));
}

#[test]
fn plans_from_the_response_headers() {
    assert_eq!(
        plan(200, Some("application/json"), None),
        Plan::Filter(Format::Json)
    );
    assert_eq!(
        plan(
            200,
            Some("Application/JSON; charset=utf-8"),
            Some("identity")
        ),
        Plan::Filter(Format::Json)
    );
    assert_eq!(
        plan(206, Some("text/event-stream"), None),
        Plan::Filter(Format::Sse)
    );
    for status in [101, 301, 400, 404, 500] {
        assert_eq!(
            plan(status, Some("application/json"), Some("gzip")),
            Plan::Pass
        );
    }
    assert_eq!(
        plan(200, Some("application/json"), Some("gzip")),
        Plan::Refuse(ListError::Encoded)
    );
    assert_eq!(
        plan(200, Some("text/event-stream"), Some(" BR ")),
        Plan::Refuse(ListError::Encoded)
    );
    for ct in [
        None,
        Some("text/plain"),
        Some("application/json-seq"),
        Some(""),
    ] {
        assert!(
            matches!(plan(200, ct, None), Plan::Refuse(ListError::Malformed(_))),
            "{ct:?}"
        );
    }
}

const STREAM: &str = ": keep-alive\r\n\r\nid: 0\r\ndata:\r\n\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\r\n\r\nid: 1\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\r\ndata: \"result\":{\"tools\":[{\"name\":\"secret\"},{\"name\":\"add\"}],\"nextCursor\":\"c\"}}\r\n\r\n";

fn run_sse(
    p: &Policy,
    me: &SpiffeId,
    stream: &[u8],
    chunk: usize,
    enforce: bool,
) -> (Vec<u8>, ListResponse) {
    let mut r = ListResponse::new(tools_expect(json!(3)), Format::Sse, enforce, "d-1");
    let l = listing(p, me);
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = stream.chunks(chunk).collect();
    for (i, c) in chunks.iter().enumerate() {
        out.extend(r.sse(&l, c, i + 1 == chunks.len(), 4096));
    }
    (out, r)
}

fn events(stream: &[u8]) -> Vec<Option<Vec<u8>>> {
    Splitter::default()
        .push(stream, true, 1 << 20)
        .unwrap()
        .into_iter()
        .map(|e| e.data())
        .collect()
}

#[test]
fn an_event_stream_has_only_its_response_rewritten() {
    let (p, me) = (policy(), agent());
    for chunk in [1, 2, 5, 64, 10_000] {
        let (out, r) = run_sse(&p, &me, STREAM.as_bytes(), chunk, true);
        assert_eq!((r.kept, r.removed, r.responses), (1, 1, 1), "{chunk}");
        assert_eq!(r.outcome(), Outcome::Filtered);
        let prefix_len = STREAM.find("id: 1").unwrap();
        assert_eq!(
            &out[..prefix_len],
            &STREAM.as_bytes()[..prefix_len],
            "other events byte for byte"
        );
        assert_eq!(
            String::from_utf8_lossy(&out[prefix_len..]),
            "id: 1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\ndata: \"result\":{\"tools\":[{\"name\":\"add\"}],\"nextCursor\":\"c\"}}\n\n"
        );
        assert!(!String::from_utf8_lossy(&out).contains("secret"));
    }
    // Audit: everything counted, nothing changed.
    let (out, r) = run_sse(&p, &me, STREAM.as_bytes(), 7, false);
    assert_eq!(out, STREAM.as_bytes());
    assert_eq!(r.removed, 1);
}

#[test]
fn a_bad_event_stream_gets_an_error_event_and_nothing_after_it() {
    let (p, me) = (policy(), agent());
    let bad_events = [
        "data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"secret\"}]},\"id\":3}\n\n",
        "data: not json\n\n",
        "data: [{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"secret\"}]}}]\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":\"3\",\"result\":{\"tools\":[{\"name\":\"secret\"}]}}\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"tools\":[{\"name\":\"secret\"}]}}\n\n",
    ];
    for bad in bad_events {
        let stream = format!(": hi\n\n{bad}data: {{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{{\"tools\":[{{\"name\":\"secret\"}}]}}}}\n\n");
        for chunk in [3, 1000] {
            let (out, r) = run_sse(&p, &me, stream.as_bytes(), chunk, true);
            assert_eq!(r.reason(), Some(Reason::ListMalformed), "{bad}");
            let text = String::from_utf8_lossy(&out);
            assert!(!text.contains("secret"), "{bad}: {text}");
            let evs = events(&out);
            assert_eq!(evs.len(), 2, "{text}");
            let error: Value = serde_json::from_slice(evs[1].as_ref().unwrap()).unwrap();
            assert_eq!(error["id"], 3);
            assert_eq!(error["error"]["data"]["reason"], "list_malformed");
            assert_eq!(error["error"]["data"]["decision_id"], "d-1");
        }
    }
    // After the filtered response, a bad event ends the stream without an error.
    let stream = format!("{STREAM}data: {{bad\n\ndata: {{}}\n\n");
    let (out, r) = run_sse(&p, &me, stream.as_bytes(), 9, true);
    assert_eq!(r.reason(), Some(Reason::ListMalformed));
    assert_eq!(events(&out).len(), 4);
    // An event that never ends is never passed.
    let unended = format!("{STREAM}data: {{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{{\"tools\":[{{\"name\":\"secret\"}}]}}}}\n");
    let (out, _) = run_sse(&p, &me, unended.as_bytes(), 11, true);
    assert!(!String::from_utf8_lossy(&out).contains("secret"));
}

#[test]
fn an_event_over_the_cap_is_refused() {
    let (p, me) = (policy(), agent());
    let big = format!(
        "data: {{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{{\"tools\":[{{\"name\":\"add\",\"description\":\"{}\"}}]}}}}\n\n",
        "x".repeat(5000)
    );
    let (out, r) = run_sse(&p, &me, big.as_bytes(), 512, true);
    assert_eq!(r.reason(), Some(Reason::ListTooLarge));
    let evs = events(&out);
    assert_eq!(evs.len(), 1);
    assert!(String::from_utf8_lossy(evs[0].as_ref().unwrap()).contains("list_too_large"));
    // JSON: over the cap is refused whole.
    let mut r = ListResponse::new(tools_expect(json!(3)), Format::Json, true, "d-2");
    let out = r.json(&listing(&p, &me), big.as_bytes(), 4096);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["error"]["code"], -32007);
    assert_eq!(v["error"]["data"]["reason"], "list_too_large");
}

#[test]
fn a_resumed_stream_filters_every_replayed_list_and_passes_the_rest() {
    let (p, me) = (policy(), agent());
    let stream = "id: 5\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"tools\"}]}}\n\nid: 6\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"x\",\"result\":{\"tools\":[{\"name\":\"secret\"},{\"name\":\"add\"}]}}\n\n";
    let mut r = ListResponse::new(Expect::Replay, Format::Sse, true, "d-3");
    let out = r.sse(&listing(&p, &me), stream.as_bytes(), true, 4096);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with(&stream[..stream.find("id: 6").unwrap()]));
    assert!(
        !text.contains("secret") && text.contains("\"add\""),
        "{text}"
    );
    assert_eq!((r.kept, r.removed), (1, 1));
}

#[test]
fn a_thousand_tools_keep_one() {
    let (p, me) = (policy(), agent());
    let mut tools: Vec<Value> = (0..999)
        .map(|i| json!({"name": format!("tool_{i:04}"), "inputSchema": {"type": "object"}}))
        .collect();
    tools.insert(
        500,
        json!({"name": "add", "inputSchema": {"type": "object"}}),
    );
    let body = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools, "nextCursor": "n"}})
        .to_string();
    let mut r = ListResponse::new(tools_expect(json!(1)), Format::Json, true, "d");
    let out = r.json(&listing(&p, &me), body.as_bytes(), 1 << 20);
    assert_eq!((r.kept, r.removed), (1, 999));
    assert_eq!(names(&out, "tools", "name"), ["add"]);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["result"]["nextCursor"], "n");
}
