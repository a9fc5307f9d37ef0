//! Stage 3: the MCP message in a POST body, parsed strictly as JSON-RPC 2.0.
//! What the policy matches on (method and target) is taken from exactly the
//! bytes the server will read; anything ambiguous is refused, not guessed.

use crate::json::{parse_strict, JsonError};
use crate::reason::Reason;
use serde_json::{Map, Value};

/// The method name under which client responses (to server requests such as
/// `sampling/createMessage`) are matched: they carry no method of their own.
pub const RESPONSE_METHOD: &str = "jsonrpc:response";

/// What an MCP request acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `tools/call` `params.name`.
    Tool(String),
    /// `resources/read|subscribe|unsubscribe` `params.uri`, or a `ref/resource` completion.
    Resource(String),
    /// `prompts/get` `params.name`, or a `ref/prompt` completion.
    Prompt(String),
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Tool(_) => "tool",
            Target::Resource(_) => "resource",
            Target::Prompt(_) => "prompt",
        }
    }
    pub fn name(&self) -> &str {
        match self {
            Target::Tool(s) | Target::Resource(s) | Target::Prompt(s) => s,
        }
    }
}

/// One parsed MCP message.
#[derive(Debug, Clone, PartialEq)]
pub struct McpMessage {
    /// JSON-RPC method, or [`RESPONSE_METHOD`].
    pub method: String,
    /// The request id; `None` for notifications.
    pub id: Option<Value>,
    pub target: Option<Target>,
    /// `tools/call` `params.arguments` (or `prompts/get` arguments).
    pub arguments: Option<Value>,
}

/// A refusal, with the request id when it could be read (for the reply).
#[derive(Debug, Clone, PartialEq)]
pub struct McpError {
    pub reason: Reason,
    pub id: Option<Value>,
    pub detail: &'static str,
}

fn invalid(id: Option<&Value>, detail: &'static str) -> McpError {
    McpError {
        reason: Reason::InvalidRequest,
        id: id.cloned(),
        detail,
    }
}

/// Parses one MCP message from a POST body.
pub fn parse(body: &[u8], max_depth: usize) -> Result<McpMessage, McpError> {
    let value = parse_strict(body, max_depth).map_err(|e| McpError {
        reason: match e {
            JsonError::Malformed => Reason::MalformedJson,
            JsonError::DuplicateKey(_) => Reason::DuplicateKey,
            JsonError::TooDeep => Reason::JsonTooDeep,
        },
        id: None,
        detail: "body is not strict JSON",
    })?;
    let obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => {
            return Err(McpError {
                reason: Reason::BatchRefused,
                id: None,
                detail: "batch",
            })
        }
        _ => return Err(invalid(None, "message is not a JSON object")),
    };
    // Only a well-typed id is echoed back.
    let id = obj.get("id").filter(|v| is_valid_id(v));
    if obj.contains_key("id") && id.is_none() {
        return Err(invalid(None, "id must be a string or an integer"));
    }
    let known = |k: &String| {
        matches!(
            k.as_str(),
            "jsonrpc" | "id" | "method" | "params" | "result" | "error"
        )
    };
    if !obj.keys().all(known) {
        return Err(invalid(id, "unknown member in JSON-RPC message"));
    }
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid(id, "jsonrpc must be \"2.0\""));
    }
    match obj.get("method") {
        Some(Value::String(method)) => request(&obj, method, id),
        Some(_) => Err(invalid(id, "method must be a string")),
        None => response(&obj, id),
    }
}

fn is_valid_id(v: &Value) -> bool {
    v.is_string() || v.is_i64() || v.is_u64()
}

fn request(
    obj: &Map<String, Value>,
    method: &str,
    id: Option<&Value>,
) -> Result<McpMessage, McpError> {
    if method.is_empty() {
        return Err(invalid(id, "method is empty"));
    }
    // `:` is reserved for the pseudo-methods (`http:GET`, `jsonrpc:response`):
    // a POSTed message must never be matched as one of them.
    if method.contains(':') {
        return Err(invalid(id, "method names may not contain ':'"));
    }
    if obj.contains_key("result") || obj.contains_key("error") {
        return Err(invalid(id, "a request has no result or error"));
    }
    let empty = Map::new();
    let params = match obj.get("params") {
        None => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => return Err(invalid(id, "params must be an object")),
    };
    let str_param = |name: &'static str| -> Result<String, McpError> {
        match params.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(invalid(
                id,
                "params member missing or not a non-empty string",
            )),
        }
    };
    let arguments = match params.get("arguments") {
        None => None,
        Some(a @ Value::Object(_)) => Some(a.clone()),
        Some(_) => return Err(invalid(id, "arguments must be an object")),
    };
    let target = match method {
        "tools/call" => Some(Target::Tool(str_param("name")?)),
        "prompts/get" => Some(Target::Prompt(str_param("name")?)),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            Some(Target::Resource(resource_uri(str_param("uri")?, id)?))
        }
        "completion/complete" => completion_target(params, id)?,
        _ => None,
    };
    Ok(McpMessage {
        method: method.to_owned(),
        id: id.cloned(),
        target,
        arguments,
    })
}

/// A completion asks about a prompt or resource: it is governed like one.
fn completion_target(
    params: &Map<String, Value>,
    id: Option<&Value>,
) -> Result<Option<Target>, McpError> {
    let reference = params.get("ref").and_then(Value::as_object);
    let field = |name: &str| reference.and_then(|r| r.get(name)).and_then(Value::as_str);
    match (field("type"), field("name"), field("uri")) {
        (Some("ref/prompt"), Some(name), _) if !name.is_empty() => {
            Ok(Some(Target::Prompt(name.to_owned())))
        }
        (Some("ref/resource"), _, Some(uri)) if !uri.is_empty() => {
            Ok(Some(Target::Resource(resource_uri(uri.to_owned(), id)?)))
        }
        _ => Err(invalid(
            id,
            "completion ref must name a prompt or a resource",
        )),
    }
}

