//! `history append --bind-call FILE`: the call claim (`claims.call`) of the
//! call a human approves, computed exactly as the filter computes it for the
//! request it decides (`custody_core::call`, docs/history-format.md).

use crate::fail::{error, Failure};
use custody_core::call::{self, CallError};
use custody_core::mcp::{self, Target};
use serde_json::Value;

/// Deepest JSON accepted in a call file (the filter's default for bodies).
const MAX_DEPTH: usize = 64;

/// The call claim of a JSON-RPC request (`tools/call`, `prompts/get`,
/// `resources/read`, read by the filter's own parser), or of
/// `{"name": …, "arguments": {…}}` (a tool call; `arguments` optional).
pub fn call_claim(text: &[u8]) -> Result<Value, Failure> {
    let value = custody_json::parse_strict(text, MAX_DEPTH).map_err(|e| {
        error(match e {
            custody_json::JsonError::DuplicateKey(k) => {
                format!("--bind-call: the member {k:?} appears twice")
            }
            _ => "--bind-call: not valid JSON".to_owned(),
        })
    })?;
    let Some(obj) = value.as_object() else {
        return Err(error("--bind-call: the call must be a JSON object"));
    };
    let claim = if obj.contains_key("method") {
        let msg = mcp::parse(text, MAX_DEPTH).map_err(|e| {
            error(format!(
                "--bind-call: not a request the filter accepts ({}: {})",
                e.reason.code(),
                e.detail
            ))
        })?;
        call::of_message(&msg)
    } else {
        if let Some(k) = obj.keys().find(|k| *k != "name" && *k != "arguments") {
            return Err(error(format!(
                "--bind-call: unknown member {k:?}: give a JSON-RPC request or {{\"name\", \"arguments\"}}"
            )));
        }
        let name = match obj.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(error("--bind-call: `name` must be a non-empty string")),
        };
        let arguments = match obj.get("arguments") {
            None => None,
            Some(a @ Value::Object(_)) => Some(a),
            Some(_) => return Err(error("--bind-call: `arguments` must be an object")),
        };
        call::claim("tools/call", Some(&Target::Tool(name)), arguments)
    };
    claim.map_err(|e: CallError| error(format!("--bind-call: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    /// json/testdata/jcs-vectors.json, "refund call arguments".
    const REFUND_O1: &str = "pKfMX11tpCs7e2dLXkAmu9klG_G7gIHQf5VmjcEzz_U";

    #[test]
    fn a_request_and_its_short_form_give_the_filters_claim() {
        let request = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"refund","arguments":{"order_id":"o-1","amount":12000,"currency":"USD"}}}"#;
        let short =
            br#"{"name":"refund","arguments":{"currency":"USD","amount":12000,"order_id":"o-1"}}"#;
        let want = json!({"tool": "refund", "args_sha256": REFUND_O1});
        assert_eq!(call_claim(request).unwrap(), want);
        assert_eq!(call_claim(short).unwrap(), want);
        let prompt = br#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}"#;
        assert_eq!(call_claim(prompt).unwrap()["prompt"], "p");
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        for (text, want) in [
            (&b"{"[..], "not valid JSON"),
            (br#"{"name":"a","name":"b"}"#, "twice"),
            (br#"[1]"#, "JSON object"),
            (br#"{"name":"a","args":{}}"#, "unknown member"),
            (br#"{"name":""}"#, "non-empty"),
            (br#"{"name":"a","arguments":[1]}"#, "must be an object"),
            (
                br#"{"name":"a","arguments":{"n":9007199254740993}}"#,
                "2^53",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
                "only tools/call",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"x":1}"#,
                "invalid_request",
            ),
        ] {
            let err = call_claim(text).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{}: {err}",
                String::from_utf8_lossy(text)
            );
        }
    }
}
