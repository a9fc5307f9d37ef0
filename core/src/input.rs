//! The Rego input document (docs/policy.md), built only from verified data:
//! the caller from the validated certificate, the MCP message as parsed, and
//! history entries that passed every check. Built directly in regorus's own
//! value type (going through JSON costs more than the Rego evaluation), only
//! when a rule with `rego` is reached ([`Input`]), with its constant keys
//! and the verified entries' values kept across requests ([`InputCache`]).

use crate::mcp::McpMessage;
use crate::SpiffeId;
use custody_history::{VerifiedEntry, VerifiedHistory};
use regorus::Value as V;
use serde_json::Value;
use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

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

/// Where a rule's `rego` gets its input document: a document already built
/// (`regorus::Value`), or [`Input`], which builds it on first use.
pub trait InputSource: fmt::Debug {
    fn document(&self) -> &V;
}

impl InputSource for V {
    fn document(&self) -> &V {
        self
    }
}

/// The input document of one request, built the first time a rule with
/// `rego` (or `debug.log_input`) asks for it: a request whose rules name no
/// Rego rule, or are decided before reaching one, never pays for it.
pub struct Input<'a> {
    facts: Facts<'a>,
    cache: RefCell<Option<&'a mut InputCache>>,
    built: OnceCell<V>,
}

impl<'a> Input<'a> {
    /// `cache`: the values kept across requests (per VM in the filter).
    pub fn new(facts: Facts<'a>, cache: Option<&'a mut InputCache>) -> Input<'a> {
        Input {
            facts,
            cache: RefCell::new(cache),
            built: OnceCell::new(),
        }
    }

    /// Whether the document has been built.
    pub fn is_built(&self) -> bool {
        self.built.get().is_some()
    }
}

impl InputSource for Input<'_> {
    fn document(&self) -> &V {
        self.built
            .get_or_init(|| match self.cache.borrow_mut().as_deref_mut() {
                Some(cache) => rego_document(&self.facts, cache),
                None => rego_document(&self.facts, &mut InputCache::new(0, 0)),
            })
    }
}

impl fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Input")
            .field("built", &self.built.get())
            .finish()
    }
}

/// The document's constant keys, made once (each a shared string).
struct Keys {
    calling_agent: V,
    target: V,
    now: V,
    request: V,
    http_method: V,
    path: V,
    headers: V,
    mcp: V,
    method: V,
    id: V,
    arguments: V,
    workflow: V,
    history: V,
    seq: V,
    step: V,
    result: V,
    agent: V,
    next: V,
    iat: V,
    exp: V,
    age: V,
    claims: V,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            calling_agent: V::from("calling_agent"),
            target: V::from("target"),
            now: V::from("now"),
            request: V::from("request"),
            http_method: V::from("http_method"),
            path: V::from("path"),
            headers: V::from("headers"),
            mcp: V::from("mcp"),
            method: V::from("method"),
            id: V::from("id"),
            arguments: V::from("arguments"),
            workflow: V::from("workflow"),
            history: V::from("history"),
            seq: V::from("seq"),
            step: V::from("step"),
            result: V::from("result"),
            agent: V::from("agent"),
            next: V::from("next"),
            iat: V::from("iat"),
            exp: V::from("exp"),
            age: V::from("age"),
            claims: V::from("claims"),
        }
    }
}

/// What the input documents of one VM share: the constant keys, and each
/// verified history entry already converted to a Rego object (all of it but
/// `age`, which depends on the request's time). Entries are keyed by their
/// SHA-256 (`VerifiedEntry::hash`, the hash of the exact entry text that
/// verified), and the object is a function of that text alone, so a hit is
/// the very entry it was made from. At most `cap` entries and `max_bytes`
/// of their text ([`entry_bytes`]: what regorus's values hold, about in
/// proportion); the oldest insertion goes first.
pub struct InputCache {
    keys: Keys,
    entries: HashMap<[u8; 32], (V, usize)>,
    order: VecDeque<[u8; 32]>,
    cap: usize,
    max_bytes: usize,
    bytes: usize,
    hits: u64,
    misses: u64,
    documents: u64,
}

