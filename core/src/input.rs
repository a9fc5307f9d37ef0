//! The Rego input document (docs/policy.md), built only from verified data:
//! the caller from the validated certificate, the MCP message as parsed, and
//! history entries that passed every check.

use crate::mcp::{McpMessage, Target};
use crate::SpiffeId;
use custody_history::VerifiedHistory;
use serde_json::{json, Map, Value};

/// What the input document is made of.
pub struct Facts<'a> {
    pub caller: &'a SpiffeId,
    /// This tool server's SPIFFE ID (`audience`), if configured.
    pub target: Option<&'a str>,
    pub now: u64,
    pub http_method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(String, String)],
    pub mcp: &'a McpMessage,
    pub history: Option<&'a VerifiedHistory>,
}

pub fn document(f: &Facts) -> Value {
    let mut headers = Map::new();
    for (name, value) in f.headers {
        // Repeated headers are joined, as HTTP allows.
        match headers.get_mut(name) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    let mut mcp = json!({"method": f.mcp.method, "id": f.mcp.id, "arguments": f.mcp.arguments});
    if let Some(target) = &f.mcp.target {
        let kind = match target {
            Target::Tool(_) => "tool",
            Target::Resource(_) => "resource",
            Target::Prompt(_) => "prompt",
        };
        mcp[kind] = Value::String(target.name().to_owned());
    }
    let history: Vec<Value> = f
        .history
        .iter()
        .flat_map(|h| &h.entries)
        .map(|e| {
            json!({
                "seq": e.seq, "step": e.step, "result": e.result,
                "agent": e.iss.as_str(), "next": e.nxt.as_str(),
                "iat": e.iat, "exp": e.exp, "age": f.now.saturating_sub(e.iat),
                "claims": e.claims,
            })
        })
        .collect();
    json!({
        "calling_agent": f.caller.as_str(),
        "target": f.target,
        "now": f.now,
        "request": {"http_method": f.http_method, "path": f.path, "headers": headers},
        "mcp": mcp,
        "workflow": f.history.map(|h| h.wid.as_str()),
        "history": history,
    })
}
