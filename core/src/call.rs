//! The call claim a `binds: call` clause compares: what one MCP call does,
//! as a small JSON object an approver can sign in `claims.call` and the
//! filter can compute from the request it is deciding
//! (docs/history-format.md, "Binding an entry to one call"):
//!
//! `{"tool": <name>, "args_sha256": <b64url SHA-256 of JCS(params.arguments)>}`
//! for `tools/call`, `"prompt"` for `prompts/get`, `"resource"` (the URI) for
//! `resources/read`. Absent arguments hash as `{}`.

use crate::mcp::{McpMessage, Target};
use custody_json::jcs::{self, JcsError};
use serde_json::{json, Value};

/// The member of an entry's `claims` that carries its call claim.
pub const CALL_CLAIM: &str = "call";

/// The methods a call claim can describe (and a rule with `binds: call` may list).
pub const CALL_METHODS: [&str; 3] = ["tools/call", "prompts/get", "resources/read"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// Not `tools/call`, `prompts/get` or `resources/read` with its target.
    NotACall,
    /// The arguments hold a number that cannot be bound (magnitude above 2^53 − 1).
    Arguments(JcsError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NotACall => write!(
                f,
                "only {} requests can be bound to a call",
                CALL_METHODS.join(", ")
            ),
            CallError::Arguments(e) => write!(f, "the arguments cannot be bound: {e}"),
        }
    }
}

/// The call claim of `method` on `target` with `arguments`.
pub fn claim(
    method: &str,
    target: Option<&Target>,
    arguments: Option<&Value>,
) -> Result<Value, CallError> {
    let key = match (method, target) {
        ("tools/call", Some(Target::Tool(_))) => "tool",
        ("prompts/get", Some(Target::Prompt(_))) => "prompt",
        ("resources/read", Some(Target::Resource(_))) => "resource",
        _ => return Err(CallError::NotACall),
    };
    let name = target.map(Target::name).unwrap_or_default();
    let args_sha256 = jcs::args_sha256(arguments).map_err(CallError::Arguments)?;
    Ok(json!({ key: name, "args_sha256": args_sha256 }))
}

/// The call claim of a parsed MCP message.
pub fn of_message(msg: &McpMessage) -> Result<Value, CallError> {
    claim(&msg.method, msg.target.as_ref(), msg.arguments.as_ref())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::mcp;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn of(body: &str) -> Result<Value, CallError> {
        of_message(&mcp::parse(body.as_bytes(), 64).unwrap())
    }

    #[test]
    fn a_tool_call_is_its_name_and_the_hash_of_its_arguments() {
        let c = of(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"refund","arguments":{"order_id":"o-1","amount":12000,"currency":"USD"}}}"#).unwrap();
        // The vector "refund call arguments" of json/testdata/jcs-vectors.json.
        assert_eq!(
            c,
            json!({"tool": "refund", "args_sha256": "pKfMX11tpCs7e2dLXkAmu9klG_G7gIHQf5VmjcEzz_U"})
        );
        // Same call, other spelling and member order: same claim.
        let again = of(r#"{"params":{"arguments":{"currency":"USD","amount":1.2e4,"order_id":"o-1"},"name":"refund"},"method":"tools/call","id":"x","jsonrpc":"2.0"}"#).unwrap();
        assert_eq!(c, again);
        let other = of(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"refund","arguments":{"order_id":"o-2","amount":12000,"currency":"USD"}}}"#).unwrap();
        assert_ne!(c, other);
    }

    #[test]
    fn prompts_and_resources_and_absent_arguments() {
        let empty = jcs::args_sha256(None).unwrap();
        assert_eq!(
            of(r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greet"}}"#)
                .unwrap(),
            json!({"prompt": "greet", "args_sha256": empty})
        );
        assert_eq!(
            of(
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///r"}}"#
            )
            .unwrap(),
            json!({"resource": "file:///r", "args_sha256": empty})
        );
        assert_eq!(
            of(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{}}}"#)
                .unwrap(),
            json!({"tool": "t", "args_sha256": empty})
        );
    }

    #[test]
    fn other_methods_and_unsafe_numbers_cannot_be_bound() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///r"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"greet"}}}"#,
        ] {
            assert_eq!(of(body), Err(CallError::NotACall), "{body}");
        }
        assert_eq!(
            of(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"id":9007199254740993}}}"#
            ),
            Err(CallError::Arguments(JcsError::UnsafeNumber))
        );
    }
}