impl InputCache {
    /// Keeps at most `cap` entries (`0`: none, the keys only) and
    /// `max_bytes` of their text.
    pub fn new(cap: usize, max_bytes: usize) -> InputCache {
        InputCache {
            keys: Keys::new(),
            entries: HashMap::new(),
            order: VecDeque::new(),
            cap,
            max_bytes,
            bytes: 0,
            hits: 0,
            misses: 0,
            documents: 0,
        }
    }

    /// Entries found and entries converted so far.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Input documents built with this cache so far.
    pub fn documents(&self) -> u64 {
        self.documents
    }

    /// Number of entries kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Their text, in bytes ([`entry_bytes`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry as a Rego object, `age` set for `now`.
    fn entry(&mut self, e: &VerifiedEntry, now: u64) -> V {
        let age = V::from(now.saturating_sub(e.iat));
        let cached = match self.entries.get(&e.hash) {
            Some((v, _)) => {
                self.hits += 1;
                v.clone()
            }
            None => {
                self.misses += 1;
                let v = entry_object(&self.keys, e);
                self.keep(e.hash, &v, entry_bytes(e));
                v
            }
        };
        match cached.as_object() {
            // A copy of the shared object (its members are shared too) with
            // `age` replaced: regorus keeps it in its compact sorted form.
            Ok(object) => {
                let mut object = object.clone();
                object.insert(self.keys.age.clone(), age);
                V::from(object)
            }
            Err(_) => cached,
        }
    }

    fn keep(&mut self, hash: [u8; 32], v: &V, size: usize) {
        if self.cap == 0 || size > self.max_bytes {
            return;
        }
        self.order.push_back(hash);
        self.bytes += size;
        self.entries.insert(hash, (v.clone(), size));
        while self.order.len() > self.cap || self.bytes > self.max_bytes {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some((_, freed)) = self.entries.remove(&old) {
                self.bytes -= freed;
            }
        }
    }
}

/// An entry's text as the cache counts it: its strings, and its claims as
/// JSON would write them (without quotes and separators), plus 16 bytes per
/// value.
fn entry_bytes(e: &VerifiedEntry) -> usize {
    fn json_bytes(v: &Value) -> usize {
        16 + match v {
            Value::String(s) => s.len(),
            Value::Array(items) => items.iter().map(json_bytes).sum(),
            Value::Object(members) => members.iter().map(|(k, v)| k.len() + json_bytes(v)).sum(),
            _ => 0,
        }
    }
    let strings = e.step.len() + e.result.len() + e.iss.as_str().len() + e.nxt.as_str().len();
    9 * 16 + strings + json_bytes(&e.claims)
}

/// An entry as the document shows it, `age` 0 (set per request).
fn entry_object(k: &Keys, e: &VerifiedEntry) -> V {
    object([
        (k.seq.clone(), V::from(e.seq)),
        (k.step.clone(), V::from(e.step.as_str())),
        (k.result.clone(), V::from(e.result.as_str())),
        (k.agent.clone(), V::from(e.iss.as_str())),
        (k.next.clone(), V::from(e.nxt.as_str())),
        (k.iat.clone(), V::from(e.iat)),
        (k.exp.clone(), V::from(e.exp)),
        (k.age.clone(), V::from(0u64)),
        (k.claims.clone(), json(&e.claims)),
    ])
}

fn object<const N: usize>(members: [(V, V); N]) -> V {
    V::from(members.into_iter().collect::<BTreeMap<V, V>>())
}

/// A JSON value as a Rego value, converted directly (no serde round trip).
fn json(v: &Value) -> V {
    match v {
        Value::Null => V::Null,
        Value::Bool(b) => V::from(*b),
        Value::Number(n) => number(n),
        Value::String(s) => V::from(s.as_str()),
        Value::Array(items) => V::from(items.iter().map(json).collect::<Vec<V>>()),
        Value::Object(members) => V::from(
            members
                .iter()
                .map(|(k, v)| (V::from(k.as_str()), json(v)))
                .collect::<BTreeMap<V, V>>(),
        ),
    }
}

