//! List results filtered per caller (docs/policy.md, "Lists"): one JSON-RPC
//! message of a `tools/list`, `prompts/list`, `resources/list` or
//! `resources/templates/list` response keeps only the items some rule lets
//! this caller call (`tools/call`, `prompts/get`, `resources/read` on that
//! name or URI). The message is rewritten by cutting the removed items out of
//! the bytes the server sent: every other byte (`nextCursor`, `_meta`, item
//! schemas, member order, number spelling) reaches the client unchanged.
//! Anything that cannot be read with certainty is refused, never passed.

use crate::json::{parse_strict, JsonError};
use crate::mcp::{uri_climbs, Target};
use crate::policy::{Policy, Rule};
use crate::reason::Reason;
use crate::SpiffeId;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The four list methods, each with its result member and call method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl ListKind {
    pub const ALL: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Prompts,
        ListKind::Resources,
        ListKind::ResourceTemplates,
    ];

    /// The list kind of a request method (`tools/list`, …).
    pub fn of_method(method: &str) -> Option<ListKind> {
        ListKind::ALL.into_iter().find(|k| k.method() == method)
    }

    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
        }
    }

    /// The member of `result` that holds the items.
    pub fn member(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The method that would use an item.
    pub fn call_method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/call",
            ListKind::Prompts => "prompts/get",
            ListKind::Resources | ListKind::ResourceTemplates => "resources/read",
        }
    }

    /// The item member that names it.
    fn key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }
}

/// Which JSON-RPC responses a stream may carry.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// The response to this list request (its `id`, `None` if it had none):
    /// a result with another id is refused, since clients match ids loosely.
    Response { id: Option<Value>, kind: ListKind },
    /// A resumed stream (`GET` with `last-event-id`) replays responses to
    /// earlier requests: any result holding a list member is filtered.
    Replay,
}

/// Why a list response was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListError {
    /// Not a strict JSON-RPC message of the expected shape.
    Malformed(&'static str),
    /// Compressed (`content-encoding` other than `identity`).
    Encoded,
    /// A JSON body or one SSE event over `limits.max_list_bytes`.
    TooLarge,
}

impl ListError {
    pub fn reason(self) -> Reason {
        match self {
            ListError::Malformed(_) => Reason::ListMalformed,
            ListError::Encoded => Reason::ListEncoded,
            ListError::TooLarge => Reason::ListTooLarge,
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            ListError::Malformed(d) => d,
            ListError::Encoded => "the response is compressed",
            ListError::TooLarge => "the response is over limits.max_list_bytes",
        }
    }
}

/// A message after filtering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    pub text: Vec<u8>,
    pub kept: usize,
    pub removed: usize,
}

/// The policy's view for one caller.
pub struct Listing<'a> {
    pub policy: &'a Policy,
    pub caller: &'a SpiffeId,
    pub max_depth: usize,
}

/// The byte spans of the list arrays of a result, for cutting items out.
#[derive(Deserialize)]
struct Spans<'a> {
    #[serde(borrow)]
    result: Option<ResultSpans<'a>>,
}

#[derive(Deserialize)]
struct ResultSpans<'a> {
    #[serde(borrow, default)]
    tools: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    prompts: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    resources: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default, rename = "resourceTemplates")]
    resource_templates: Option<Vec<&'a RawValue>>,
}

impl<'a> ResultSpans<'a> {
    fn items(&self, kind: ListKind) -> Option<&Vec<&'a RawValue>> {
        match kind {
            ListKind::Tools => self.tools.as_ref(),
            ListKind::Prompts => self.prompts.as_ref(),
            ListKind::Resources => self.resources.as_ref(),
            ListKind::ResourceTemplates => self.resource_templates.as_ref(),
        }
    }
}

fn malformed<T>(why: &'static str) -> Result<T, ListError> {
    Err(ListError::Malformed(why))
}