/// A resource URI that could climb out of the tree a pattern names
/// (`file:///docs/../etc/passwd`, also percent-encoded) is refused: patterns
/// match URIs as written, and the server may normalise them.
fn resource_uri(uri: String, id: Option<&Value>) -> Result<String, McpError> {
    if uri_climbs(&uri) {
        return Err(invalid(id, "resource URI has a '.' or '..' segment"));
    }
    Ok(uri)
}

/// Whether a URI's path has a `.` or `..` segment (also percent-encoded, or
/// between backslashes): such a URI is never matched against a pattern.
pub fn uri_climbs(uri: &str) -> bool {
    let path = uri.split(['?', '#']).next().unwrap_or_default();
    path.split(['/', '\\']).any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

fn response(obj: &Map<String, Value>, id: Option<&Value>) -> Result<McpMessage, McpError> {
    let has_result = obj.contains_key("result");
    let has_error = obj.contains_key("error");
    if id.is_none() || has_result == has_error || obj.contains_key("params") {
        return Err(invalid(id, "not a request, notification or response"));
    }
    Ok(McpMessage {
        method: RESPONSE_METHOD.to_owned(),
        id: id.cloned(),
        target: None,
        arguments: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn ok(body: &str) -> McpMessage {
        parse(body.as_bytes(), 64).unwrap()
    }
    fn reason(body: &str) -> Reason {
        parse(body.as_bytes(), 64).unwrap_err().reason
    }

    #[test]
    fn reads_method_id_and_target() {
        let m = ok(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"refund","arguments":{"amount":12000}}}"#,
        );
        assert_eq!(m.method, "tools/call");
        assert_eq!(m.id, Some(json!(7)));
        assert_eq!(m.target, Some(Target::Tool("refund".into())));
        assert_eq!(m.arguments, Some(json!({"amount":12000})));

        let m = ok(
            r#"{"jsonrpc":"2.0","id":"a","method":"resources/read","params":{"uri":"file:///etc/x"}}"#,
        );
        assert_eq!(m.target, Some(Target::Resource("file:///etc/x".into())));
        let m = ok(r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greet"}}"#);
        assert_eq!(m.target, Some(Target::Prompt("greet".into())));
        let m = ok(
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"greet"},"argument":{"name":"a","value":"b"}}}"#,
        );
        assert_eq!(m.target, Some(Target::Prompt("greet".into())));
        let m = ok(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!(
            (m.method.as_str(), m.id, m.target),
            ("notifications/initialized", None, None)
        );
        let m = ok(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#);
        assert_eq!(m.target, None);
    }

    #[test]
    fn client_responses_are_matched_as_a_pseudo_method() {
        let m = ok(r#"{"jsonrpc":"2.0","id":3,"result":{"roots":[]}}"#);
        assert_eq!(m.method, RESPONSE_METHOD);
        assert_eq!(
            reason(r#"{"jsonrpc":"2.0","id":3,"result":{},"error":{}}"#),
            Reason::InvalidRequest
        );
        assert_eq!(
            reason(r#"{"jsonrpc":"2.0","result":{}}"#),
            Reason::InvalidRequest
        );
    }

    #[test]
    fn refuses_parse_level_faults_with_their_own_reason() {
        assert_eq!(reason("{"), Reason::MalformedJson);
        assert_eq!(
            reason(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#
            ),
            Reason::DuplicateKey
        );
        let deep = format!(
            r#"{{"jsonrpc":"2.0","method":"x","params":{}}}"#,
            "[".repeat(70) + &"]".repeat(70)
        );
        assert_eq!(reason(&deep), Reason::JsonTooDeep);
        assert_eq!(
            reason(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
            Reason::BatchRefused
        );
        assert_eq!(reason("[]"), Reason::BatchRefused);
    }

    #[test]
    fn refuses_what_json_rpc_and_mcp_do_not_allow() {
        for body in [
            r#""hello""#,
            r#"{"id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":""}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","extra":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":""}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":[1]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"a"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/other"}}}"#,
        ] {
            assert_eq!(reason(body), Reason::InvalidRequest, "{body}");
        }
    }

    #[test]
    fn pseudo_method_names_and_climbing_uris_are_refused() {
        for m in ["http:GET", "http:DELETE", "jsonrpc:response", "tools:call"] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{m}"}}"#);
            assert_eq!(reason(&body), Reason::InvalidRequest, "{m}");
        }
        for uri in [
            "file:///a/../b",
            "file:///a/%2e%2E/b",
            "file:///a/./b",
            "file:///a\\\\..\\\\b",
            "file:///..",
        ] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{{"uri":"{uri}"}}}}"#
            );
            assert_eq!(reason(&body), Reason::InvalidRequest, "{uri}");
        }
        let ok = ok(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a/..b/c.d"}}"#,
        );
        assert_eq!(
            ok.target,
            Some(Target::Resource("file:///a/..b/c.d".into()))
        );
    }

    #[test]
    fn echoes_a_well_typed_id_on_refusal() {
        let e = parse(
            br#"{"jsonrpc":"2.0","id":"req-9","method":"tools/call"}"#,
            64,
        )
        .unwrap_err();
        assert_eq!(e.id, Some(json!("req-9")));
        let e = parse(br#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#, 64).unwrap_err();
        assert_eq!(e.id, None);
    }
}