/// A JSON number as regorus reads it from JSON text.
fn number(n: &serde_json::Number) -> V {
    if let Some(u) = n.as_u64() {
        V::from(u)
    } else if let Some(i) = n.as_i64() {
        V::from(i)
    } else {
        // Neither integer: regorus's own JSON reading, for the same value.
        V::from(Value::Number(n.clone()))
    }
}

/// The input document of docs/policy.md, as regorus's value.
pub fn rego_document(f: &Facts, cache: &mut InputCache) -> V {
    let text = |s: Option<&str>| s.map_or(V::Null, V::from);
    let opt = |v: Option<&Value>| v.map_or(V::Null, json);

    let mut joined: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in f.headers {
        // Repeated headers are joined, as HTTP allows.
        joined
            .entry(name)
            .and_modify(|j| {
                j.push_str(", ");
                j.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    let headers: BTreeMap<V, V> = joined
        .into_iter()
        .map(|(k, v)| (V::from(k), V::from(v)))
        .collect();
    cache.documents += 1;
    // The entries first: they need the cache mutably, the keys below only read it.
    let history: Vec<V> = f
        .history
        .iter()
        .flat_map(|h| &h.entries)
        .map(|e| cache.entry(e, f.now))
        .collect();
    let k = &cache.keys;
    let mut mcp: BTreeMap<V, V> = BTreeMap::from([
        (k.method.clone(), V::from(f.mcp.method.as_str())),
        (k.id.clone(), opt(f.mcp.id.as_ref())),
        (k.arguments.clone(), opt(f.mcp.arguments.as_ref())),
    ]);
    if let Some(target) = &f.mcp.target {
        mcp.insert(V::from(target.kind()), V::from(target.name()));
    }
    let request = object([
        (k.http_method.clone(), V::from(f.http_method)),
        (k.path.clone(), V::from(f.path)),
        (k.headers.clone(), V::from(headers)),
    ]);
    object([
        (k.calling_agent.clone(), V::from(f.caller.as_str())),
        (k.target.clone(), text(f.target)),
        (k.now.clone(), V::from(f.now)),
        (k.request.clone(), request),
        (k.mcp.clone(), V::from(mcp)),
        (k.workflow.clone(), text(f.history.map(|h| h.wid.as_str()))),
        (k.history.clone(), V::from(history)),
    ])
}

/// What redacted values read as in the log.
pub const REDACTED: &str = "<redacted>";

/// Request headers whose values are never logged: credentials.
const CREDENTIAL_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];

/// The input document for the decision log (`debug.log_input`). Credential
/// headers are always redacted; history entries' `claims` and
/// `mcp.arguments` too, unless `keep_claims`.
pub fn for_log(doc: &regorus::Value, keep_claims: bool) -> Value {
    let mut v = serde_json::to_value(doc).unwrap_or(Value::Null);
    if let Some(headers) = v
        .pointer_mut("/request/headers")
        .and_then(Value::as_object_mut)
    {
        for name in CREDENTIAL_HEADERS {
            if let Some(value) = headers.get_mut(name) {
                *value = Value::from(REDACTED);
            }
        }
    }
    if !keep_claims {
        if let Some(args) = v.pointer_mut("/mcp/arguments").filter(|a| !a.is_null()) {
            *args = Value::from(REDACTED);
        }
        for entry in v
            .get_mut("history")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(claims) = entry.get_mut("claims") {
                *claims = Value::from(REDACTED);
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::mcp::Target;
    use custody_history::{VerifiedEntry, VerifiedProof};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn entry(seq: u64, step: &str, claims: Value) -> VerifiedEntry {
        VerifiedEntry {
            seq,
            step: step.into(),
            result: "approved".into(),
            iss: id("spiffe://example.org/ns/p/sa/approvals"),
            nxt: id("spiffe://example.org/ns/p/sa/refund-agent"),
            iat: 1_000 + seq,
            exp: 5_000,
            claims,
            hash: [seq as u8; 32],
            signer_not_after: 9_000,
        }
    }

    #[test]
    fn the_document_is_built_from_the_facts() {
        let caller = id("spiffe://example.org/ns/p/sa/refund-agent");
        let history = VerifiedHistory {
            wid: "wf-1".into(),
            entries: vec![
                entry(0, "fraud_check_passed", json!({})),
                entry(
                    1,
                    "human_approval",
                    json!({"amount": 5000, "note": "ok", "ratio": 0.5, "tags": ["a", null, true], "neg": -3}),
                ),
            ],
            proof: VerifiedProof {
                jti: "j".into(),
                iat: 1_010,
                exp: 1_060,
                iss: caller.clone(),
            },
        };
        let headers = [
            ("accept".to_owned(), "a".to_owned()),
            ("x-b".to_owned(), "1".to_owned()),
            ("accept".to_owned(), "b".to_owned()),
        ];
        let call = McpMessage {
            method: "tools/call".into(),
            id: Some(json!(7)),
            target: Some(Target::Tool("refund".into())),
            arguments: Some(json!({"amount": 1200, "order": "A-1"})),
        };
        let list = McpMessage {
            method: "tools/list".into(),
            id: Some(json!("s-1")),
            target: None,
            arguments: None,
        };
        let resource = McpMessage {
            method: "resources/read".into(),
            id: None,
            target: Some(Target::Resource("file:///a".into())),
            arguments: None,
        };
        let entries = json!([
            {"seq": 0, "step": "fraud_check_passed", "result": "approved",
             "agent": "spiffe://example.org/ns/p/sa/approvals", "next": "spiffe://example.org/ns/p/sa/refund-agent",
             "iat": 1000, "exp": 5000, "age": 100, "claims": {}},
            {"seq": 1, "step": "human_approval", "result": "approved",
             "agent": "spiffe://example.org/ns/p/sa/approvals", "next": "spiffe://example.org/ns/p/sa/refund-agent",
             "iat": 1001, "exp": 5000, "age": 99,
             "claims": {"amount": 5000, "note": "ok", "ratio": 0.5, "tags": ["a", null, true], "neg": -3}},
        ]);
        let request = json!({"http_method": "POST", "path": "/mcp", "headers": {"accept": "a, b", "x-b": "1"}});
        let agent = "spiffe://example.org/ns/p/sa/refund-agent";
        for (mcp, history, target, expected) in [
            (
                &call,
                Some(&history),
                Some("spiffe://example.org/ns/p/sa/tool"),
                json!({
                "calling_agent": agent, "target": "spiffe://example.org/ns/p/sa/tool", "now": 1100,
                "request": request,
                "mcp": {"method": "tools/call", "id": 7, "arguments": {"amount": 1200, "order": "A-1"}, "tool": "refund"},
                "workflow": "wf-1", "history": entries}),
            ),
            (
                &list,
                None,
                None,
                json!({
                "calling_agent": agent, "target": null, "now": 1100, "request": request,
                "mcp": {"method": "tools/list", "id": "s-1", "arguments": null},
                "workflow": null, "history": []}),
            ),
            (
                &resource,
                Some(&history),
                None,
                json!({
                "calling_agent": agent, "target": null, "now": 1100, "request": request,
                "mcp": {"method": "resources/read", "id": null, "arguments": null, "resource": "file:///a"},
                "workflow": "wf-1", "history": entries}),
            ),
        ] {
            let facts = Facts {
                caller: &caller,
                target,
                now: 1_100,
                http_method: "POST",
                path: "/mcp",
                headers: &headers,
                mcp,
                history,
            };
            let expected_value = regorus::Value::from(expected.clone());
            assert_ne!(expected_value, regorus::Value::Undefined);
            assert_eq!(
                rego_document(&facts, &mut InputCache::new(0, 0)),
                expected_value,
                "{expected}"
            );
            // The same document from entries kept across requests, at
            // another time (only `age` and `now` move).
            let mut cache = InputCache::new(8, 1 << 20);
            rego_document(&facts, &mut cache);
            let later = Facts {
                now: 1_150,
                ..facts
            };
            let mut at_later = expected.clone();
            at_later["now"] = json!(1_150);
            for e in at_later["history"].as_array_mut().unwrap() {
                e["age"] = json!(1_150 - e["iat"].as_u64().unwrap());
            }
            assert_eq!(
                rego_document(&later, &mut cache),
                regorus::Value::from(at_later.clone()),
                "{at_later}"
            );
        }
    }

    fn history_of(entries: Vec<VerifiedEntry>) -> VerifiedHistory {
        VerifiedHistory {
            wid: "wf".into(),
            entries,
            proof: VerifiedProof {
                jti: "j".into(),
                iat: 1_010,
                exp: 1_060,
                iss: id("spiffe://example.org/ns/p/sa/refund-agent"),
            },
        }
    }

    fn document(history: &VerifiedHistory, cache: &mut InputCache) -> regorus::Value {
        let caller = id("spiffe://example.org/ns/p/sa/refund-agent");
        let msg = McpMessage {
            method: "tools/call".into(),
            id: None,
            target: None,
            arguments: None,
        };
        rego_document(
            &Facts {
                caller: &caller,
                target: None,
                now: 2_000,
                http_method: "POST",
                path: "/mcp",
                headers: &[],
                mcp: &msg,
                history: Some(history),
            },
            cache,
        )
    }

    #[test]
    fn kept_entries_are_found_by_their_hash_only() {
        let mut cache = InputCache::new(8, 1 << 20);
        let a = entry(0, "human_approval", json!({"amount": 5}));
        document(&history_of(vec![a.clone()]), &mut cache);
        assert_eq!(cache.stats(), (0, 1));
        // The same entry (same hash): found, same value.
        let again = document(&history_of(vec![a.clone()]), &mut cache);
        assert_eq!(cache.stats(), (1, 1));
        assert_eq!(
            again["history"][0]["claims"]["amount"],
            regorus::Value::from(5u64)
        );
        // An entry whose text differs in one byte has another SHA-256: not
        // found, converted from its own values.
        let mut b = entry(0, "human_approval", json!({"amount": 6}));
        b.hash[31] ^= 1;
        let doc = document(&history_of(vec![b]), &mut cache);
        assert_eq!(cache.stats(), (1, 2));
        assert_eq!(
            doc["history"][0]["claims"]["amount"],
            regorus::Value::from(6u64)
        );
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn the_entry_cache_keeps_at_most_its_cap() {
        let mut cache = InputCache::new(2, 1 << 20);
        for seq in 0..5u64 {
            document(&history_of(vec![entry(seq, "s", json!({}))]), &mut cache);
        }
        assert_eq!(cache.len(), 2);
        // The oldest went first: entries 3 and 4 are still found, 0 is not.
        document(&history_of(vec![entry(4, "s", json!({}))]), &mut cache);
        document(&history_of(vec![entry(3, "s", json!({}))]), &mut cache);
        assert_eq!(cache.stats(), (2, 5));
        document(&history_of(vec![entry(0, "s", json!({}))]), &mut cache);
        assert_eq!(cache.stats(), (2, 6));
        let mut none = InputCache::new(0, 0);
        document(&history_of(vec![entry(0, "s", json!({}))]), &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn the_entry_cache_keeps_at_most_its_bytes() {
        let big = |seq: u64| entry(seq, "s", json!({"note": "x".repeat(1_000)}));
        let size = entry_bytes(&big(0));
        assert!(size > 1_000, "{size}");
        let mut cache = InputCache::new(100, 2 * size + size / 2);
        for seq in 0..4 {
            document(&history_of(vec![big(seq)]), &mut cache);
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.bytes(), 2 * size);
        // An entry larger than the whole budget is converted, never kept.
        let mut small = InputCache::new(100, size - 1);
        let doc = document(&history_of(vec![big(9)]), &mut small);
        assert_eq!(doc["history"][0]["seq"], regorus::Value::from(9u64));
        assert!(small.is_empty());
        assert_eq!(small.bytes(), 0);
    }

    #[test]
    fn json_values_convert_as_regorus_reads_them() {
        for v in [
            json!(null),
            json!(true),
            json!(0),
            json!(-7),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(0.5),
            json!(1e300),
            json!(-2.5e-8),
            json!("text"),
            json!([]),
            json!({}),
            json!([1, "a", [null, {"k": [true]}], {"b": 2, "a": 1}]),
        ] {
            assert_eq!(json(&v), regorus::Value::from(v.clone()), "{v}");
        }
        // A member named as serde_json's private number marker stays an
        // object member (regorus's serde path would read it as a number).
        let marker = json!({"$serde_json::private::Number": "1"});
        assert_eq!(
            json(&marker)["$serde_json::private::Number"],
            regorus::Value::from("1")
        );
    }

    #[test]
    fn the_document_is_built_only_when_asked_for() {
        let caller = id("spiffe://example.org/ns/p/sa/refund-agent");
        let msg = McpMessage {
            method: "ping".into(),
            id: None,
            target: None,
            arguments: None,
        };
        let facts = Facts {
            caller: &caller,
            target: None,
            now: 5,
            http_method: "POST",
            path: "/mcp",
            headers: &[],
            mcp: &msg,
            history: None,
        };
        let mut cache = InputCache::new(4, 1 << 20);
        let input = Input::new(facts, Some(&mut cache));
        assert!(!input.is_built());
        assert_eq!(input.document()["now"], regorus::Value::from(5u64));
        assert!(input.is_built());
    }

    #[test]
    fn the_logged_document_redacts_claims_arguments_and_credentials() {
        let doc = regorus::Value::from(json!({
            "calling_agent": "spiffe://example.org/a", "now": 5,
            "request": {"http_method": "POST", "path": "/mcp",
                        "headers": {"authorization": "Bearer s3cret", "cookie": "c=1", "accept": "x"}},
            "mcp": {"method": "tools/call", "id": 1, "tool": "refund", "arguments": {"card": "4111"}},
            "workflow": "w", "history": [{"step": "a", "claims": {"ssn": "123"}}, {"step": "b", "claims": {}}]}));
        let logged = for_log(&doc, false);
        assert_eq!(logged["request"]["headers"]["authorization"], REDACTED);
        assert_eq!(logged["request"]["headers"]["cookie"], REDACTED);
        assert_eq!(logged["request"]["headers"]["accept"], "x");
        assert_eq!(logged["mcp"]["arguments"], REDACTED);
        assert_eq!(logged["mcp"]["tool"], "refund");
        assert_eq!(logged["history"][0]["claims"], REDACTED);
        assert_eq!(logged["history"][1]["claims"], REDACTED);
        assert_eq!(logged["history"][1]["step"], "b");
        let text = for_log(&doc, false).to_string();
        assert!(
            !text.contains("s3cret") && !text.contains("4111") && !text.contains("123"),
            "{text}"
        );
        let kept = for_log(&doc, true);
        assert_eq!(kept["mcp"]["arguments"], json!({"card": "4111"}));
        assert_eq!(kept["history"][0]["claims"], json!({"ssn": "123"}));
        assert_eq!(
            kept["request"]["headers"]["authorization"], REDACTED,
            "credentials never"
        );
        // A message without arguments keeps its null.
        let none = regorus::Value::from(
            json!({"mcp": {"method": "ping", "arguments": null}, "history": []}),
        );
        let logged = for_log(&none, false);
        assert_eq!(logged["mcp"]["arguments"], Value::Null);
    }
}