impl Listing<'_> {
    /// Filters one JSON-RPC message. `Ok(None)`: pass it unchanged (a server
    /// request or notification, an error response, or in a replay a result
    /// without a list). `single` is a whole `application/json` body, which
    /// must be the response itself.
    pub fn message(
        &self,
        text: &[u8],
        expect: &Expect,
        single: bool,
    ) -> Result<Option<Rewritten>, ListError> {
        let value = parse_strict(text, self.max_depth).map_err(|e| {
            ListError::Malformed(match e {
                JsonError::DuplicateKey(_) => "a JSON object has a member twice",
                JsonError::TooDeep => "nested deeper than limits.max_json_depth",
                JsonError::Malformed => "not JSON",
            })
        })?;
        let Value::Object(msg) = value else {
            return malformed("not a JSON object");
        };
        let is_response = msg.contains_key("result") || msg.contains_key("error");
        if !is_response {
            return if single {
                malformed("not a JSON-RPC response")
            } else {
                Ok(None)
            };
        }
        let known = |k: &String| matches!(k.as_str(), "jsonrpc" | "id" | "result" | "error");
        if !msg.keys().all(known)
            || msg.get("jsonrpc").and_then(Value::as_str) != Some("2.0")
            || (msg.contains_key("result") && msg.contains_key("error"))
        {
            return malformed("not a JSON-RPC 2.0 response");
        }
        let Some(result) = msg.get("result") else {
            return Ok(None); // an error carries no list
        };
        let Value::Object(result) = result else {
            return malformed("result is not an object");
        };
        if let Expect::Response { id, kind } = expect {
            if msg.get("id") != id.as_ref() {
                return malformed("a result for another request id");
            }
            if !result.contains_key(kind.member()) {
                return malformed("the result has no list of the requested kind");
            }
        }
        let present: Vec<ListKind> = ListKind::ALL
            .into_iter()
            .filter(|k| result.contains_key(k.member()))
            .collect();
        if present.is_empty() {
            return Ok(None);
        }
        self.cut(text, result, &present).map(Some)
    }

    /// Cuts the items this caller may not use out of each list of `result`.
    fn cut(
        &self,
        text: &[u8],
        result: &Map<String, Value>,
        present: &[ListKind],
    ) -> Result<Rewritten, ListError> {
        let spans: Spans =
            serde_json::from_slice(text).map_err(|_| ListError::Malformed("not JSON"))?;
        let Some(spans) = spans.result else {
            return malformed("result is not an object");
        };
        let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::with_capacity(present.len());
        let (mut kept, mut removed) = (0, 0);
        for &kind in present {
            let Some(Value::Array(items)) = result.get(kind.member()) else {
                return malformed("a list member is not an array");
            };
            let raw = spans.items(kind).ok_or(ListError::Malformed("not JSON"))?;
            let rules = self.policy.rules_for(self.caller, kind.call_method());
            let mut out = Vec::with_capacity(raw.len());
            for (item, raw) in items.iter().zip(raw) {
                let name = item
                    .get(kind.key())
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or(ListError::Malformed("a list item has no name or URI"))?;
                if visible(&rules, kind, name) {
                    out.push(raw.get());
                } else {
                    removed += 1;
                }
            }
            kept += out.len();
            if out.len() == items.len() {
                continue;
            }
            let array = spans_of(text, raw).ok_or(ListError::Malformed("not JSON"))?;
            let mut replacement = Vec::with_capacity(array.1 - array.0);
            replacement.push(b'[');
            for (i, item) in out.iter().enumerate() {
                if i > 0 {
                    replacement.push(b',');
                }
                replacement.extend_from_slice(item.as_bytes());
            }
            replacement.push(b']');
            edits.push((array.0, array.1, replacement));
        }
        edits.sort_by_key(|e| e.0);
        let mut out = Vec::with_capacity(text.len());
        let mut at = 0;
        for (start, end, replacement) in edits {
            out.extend_from_slice(&text[at..start]);
            out.extend_from_slice(&replacement);
            at = end;
        }
        out.extend_from_slice(&text[at..]);
        Ok(Rewritten {
            text: out,
            kept,
            removed,
        })
    }
}

/// Whether some rule lets the caller use the item named `name`.
fn visible(rules: &[&Rule], kind: ListKind, name: &str) -> bool {
    let target = match kind {
        ListKind::Tools => Target::Tool(name.to_owned()),
        ListKind::Prompts => Target::Prompt(name.to_owned()),
        ListKind::Resources if uri_climbs(name) => return false,
        ListKind::Resources => Target::Resource(name.to_owned()),
        ListKind::ResourceTemplates => return rules.iter().any(|r| r.covers_template(name)),
    };
    rules.iter().any(|r| r.covers(&target))
}

/// The byte range of the array whose items are `items`, inside `text`:
/// from its `[` before the first item (or the empty array) to past its `]`.
/// Found from the items' own positions, which borrow `text`.
fn spans_of(text: &[u8], items: &[&RawValue]) -> Option<(usize, usize)> {
    let base = text.as_ptr() as usize;
    let offset = |raw: &RawValue| (raw.get().as_ptr() as usize).checked_sub(base);
    let (first, last) = (items.first()?, items.last()?);
    let start = offset(first)?;
    let end = offset(last)? + last.get().len();
    let open = text[..start].iter().rposition(|&b| b == b'[')?;
    let close = end + text.get(end..)?.iter().position(|&b| b == b']')?;
    Some((open, close + 1))
}
