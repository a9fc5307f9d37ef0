//! List results filtered per caller (docs/policy.md, "Lists"): one JSON-RPC
//! message of a `tools/list`, `prompts/list`, `resources/list` or
//! `resources/templates/list` response keeps only the items some rule lets
//! this caller call (`tools/call`, `prompts/get`, `resources/read` on that
//! name or URI). The message is rewritten by cutting the removed items out of
//! the bytes the server sent: every other byte (`nextCursor`, `_meta`, item
//! schemas, member order, number spelling) reaches the client unchanged.
//! Anything that cannot be read with certainty is refused, never passed.

use crate::json::{check_strict, JsonError, Key};
use crate::mcp::{uri_climbs, Target};
use crate::policy::{Policy, Rule};
use crate::reason::Reason;
use crate::SpiffeId;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;

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

fn malformed<T>(why: &'static str) -> Result<T, ListError> {
    Err(ListError::Malformed(why))
}

/// The members of a JSON object, each its exact text (`None`: not an object).
/// Member names are unique: the message passed `check_strict` first.
fn members(text: &str) -> Option<HashMap<String, &RawValue>> {
    serde_json::from_str(text).ok()
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
        check_strict(text, self.max_depth).map_err(|e| {
            ListError::Malformed(match e {
                JsonError::DuplicateKey(_) => "a JSON object has a member twice",
                JsonError::TooDeep => "nested deeper than limits.max_json_depth",
                JsonError::Malformed => "not JSON",
            })
        })?;
        // Strict JSON is UTF-8.
        let text = std::str::from_utf8(text).map_err(|_| ListError::Malformed("not JSON"))?;
        let Some(msg) = members(text) else {
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
        let version = msg
            .get("jsonrpc")
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok());
        if !msg.keys().all(known)
            || version.as_deref() != Some("2.0")
            || (msg.contains_key("result") && msg.contains_key("error"))
        {
            return malformed("not a JSON-RPC 2.0 response");
        }
        let Some(result) = msg.get("result") else {
            return Ok(None); // an error carries no list
        };
        let Some(result) = members(result.get()) else {
            return malformed("result is not an object");
        };
        if let Expect::Response { id, kind } = expect {
            let got = msg
                .get("id")
                .map(|v| serde_json::from_str::<Value>(v.get()))
                .transpose()
                .map_err(|_| ListError::Malformed("not JSON"))?;
            if got.as_ref() != id.as_ref() {
                return malformed("a result for another request id");
            }
            if !result.contains_key(kind.member()) {
                return malformed("the result has no list of the requested kind");
            }
        }
        let lists: Vec<(ListKind, &RawValue)> = ListKind::ALL
            .into_iter()
            .filter_map(|k| Some((k, *result.get(k.member())?)))
            .collect();
        if lists.is_empty() {
            return Ok(None);
        }
        self.cut(text, &lists).map(Some)
    }

    /// Cuts the items this caller may not use out of each list. Every
    /// `RawValue` here is a slice of `text`, so its position is known.
    fn cut(&self, text: &str, lists: &[(ListKind, &RawValue)]) -> Result<Rewritten, ListError> {
        let base = text.as_ptr() as usize;
        let mut edits: Vec<(usize, usize, String)> = Vec::with_capacity(lists.len());
        let (mut kept, mut removed) = (0, 0);
        for &(kind, list) in lists {
            let items: Vec<&RawValue> = serde_json::from_str(list.get())
                .map_err(|_| ListError::Malformed("a list member is not an array"))?;
            let rules = self.policy.rules_for(self.caller, kind.call_method());
            let mut out = Vec::with_capacity(items.len());
            for item in &items {
                let name = member_str(item.get(), kind.key())
                    .filter(|s| !s.is_empty())
                    .ok_or(ListError::Malformed("a list item has no name or URI"))?;
                if visible(&rules, kind, &name) {
                    out.push(item.get());
                }
            }
            kept += out.len();
            removed += items.len() - out.len();
            if out.len() < items.len() {
                let start = (list.get().as_ptr() as usize).saturating_sub(base);
                edits.push((
                    start,
                    start + list.get().len(),
                    format!("[{}]", out.join(",")),
                ));
            }
        }
        edits.sort_by_key(|e| e.0);
        let mut out = Vec::with_capacity(text.len());
        let mut at = 0;
        for (start, end, replacement) in edits {
            out.extend_from_slice(text.as_bytes().get(at..start).unwrap_or_default());
            out.extend_from_slice(replacement.as_bytes());
            at = end;
        }
        out.extend_from_slice(text.as_bytes().get(at..).unwrap_or_default());
        Ok(Rewritten {
            text: out,
            kept,
            removed,
        })
    }
}

/// The string member `key` of the JSON object `text`; `None` if `text` is
/// not an object or the member is absent or not a string. Other members are
/// skipped unread.
fn member_str<'a>(text: &'a str, key: &str) -> Option<Cow<'a, str>> {
    struct Find<'k>(&'k str);
    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                if k == self.0 {
                    found = Some(map.next_value::<Key<'de>>()?.0);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(Find(key)).ok().flatten()
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
