//! List filtering (`core::listing`) over any response body: it never
//! panics; whatever it lets through as a JSON-RPC result lists only items
//! the caller may use (`add`, `tool_ok`); the output of an event stream does
//! not depend on how the stream was cut into chunks.
//!
//! Input layout: one selector byte (bit 0: SSE, bits 1-7: chunk size), then
//! the body. A seed: `\x00{"jsonrpc":"2.0","id":1,"result":{"tools":[…]}}`.
#![no_main]

use custody_core::listing::{Format, ListResponse};
use custody_core::lists::{Expect, ListKind, Listing};
use custody_core::policy::Policy;
use custody_core::sse::Splitter;
use custody_core::SpiffeId;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::sync::OnceLock;

const AGENT: &str = "spiffe://example.org/ns/demo/sa/agent";
const ALLOWED: [&str; 2] = ["add", "tool_ok"];

fn policy() -> &'static Policy {
    static CELL: OnceLock<Policy> = OnceLock::new();
    CELL.get_or_init(|| {
        serde_json::from_value(json!({"rules": [
            {"name": "calc", "callers": [AGENT], "methods": ["tools/call"], "tools": ["add", "tool_ok"]}
        ]}))
        .expect("fixed policy loads")
    })
}

/// Every `tools` list in a result message names only allowed tools.
fn check_message(text: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(text) else {
        return;
    };
    if let Some(tools) = v.get("result").and_then(|r| r.get("tools")).and_then(Value::as_array) {
        for t in tools {
            let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
            assert!(ALLOWED.contains(&name), "{name:?} passed the filter");
        }
    }
}

fn run_sse(listing: &Listing, body: &[u8], chunk: usize) -> Vec<u8> {
    let expect = Expect::Response { id: Some(json!(1)), kind: ListKind::Tools };
    let mut r = ListResponse::new(expect, Format::Sse, true, "d");
    let chunks: Vec<&[u8]> = body.chunks(chunk.max(1)).collect();
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        out.extend(r.sse(listing, c, i + 1 == chunks.len(), 4096));
    }
    if chunks.is_empty() {
        out.extend(r.sse(listing, b"", true, 4096));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let caller = SpiffeId::parse(AGENT).expect("fixed caller parses");
    let listing = Listing { policy: policy(), caller: &caller, max_depth: 16 };
    if selector & 1 == 0 {
        let expect = Expect::Response { id: Some(json!(1)), kind: ListKind::Tools };
        let mut r = ListResponse::new(expect, Format::Json, true, "d");
        let out = r.json(&listing, body, 4096);
        check_message(&out);
    } else {
        let chunk = usize::from(selector >> 1);
        let out = run_sse(&listing, body, chunk);
        assert_eq!(out, run_sse(&listing, body, body.len()), "chunking changed the output");
        let events = Splitter::default().push(&out, true, usize::MAX).expect("no cap");
        for e in events {
            if let Some(d) = e.data() {
                check_message(&d);
            }
        }
    }
});
