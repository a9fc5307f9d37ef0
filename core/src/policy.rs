//! Declarative rules, deny by default. The same types read the people-facing
//! YAML (in `custody policy compile`) and the compiled JSON bundle (in the
//! filter), so both apply exactly the same validation: a pattern that would
//! not compile ahead of time is also refused at load time.

use crate::glob::Glob;
use crate::mcp::Target;
use crate::reason::Reason;
use crate::SpiffeId;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The bundle format version this filter reads.
pub const BUNDLE_VERSION: u32 = 1;

/// A compiled policy: what the filter loads from its plugin configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawPolicy")]
pub struct Policy {
    pub version: u32,
    pub default: DefaultAction,
    pub rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default = "bundle_version")]
    version: u32,
    #[serde(default)]
    default: DefaultAction,
    rules: Vec<Rule>,
}

fn bundle_version() -> u32 {
    BUNDLE_VERSION
}

impl TryFrom<RawPolicy> for Policy {
    type Error = String;
    fn try_from(raw: RawPolicy) -> Result<Self, String> {
        if raw.version != BUNDLE_VERSION {
            return Err(format!(
                "policy version {} is not supported (this filter reads version {BUNDLE_VERSION})",
                raw.version
            ));
        }
        let mut names = HashSet::new();
        for rule in &raw.rules {
            if !names.insert(rule.name.as_str()) {
                return Err(format!("rule name '{}' is used twice", rule.name));
            }
        }
        Ok(Policy {
            version: raw.version,
            default: raw.default,
            rules: raw.rules,
        })
    }
}

/// Only `deny` exists: Custody never allows what no rule names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    #[default]
    Deny,
}

/// One allow rule: every listed condition must hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawRule")]
pub struct Rule {
    pub name: String,
    pub callers: Vec<CallerPattern>,
    pub methods: Vec<MethodPattern>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<NamePattern>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<NamePattern>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<NamePattern>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    callers: Vec<CallerPattern>,
    methods: Vec<MethodPattern>,
    #[serde(default)]
    tools: Vec<NamePattern>,
    #[serde(default)]
    resources: Vec<NamePattern>,
    #[serde(default)]
    prompts: Vec<NamePattern>,
}

impl TryFrom<RawRule> for Rule {
    type Error = String;
    fn try_from(r: RawRule) -> Result<Self, String> {
        let name_ok = !r.name.is_empty()
            && r.name.len() <= 128
            && r.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(format!(
                "rule name '{}' must be 1-128 characters of [A-Za-z0-9._-]",
                r.name
            ));
        }
        if r.callers.is_empty() {
            return Err(format!("rule '{}' lists no callers", r.name));
        }
        if r.methods.is_empty() {
            return Err(format!("rule '{}' lists no methods", r.name));
        }
        Ok(Rule {
            name: r.name,
            callers: r.callers,
            methods: r.methods,
            tools: r.tools,
            resources: r.resources,
            prompts: r.prompts,
        })
    }
}

impl Rule {
    fn matches(&self, req: &Request) -> bool {
        self.callers
            .iter()
            .any(|c| c.0.matches(req.caller.as_str()))
            && self.methods.iter().any(|m| m.0.matches(req.method))
            && self.matches_target(req.target)
    }

    /// A rule without target lists covers every target of its methods. A rule
    /// with target lists covers only requests whose target is of a listed kind
    /// and matches; a request with no target never matches such a rule.
    fn matches_target(&self, target: Option<&Target>) -> bool {
        if self.tools.is_empty() && self.resources.is_empty() && self.prompts.is_empty() {
            return true;
        }
        let (list, name) = match target {
            None => return false,
            Some(Target::Tool(n)) => (&self.tools, n),
            Some(Target::Resource(n)) => (&self.resources, n),
            Some(Target::Prompt(n)) => (&self.prompts, n),
        };
        list.iter().any(|p| p.0.matches(name))
    }
}

