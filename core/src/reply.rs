//! Stage 6 (deny): the local reply. A JSON-RPC 2.0 error object the official
//! MCP SDK clients surface to the agent, with a stable reason code.

use crate::reason::Reason;
use serde_json::{json, Value};

/// The body of a refusal: `{"jsonrpc":"2.0","id":…,"error":{"code","message","data":{"reason","decision_id"}}}`.
/// `id` is the request's id when it was read, else `null`.
pub fn error_body(reason: Reason, id: Option<&Value>, decision_id: &str) -> Vec<u8> {
    let body = json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Value::Null),
        "error": {
            "code": reason.jsonrpc_code(),
            "message": reason.message(),
            "data": {"reason": reason.code(), "decision_id": decision_id},
        },
    });
    body.to_string().into_bytes()
}

/// Response headers of a refusal.
pub const ERROR_HEADERS: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("cache-control", "no-store"),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn is_a_json_rpc_error_with_reason_and_decision_id() {
        let body = error_body(Reason::NoRule, Some(&json!(7)), "d-1");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":7,"error":{"code":-32003,
                   "message":"Caller is not allowed to make this MCP request",
                   "data":{"reason":"no_rule","decision_id":"d-1"}}})
        );
        let v: Value =
            serde_json::from_slice(&error_body(Reason::MalformedJson, None, "d-2")).unwrap();
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["code"], -32700);
    }
}
