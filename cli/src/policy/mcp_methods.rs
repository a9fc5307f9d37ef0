//! The MCP methods of the specification versions Custody supports
//! (2025-03-26, 2025-06-18, 2025-11-25, 2026-07-28; each version's
//! `schema/<version>/schema.ts`), split by who sends them, and the targets
//! the filter reads from each (core/src/mcp.rs). docs/policy.md lists them.

/// The MCP specification versions whose methods are known.
pub const VERSIONS: &str = "2025-03-26, 2025-06-18, 2025-11-25 and 2026-07-28";

/// Requests and notifications a client sends to a server: what a POST body
/// carries, so what the filter matches `methods` against.
pub const CLIENT: &[&str] = &[
    "completion/complete",
    "initialize",
    "logging/setLevel",
    "notifications/cancelled",
    "notifications/initialized",
    "notifications/progress",
    "notifications/roots/list_changed",
    "notifications/tasks/status",
    "ping",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/read",
    "resources/subscribe",
    "resources/templates/list",
    "resources/unsubscribe",
    "server/discover",
    "subscriptions/listen",
    "tasks/cancel",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tools/call",
    "tools/list",
];

/// Requests and notifications only a server sends (over its SSE stream):
/// never in a request the filter sees. The client's answer to a server
/// request is matched as `jsonrpc:response`.
pub const SERVER_ONLY: &[&str] = &[
    "elicitation/create",
    "notifications/elicitation/complete",
    "notifications/message",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
    "notifications/subscriptions/acknowledged",
    "notifications/tools/list_changed",
    "roots/list",
    "sampling/createMessage",
];

/// The pseudo-methods of requests without a JSON-RPC method (docs/policy.md).
pub const PSEUDO: &[&str] = &["http:GET", "http:DELETE", "jsonrpc:response"];

/// A kind of target a request can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Tool,
    Resource,
    Prompt,
}

impl Kind {
    /// The policy key that lists this kind.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Tool => "tools",
            Kind::Resource => "resources",
            Kind::Prompt => "prompts",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Resource => "resource",
            Kind::Prompt => "prompt",
        }
    }
}

/// The target kinds a request of `method` carries (core/src/mcp.rs).
pub fn targets(method: &str) -> &'static [Kind] {
    match method {
        "tools/call" => &[Kind::Tool],
        "prompts/get" => &[Kind::Prompt],
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => &[Kind::Resource],
        "completion/complete" => &[Kind::Prompt, Kind::Resource],
        _ => &[],
    }
}

/// Every method a request the filter sees can be matched under.
pub fn matchable() -> impl Iterator<Item = &'static str> {
    CLIENT.iter().chain(PSEUDO).copied()
}

/// The known name `name` is most likely a misspelling of: equal but for
/// case, or at most two edits away (one for short names).
pub fn closest(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let mut best: Option<(usize, &'static str)> = None;
    for known in CLIENT.iter().chain(SERVER_ONLY).chain(PSEUDO) {
        let d = edits(&lower, &known.to_ascii_lowercase());
        if best.is_none_or(|(b, _)| d < b) {
            best = Some((d, known));
        }
    }
    let (d, known) = best?;
    let allowed = if name.len() <= 6 { 1 } else { 2 };
    (d <= allowed && known != name).then_some(known)
}

/// Levenshtein distance (both inputs are short policy strings).
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let above = row.get(j + 1).copied().unwrap_or(0);
            let left = row.get(j).copied().unwrap_or(0);
            let cost = usize::from(ca != *cb);
            let value = (diagonal + cost).min(above + 1).min(left + 1);
            diagonal = above;
            if let Some(cell) = row.get_mut(j + 1) {
                *cell = value;
            }
        }
    }
    row.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use custody_core::mcp::{parse, Target};
    use serde_json::json;

    /// The table agrees with the filter's parser about which methods carry
    /// which target.
    #[test]
    fn targets_agree_with_the_filter() {
        for method in CLIENT {
            let mut kinds = Vec::new();
            let params = [
                json!({"name": "n", "uri": "file:///u"}),
                json!({"ref": {"type": "ref/prompt", "name": "n"}}),
                json!({"ref": {"type": "ref/resource", "uri": "file:///u"}}),
            ];
            for p in params {
                let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": p});
                if let Ok(m) = parse(body.to_string().as_bytes(), 64) {
                    match m.target {
                        Some(Target::Tool(_)) => kinds.push(Kind::Tool),
                        Some(Target::Resource(_)) => kinds.push(Kind::Resource),
                        Some(Target::Prompt(_)) => kinds.push(Kind::Prompt),
                        None => {}
                    }
                }
            }
            kinds.sort();
            kinds.dedup();
            let mut want = targets(method).to_vec();
            want.sort();
            assert_eq!(kinds, want, "{method}");
        }
    }

    #[test]
    fn suggests_the_method_meant() {
        assert_eq!(closest("tool/call"), Some("tools/call"));
        assert_eq!(closest("tools/Call"), Some("tools/call"));
        assert_eq!(closest("http:get"), Some("http:GET"));
        assert_eq!(closest("jsonrpc:reponse"), Some("jsonrpc:response"));
        assert_eq!(closest("tools/call"), None);
        assert_eq!(closest("acme/frobnicate"), None);
        assert_eq!(closest("pong"), Some("ping"));
    }
}