/// What the rules are matched against.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub caller: &'a SpiffeId,
    /// JSON-RPC method, or a pseudo-method (`http:GET`, `http:DELETE`, `jsonrpc:response`).
    pub method: &'a str,
    pub target: Option<&'a Target>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'p> {
    Allow { rule: &'p str },
    Deny { reason: Reason },
}

impl Policy {
    /// The first rule that matches allows; no match denies (`no_rule`).
    pub fn evaluate(&self, req: &Request) -> Verdict<'_> {
        match self.rules.iter().find(|r| r.matches(req)) {
            Some(rule) => Verdict::Allow { rule: &rule.name },
            None => Verdict::Deny {
                reason: Reason::NoRule,
            },
        }
    }
}

/// A SPIFFE ID pattern: a literal trust domain, `*`/`**` only in the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CallerPattern(Glob);

impl TryFrom<String> for CallerPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        custody_spiffe::check(&s, true)
            .map_err(|e| format!("caller '{s}' is not a SPIFFE ID pattern: {e}"))?;
        Glob::new(&s)
            .map(Self)
            .map_err(|e| format!("caller '{s}': {e}"))
    }
}

/// An MCP method pattern, e.g. `tools/call`, `notifications/*`, `http:GET`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MethodPattern(Glob);

impl TryFrom<String> for MethodPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.' | b':' | b'*')
        });
        if !ok {
            return Err(format!("method '{s}' may only contain [A-Za-z0-9/_.:*-]"));
        }
        Glob::new(&s)
            .map(Self)
            .map_err(|e| format!("method '{s}': {e}"))
    }
}

/// A tool name, prompt name or resource URI pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NamePattern(Glob);

impl TryFrom<String> for NamePattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.chars().any(char::is_control) {
            return Err(format!("pattern {s:?} contains a control character"));
        }
        Glob::new(&s)
            .map(Self)
            .map_err(|e| format!("pattern '{s}': {e}"))
    }
}

macro_rules! pattern_into_string {
    ($($t:ty),*) => {$(
        impl From<$t> for String {
            fn from(p: $t) -> String {
                p.0.as_str().to_owned()
            }
        }
    )*};
}
pattern_into_string!(CallerPattern, MethodPattern, NamePattern);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy(v: serde_json::Value) -> Result<Policy, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    fn sample() -> Policy {
        policy(json!({"rules": [
            {"name": "lifecycle", "callers": ["spiffe://example.org/**"],
             "methods": ["initialize", "ping", "notifications/*", "tools/list", "http:GET", "http:DELETE"]},
            {"name": "refunds", "callers": ["spiffe://example.org/ns/payments/sa/refund-*"],
             "methods": ["tools/call"], "tools": ["refund_*", "lookup"]},
            {"name": "docs", "callers": ["spiffe://example.org/ns/docs/sa/reader"],
             "methods": ["resources/read", "prompts/get"], "resources": ["file:///docs/**"], "prompts": ["summarise"]}
        ]}))
        .unwrap()
    }

    fn decide(p: &Policy, caller: &str, method: &str, target: Option<Target>) -> Verdict<'static> {
        let caller = SpiffeId::parse(caller).unwrap();
        let req = Request {
            caller: &caller,
            method,
            target: target.as_ref(),
        };
        match p.evaluate(&req) {
            Verdict::Allow { rule } => Verdict::Allow {
                rule: Box::leak(rule.to_owned().into_boxed_str()),
            },
            Verdict::Deny { reason } => Verdict::Deny { reason },
        }
    }

    const DENY: Verdict<'static> = Verdict::Deny {
        reason: Reason::NoRule,
    };

    #[test]
    fn first_matching_rule_allows() {
        let p = sample();
        let refund = "spiffe://example.org/ns/payments/sa/refund-agent";
        assert_eq!(
            decide(&p, refund, "ping", None),
            Verdict::Allow { rule: "lifecycle" }
        );
        assert_eq!(
            decide(&p, refund, "http:GET", None),
            Verdict::Allow { rule: "lifecycle" }
        );
        assert_eq!(
            decide(
                &p,
                refund,
                "tools/call",
                Some(Target::Tool("refund_card".into()))
            ),
            Verdict::Allow { rule: "refunds" }
        );
        let reader = "spiffe://example.org/ns/docs/sa/reader";
        assert_eq!(
            decide(
                &p,
                reader,
                "resources/read",
                Some(Target::Resource("file:///docs/a/b.md".into()))
            ),
            Verdict::Allow { rule: "docs" }
        );
        assert_eq!(
            decide(
                &p,
                reader,
                "prompts/get",
                Some(Target::Prompt("summarise".into()))
            ),
            Verdict::Allow { rule: "docs" }
        );
    }

    #[test]
    fn everything_else_is_denied() {
        let p = sample();
        let refund = "spiffe://example.org/ns/payments/sa/refund-agent";
        assert_eq!(
            decide(
                &p,
                refund,
                "tools/call",
                Some(Target::Tool("delete_all".into()))
            ),
            DENY
        );
        assert_eq!(
            decide(
                &p,
                refund,
                "tools/call",
                Some(Target::Prompt("refund_card".into()))
            ),
            DENY
        );
        assert_eq!(decide(&p, refund, "resources/list", None), DENY);
        assert_eq!(
            decide(
                &p,
                "spiffe://example.org.evil/ns/payments/sa/refund-agent",
                "ping",
                None
            ),
            DENY
        );
        assert_eq!(
            decide(
                &p,
                "spiffe://other.org/ns/payments/sa/refund-agent",
                "ping",
                None
            ),
            DENY
        );
        assert_eq!(
            decide(
                &p,
                "spiffe://example.org/ns/payments/sa/refund-agent/x",
                "tools/call",
                Some(Target::Tool("lookup".into()))
            ),
            DENY
        );
        let reader = "spiffe://example.org/ns/docs/sa/reader";
        assert_eq!(
            decide(
                &p,
                reader,
                "resources/read",
                Some(Target::Resource("file:///etc/passwd".into()))
            ),
            DENY
        );
        // A rule with target lists never matches a request without a target.
        assert_eq!(decide(&p, reader, "resources/read", None), DENY);
        let empty = policy(json!({"rules": []})).unwrap();
        assert_eq!(decide(&empty, refund, "ping", None), DENY);
    }

    #[test]
    fn refuses_invalid_policies_with_a_reason() {
        let cases = [
            (
                json!({"rules": [{"name": "a", "callers": ["spiffe://Example.org/x"], "methods": ["ping"]}]}),
                "trust domain",
            ),
            (
                json!({"rules": [{"name": "a", "callers": ["spiffe://example.*/x"], "methods": ["ping"]}]}),
                "trust domain",
            ),
            (
                json!({"rules": [{"name": "a", "callers": ["example.org/x"], "methods": ["ping"]}]}),
                "spiffe://",
            ),
            (
                json!({"rules": [{"name": "a", "callers": ["spiffe://example.org/a**"], "methods": ["ping"]}]}),
                "whole path segment",
            ),
            (
                json!({"rules": [{"name": "a", "callers": [], "methods": ["ping"]}]}),
                "no callers",
            ),
            (
                json!({"rules": [{"name": "a", "callers": ["spiffe://example.org/x"], "methods": []}]}),
                "no methods",
            ),
            (
                json!({"rules": [{"name": "a", "callers": ["spiffe://example.org/x"], "methods": ["to ols"]}]}),
                "may only contain",
            ),
            (
                json!({"rules": [{"name": "a", "callers": ["spiffe://example.org/x"], "methods": ["ping"], "tool": ["x"]}]}),
                "unknown field",
            ),
            (
                json!({"rules": [{"name": "a", "callers": ["spiffe://example.org/x"], "methods": ["ping"], "tools": [""]}]}),
                "empty pattern",
            ),
            (
                json!({"rules": [{"name": "a b", "callers": ["spiffe://example.org/x"], "methods": ["ping"]}]}),
                "rule name",
            ),
            (
                json!({"rules": [{"name": "a", "callers": ["spiffe://example.org/x"], "methods": ["ping"]},
                              {"name": "a", "callers": ["spiffe://example.org/y"], "methods": ["ping"]}]}),
                "used twice",
            ),
            (json!({"default": "allow", "rules": []}), "unknown variant"),
            (json!({"version": 2, "rules": []}), "not supported"),
            (json!({"rules": [], "extra": 1}), "unknown field"),
        ];
        for (input, want) in cases {
            let err = policy(input.clone()).unwrap_err();
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn round_trips_through_the_bundle_json() {
        let p = sample();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["default"], "deny");
        let again: Policy = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&again).unwrap(), json);
    }
}
