//! Declarative rules, deny by default. The same types read the people-facing
//! YAML (in `custody policy compile`) and the compiled JSON bundle (in the
//! filter), so both apply exactly the same validation: a pattern that would
//! not compile ahead of time is also refused at load time.

use crate::call::CALL_METHODS;
use crate::glob::Glob;
use crate::input::InputSource;
use crate::mcp::Target;
use crate::reason::Reason;
use crate::rego::{RegoModules, RegoOutcome, RegoRule};
use crate::SpiffeId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
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
    /// Rego modules by file name, for rules that name a `rego` rule.
    #[serde(default, skip_serializing_if = "RegoModules::is_empty")]
    pub modules: RegoModules,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default = "bundle_version")]
    version: u32,
    #[serde(default)]
    default: DefaultAction,
    rules: Vec<Rule>,
    #[serde(default)]
    modules: RegoModules,
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
            modules: raw.modules,
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
    /// Steps the verified workflow history must show.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<Requirement>,
    /// A Rego rule (e.g. `data.payments.refund.allow`) that must be `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rego: Option<RegoRule>,
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
    #[serde(default)]
    require: Vec<Requirement>,
    #[serde(default)]
    rego: Option<RegoRule>,
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
        // A bound approval names one call: only rules for calls can check it.
        let binds = r.require.iter().any(|q| q.binds.is_some());
        if let Some(m) = r
            .methods
            .iter()
            .find(|m| binds && !CALL_METHODS.contains(&m.0.as_str()))
        {
            return Err(format!(
                "rule '{}' has a `binds: call` clause, so its methods must each be one of {}; '{}' is not",
                r.name,
                CALL_METHODS.join(", "),
                m.0.as_str()
            ));
        }
        Ok(Rule {
            name: r.name,
            callers: r.callers,
            methods: r.methods,
            tools: r.tools,
            resources: r.resources,
            prompts: r.prompts,
            require: r.require,
            rego: r.rego,
        })
    }
}

impl Rule {
    /// Caller, method and target: whether this rule is about this request at all.
    pub(crate) fn applies_to(&self, req: &Query) -> bool {
        self.matches_caller(req.caller)
            && self.matches_method(req.method)
            && self.matches_target(req.target)
    }

    pub(crate) fn matches_caller(&self, caller: &SpiffeId) -> bool {
        self.callers.iter().any(|c| c.0.matches(caller.as_str()))
    }

    pub(crate) fn matches_method(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m.0.matches(method))
    }

    /// Every `require` clause met by some verified history step.
    pub(crate) fn requirements_met(&self, req: &Query) -> Result<(), Reason> {
        self.require
            .iter()
            .try_for_each(|r| r.met_by(req).map(|_| ()))
    }

    /// A rule without target lists covers every target of its methods. A rule
    /// with target lists covers only requests whose target is of a listed kind
    /// and matches; a request with no target never matches such a rule.
    pub(crate) fn matches_target(&self, target: Option<&Target>) -> bool {
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

impl Rule {
    /// Whether this rule covers `target` (caller and method checked apart).
    pub fn covers(&self, target: &Target) -> bool {
        self.matches_target(Some(target))
    }

    /// Whether this rule covers every URI an RFC 6570 `uriTemplate` can
    /// expand to (failing toward hiding): a rule without target lists covers
    /// all; a template without `{` is a URI; otherwise a resource pattern
    /// `<literal prefix>/**` covers it when the template's text before its
    /// first `{` starts with that prefix (every expansion then does too).
    pub fn covers_template(&self, template: &str) -> bool {
        if self.tools.is_empty() && self.resources.is_empty() && self.prompts.is_empty() {
            return true;
        }
        let Some(brace) = template.find('{') else {
            return !crate::mcp::uri_climbs(template)
                && self.covers(&Target::Resource(template.to_owned()));
        };
        let literal = &template[..brace];
        !crate::mcp::uri_climbs(literal)
            && self.resources.iter().any(|p| {
                p.0.as_str().strip_suffix("**").is_some_and(|prefix| {
                    // `**` alone matches every URI.
                    prefix.is_empty()
                        || (prefix.ends_with('/')
                            && !prefix.contains('*')
                            && literal.starts_with(prefix))
                })
            })
    }
}

impl Policy {
    /// The rules that may allow `caller` to call `method`, whatever the
    /// target (their `require` and `rego` are not looked at: they depend on
    /// a future request's history). List filtering keeps an item if one of
    /// them covers it.
    pub fn rules_for<'p>(&'p self, caller: &SpiffeId, method: &str) -> Vec<&'p Rule> {
        self.rules
            .iter()
            .filter(|r| {
                r.callers.iter().any(|c| c.0.matches(caller.as_str()))
                    && r.methods.iter().any(|m| m.0.matches(method))
            })
            .collect()
    }
}

/// What the rules are matched against.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub caller: &'a SpiffeId,
    /// JSON-RPC method, or a pseudo-method (`http:GET`, `http:DELETE`, `jsonrpc:response`).
    pub method: &'a str,
    pub target: Option<&'a Target>,
    /// The verified workflow history, oldest first (empty without one).
    pub history: &'a [Step<'a>],
    /// Unix time, seconds.
    pub now: u64,
    /// The Rego input document (when the policy has Rego rules), built by
    /// the first rule with `rego` that asks for it.
    pub input: Option<&'a dyn InputSource>,
    /// The request's call claim ([`crate::call::claim`]), computed when the
    /// policy has `binds: call` clauses; `None` if it is not a call or its
    /// arguments cannot be bound.
    pub call: Option<&'a Value>,
}

/// One verified history entry, as rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step<'a> {
    pub step: &'a str,
    pub result: &'a str,
    /// The SPIFFE ID that signed the entry.
    pub signer: &'a str,
    pub iat: u64,
    /// The entry's `claims.call`, if any.
    pub call: Option<&'a Value>,
}

/// A `require` clause: some verified entry must have this `step`, be signed
/// by a workload matching `by`, carry `result` (default `approved`; `"*"` for
/// any) and, with `within`, be at most that old.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub step: StepName,
    pub by: Vec<CallerPattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Within>,
    #[serde(default = "approved")]
    pub result: String,
    /// The entry that meets this clause authorises one request (per Envoy, or
    /// across replicas with the etcd ledger; see `crate::ledger`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_use: bool,
    /// `call`: the entry's `claims.call` must equal the request's call claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binds: Option<Binds>,
}

fn approved() -> String {
    "approved".to_owned()
}

/// What a `require` clause's entry is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Binds {
    /// The exact call: tool, prompt or resource, and the hash of its arguments.
    Call,
}

impl Requirement {
    /// The index of the first (oldest) step that meets the clause. When
    /// none does, the most specific reason: a step bound to another call
    /// (`step_call_mismatch`), too old (`stale_step`), with another result
    /// (`step_result`), by the wrong signer (`step_signer`), or absent
    /// (`missing_step`).
    pub(crate) fn met_by(&self, req: &Query) -> Result<usize, Reason> {
        let mut closest = Reason::MissingStep;
        for (i, s) in req
            .history
            .iter()
            .enumerate()
            .filter(|(_, s)| s.step == self.step.0)
        {
            let reason = if !self.by.iter().any(|p| p.0.matches(s.signer)) {
                Reason::StepSigner
            } else if self.result != "*" && s.result != self.result {
                Reason::StepResult
            } else if self
                .within
                .is_some_and(|w| req.now.saturating_sub(s.iat) > w.0)
            {
                Reason::StaleStep
            } else if self.binds == Some(Binds::Call) && !same_call(s.call, req.call) {
                Reason::StepCallMismatch
            } else {
                return Ok(i);
            };
            if closeness(reason) > closeness(closest) {
                closest = reason;
            }
        }
        Err(closest)
    }
}

/// An entry's `claims.call` names the request's call: equal JSON values
/// (members in any order), and the request is a call that can be bound.
fn same_call(entry: Option<&Value>, request: Option<&Value>) -> bool {
    matches!((entry, request), (Some(e), Some(r)) if e == r)
}

/// How near an unmet clause came to being met, to report the most telling reason.
fn closeness(reason: Reason) -> u8 {
    match reason {
        Reason::StepSigner => 1,
        Reason::StepResult => 2,
        Reason::StaleStep => 3,
        Reason::StepCallMismatch => 4,
        _ => 0,
    }
}

/// A step name: 1-128 characters of `[A-Za-z0-9._:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StepName(String);

impl TryFrom<String> for StepName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if !ok {
            return Err(format!(
                "step '{s}' must be 1-128 characters of [A-Za-z0-9._:-]"
            ));
        }
        Ok(StepName(s))
    }
}

impl StepName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<StepName> for String {
    fn from(s: StepName) -> String {
        s.0
    }
}

/// A `within` bound: a duration in Custody's one grammar ([`crate::duration`],
/// e.g. `45s`, `30m`, `1h30m`, `1d`), at least one second, at most 30 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Within(pub u64);

impl TryFrom<String> for Within {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let secs = crate::duration::parse(&s)?;
        if !(1..=30 * 86400).contains(&secs) {
            return Err(format!("duration '{s}' must be between 1s and 30d"));
        }
        Ok(Within(secs))
    }
}

impl From<Within> for String {
    fn from(d: Within) -> String {
        crate::duration::format(d.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'p> {
    Allow { rule: &'p str },
    Deny { reason: Reason },
}

impl Policy {
    /// The first rule that applies to the request and whose requirements are
    /// met allows it. Otherwise it is denied with the reason of the closest
    /// rule: the first that applied (e.g. `missing_step`), else `no_rule`.
    /// [`Policy::decide`](crate::explain) also says which rule and why.
    pub fn evaluate(&self, req: &Query) -> Verdict<'_> {
        self.decide(req).verdict
    }

    /// A rule's `rego`, if any, evaluated over the input document
    /// (`None`: the rule names none).
    pub(crate) fn rego_outcome(&self, rule: &Rule, req: &Query) -> Option<RegoOutcome> {
        let name = rule.rego.as_ref()?;
        Some(match req.input {
            Some(input) => self.modules.eval(name, input.document()),
            None => RegoOutcome::Error("no input document was built".into()),
        })
    }

    /// The history steps that rule `name`'s `single_use` clauses consume
    /// when it allows `req` (the same steps that met them).
    pub fn single_use_steps(&self, name: &str, req: &Query) -> Vec<usize> {
        let Some(rule) = self.rules.iter().find(|r| r.name == name) else {
            return Vec::new();
        };
        rule.require
            .iter()
            .filter(|r| r.single_use)
            .filter_map(|r| r.met_by(req).ok())
            .collect()
    }

    /// Whether any `require` clause binds the call (so the request's call
    /// claim must be computed).
    pub fn binds_calls(&self) -> bool {
        self.rules
            .iter()
            .flat_map(|r| &r.require)
            .any(|q| q.binds.is_some())
    }

    /// Prepares the Rego engine for every rule that names one.
    pub fn prepare_rego(&mut self) {
        let rules: Vec<RegoRule> = self.rules.iter().filter_map(|r| r.rego.clone()).collect();
        for rule in &rules {
            self.modules.prepare(rule);
        }
    }

    /// Rules whose `rego` runs on regorus's interpreter after [`Policy::prepare_rego`]
    /// (the RVM compiler refused it): correct, but several times slower.
    pub fn interpreted_rego(&self) -> Vec<&str> {
        self.rules
            .iter()
            .filter(|r| r.rego.as_ref().is_some_and(|g| !self.modules.compiled(g)))
            .map(|r| r.name.as_str())
            .collect()
    }

    /// Whether any rule evaluates Rego (so the input document is needed).
    pub fn uses_rego(&self) -> bool {
        self.rules.iter().any(|r| r.rego.is_some())
    }

    /// Every rule's `rego` names a rule of the policy's modules.
    pub fn check_rego(&self) -> Result<(), String> {
        self.rules
            .iter()
            .filter_map(|r| r.rego.as_ref().map(|g| (r, g)))
            .try_for_each(|(rule, g)| {
                self.modules
                    .check_rule(g)
                    .map_err(|e| format!("rule '{}': {e}", rule.name))
            })
    }
}

/// Declares a glob pattern type read from a string: `check` refuses what
/// this kind of pattern may not contain, then the glob itself is parsed.
macro_rules! glob_pattern {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Glob);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(&s)?;
                Glob::new(&s)
                    .map(Self)
                    .map_err(|e| format!("{} '{s}': {e}", $kind))
            }
        }

        impl From<$name> for String {
            fn from(p: $name) -> String {
                p.0.as_str().to_owned()
            }
        }
    };
}

glob_pattern!(
    /// A SPIFFE ID pattern: a literal trust domain, `*`/`**` only in the path.
    CallerPattern,
    "caller",
    |s| {
        custody_spiffe::check(s, true)
            .map(drop)
            .map_err(|e| format!("caller '{s}' is not a SPIFFE ID pattern: {e}"))
    }
);

glob_pattern!(
    /// An MCP method pattern, e.g. `tools/call`, `notifications/*`, `http:GET`.
    MethodPattern,
    "method",
    |s| {
        let ok = s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.' | b':' | b'*')
        });
        match ok {
            true => Ok(()),
            false => Err(format!("method '{s}' may only contain [A-Za-z0-9/_.:*-]")),
        }
    }
);

glob_pattern!(
    /// A tool name, prompt name or resource URI pattern.
    NamePattern,
    "pattern",
    |s| match s.chars().any(char::is_control) {
        true => Err(format!("pattern {s:?} contains a control character")),
        false => Ok(()),
    }
);

#[cfg(test)]
pub(crate) mod tests {
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
        let req = Query {
            caller: &caller,
            method,
            target: target.as_ref(),
            history: &[],
            now: 0,
            input: None,
            call: None,
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

    fn refund_policy() -> Policy {
        policy(json!({"rules": [
            {"name": "refunds", "callers": ["spiffe://example.org/ns/payments/sa/refund-agent"],
             "methods": ["tools/call"], "tools": ["refund"],
             "require": [
                {"step": "fraud_check_passed", "by": ["spiffe://example.org/ns/payments/sa/fraud-*"]},
                {"step": "human_approval", "by": ["spiffe://example.org/ns/payments/sa/approvals"], "within": "30m"}
             ]}
        ]}))
        .unwrap()
    }

    const FRAUD: &str = "spiffe://example.org/ns/payments/sa/fraud-agent";
    const APPROVALS: &str = "spiffe://example.org/ns/payments/sa/approvals";

    /// A verified entry without `claims.call` (also used by explain's tests).
    pub(crate) fn step<'a>(step: &'a str, signer: &'a str, result: &'a str, iat: u64) -> Step<'a> {
        Step {
            step,
            result,
            signer,
            iat,
            call: None,
        }
    }

    /// The refund agent calls `tools/call refund` with no call to bind.
    fn with_history(p: &Policy, history: &[Step], now: u64) -> Result<String, Reason> {
        bound(p, history, None, now)
    }

    #[test]
    fn requirements_must_all_be_met_by_verified_steps() {
        let p = refund_policy();
        let now = 10_000;
        let fraud = step("fraud_check_passed", FRAUD, "approved", now - 100);
        let approval = step("human_approval", APPROVALS, "approved", now - 60);
        assert_eq!(
            with_history(&p, &[fraud, approval], now),
            Ok("refunds".into())
        );
        assert_eq!(with_history(&p, &[], now), Err(Reason::MissingStep));
        assert_eq!(with_history(&p, &[fraud], now), Err(Reason::MissingStep));
        assert_eq!(with_history(&p, &[approval], now), Err(Reason::MissingStep));
    }

    #[test]
    fn unmet_requirements_say_how_close_they_came() {
        let p = refund_policy();
        let now = 10_000;
        let fraud = step("fraud_check_passed", FRAUD, "approved", now - 100);
        let forged = step("human_approval", FRAUD, "approved", now - 60);
        assert_eq!(
            with_history(&p, &[fraud, forged], now),
            Err(Reason::StepSigner)
        );
        let rejected = step("human_approval", APPROVALS, "rejected", now - 60);
        assert_eq!(
            with_history(&p, &[fraud, rejected], now),
            Err(Reason::StepResult)
        );
        let old = step("human_approval", APPROVALS, "approved", now - 1801);
        assert_eq!(with_history(&p, &[fraud, old], now), Err(Reason::StaleStep));
        let just_in_time = step("human_approval", APPROVALS, "approved", now - 1800);
        assert_eq!(
            with_history(&p, &[fraud, just_in_time], now),
            Ok("refunds".into())
        );
        // One good entry among bad ones is enough.
        let good = step("human_approval", APPROVALS, "approved", now - 5);
        assert_eq!(
            with_history(&p, &[fraud, old, forged, good], now),
            Ok("refunds".into())
        );
    }

    #[test]
    fn result_star_accepts_any_result() {
        let p = policy(json!({"rules": [
            {"name": "r", "callers": ["spiffe://example.org/ns/payments/sa/refund-agent"], "methods": ["tools/call"],
             "require": [{"step": "review", "by": ["spiffe://example.org/**"], "result": "*"}]}
        ]}))
        .unwrap();
        let s = step("review", FRAUD, "needs-work", 0);
        assert_eq!(with_history(&p, &[s], 5), Ok("r".into()));
    }

    fn bound_policy(single_use: bool) -> Policy {
        policy(json!({"rules": [
            {"name": "refunds", "callers": ["spiffe://example.org/ns/payments/sa/refund-agent"],
             "methods": ["tools/call"], "tools": ["refund"],
             "require": [{"step": "human_approval", "by": [APPROVALS], "within": "30m",
                          "binds": "call", "single_use": single_use}]}
        ]}))
        .unwrap()
    }

    /// The refund agent calls `tools/call refund`, its arguments' digest being `call`.
    fn bound(
        p: &Policy,
        history: &[Step],
        call: Option<&Value>,
        now: u64,
    ) -> Result<String, Reason> {
        let caller = SpiffeId::parse("spiffe://example.org/ns/payments/sa/refund-agent").unwrap();
        let target = Target::Tool("refund".into());
        let req = Query {
            caller: &caller,
            method: "tools/call",
            target: Some(&target),
            history,
            now,
            input: None,
            call,
        };
        match p.evaluate(&req) {
            Verdict::Allow { rule } => Ok(rule.to_owned()),
            Verdict::Deny { reason } => Err(reason),
        }
    }

    #[test]
    fn a_bound_clause_is_met_only_by_an_entry_naming_this_call() {
        let p = bound_policy(false);
        let now = 10_000;
        let o1 = json!({"tool": "refund", "args_sha256": "o-1"});
        let o2 = json!({"tool": "refund", "args_sha256": "o-2"});
        let mut approval = step("human_approval", APPROVALS, "approved", now - 60);
        approval.call = Some(&o1);
        assert_eq!(bound(&p, &[approval], Some(&o1), now), Ok("refunds".into()));
        // The same approval for another call, or for a request that is not a bindable call.
        assert_eq!(
            bound(&p, &[approval], Some(&o2), now),
            Err(Reason::StepCallMismatch)
        );
        assert_eq!(
            bound(&p, &[approval], None, now),
            Err(Reason::StepCallMismatch)
        );
        // An approval without a call claim binds nothing.
        let unbound = step("human_approval", APPROVALS, "approved", now - 60);
        assert_eq!(
            bound(&p, &[unbound], Some(&o1), now),
            Err(Reason::StepCallMismatch)
        );
        // Extra members, or another kind with the same name, are another call.
        let extra = json!({"tool": "refund", "args_sha256": "o-1", "note": "x"});
        let prompt = json!({"prompt": "refund", "args_sha256": "o-1"});
        for other in [&extra, &prompt] {
            let mut a = approval;
            a.call = Some(other);
            assert_eq!(
                bound(&p, &[a], Some(&o1), now),
                Err(Reason::StepCallMismatch)
            );
        }
        // Without `binds`, the call claim is not looked at.
        assert_eq!(
            with_history(
                &refund_policy(),
                &[step("fraud_check_passed", FRAUD, "approved", now), approval],
                now
            ),
            Ok("refunds".into())
        );
    }

    #[test]
    fn among_several_approvals_the_oldest_naming_this_call_meets_the_clause() {
        let now = 10_000;
        let (o1, o2) = (
            json!({"tool": "refund", "args_sha256": "o-1"}),
            json!({"tool": "refund", "args_sha256": "o-2"}),
        );
        let mut first = step("human_approval", APPROVALS, "approved", now - 90);
        first.call = Some(&o1);
        let mut second = step("human_approval", APPROVALS, "approved", now - 60);
        second.call = Some(&o2);
        let mut stale_o2 = step("human_approval", APPROVALS, "approved", now - 4000);
        stale_o2.call = Some(&o2);
        let history = [stale_o2, first, second];
        let p = bound_policy(true);
        let caller = SpiffeId::parse("spiffe://example.org/ns/payments/sa/refund-agent").unwrap();
        let target = Target::Tool("refund".into());
        let req = |call| Query {
            caller: &caller,
            method: "tools/call",
            target: Some(&target),
            history: &history,
            now,
            input: None,
            call,
        };
        assert_eq!(p.single_use_steps("refunds", &req(Some(&o1))), vec![1]);
        assert_eq!(p.single_use_steps("refunds", &req(Some(&o2))), vec![2]);
        // A mismatch is closer than a stale entry: the reason says the approval was for another call.
        let mut old = stale_o2;
        old.call = Some(&o1);
        assert_eq!(
            bound(&p, &[old, second], Some(&o1), now),
            Err(Reason::StepCallMismatch)
        );
        assert_eq!(bound(&p, &[old], Some(&o1), now), Err(Reason::StaleStep));
    }

    #[test]
    fn binds_call_is_checked_when_the_policy_loads() {
        let rule = |methods: Value, binds: Value| {
            policy(
                json!({"rules": [{"name": "r", "callers": ["spiffe://example.org/x"], "methods": methods,
                "require": [{"step": "a", "by": ["spiffe://example.org/x"], "binds": binds}]}]}),
            )
        };
        assert!(rule(
            json!(["tools/call", "prompts/get", "resources/read"]),
            json!("call")
        )
        .is_ok());
        for (methods, binds, want) in [
            (
                json!(["tools/call", "ping"]),
                json!("call"),
                "'ping' is not",
            ),
            (json!(["tools/*"]), json!("call"), "'tools/*' is not"),
            (
                json!(["resources/subscribe"]),
                json!("call"),
                "must each be one of",
            ),
            (json!(["tools/call"]), json!("args"), "unknown variant"),
            (json!(["tools/call"]), json!(true), "invalid type"),
        ] {
            let err = rule(methods.clone(), binds.clone()).unwrap_err();
            assert!(err.contains(want), "{methods} {binds}: {err}");
        }
        let p = bound_policy(false);
        assert!(p.binds_calls());
        assert!(!refund_policy().binds_calls());
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["rules"][0]["require"][0]["binds"], "call");
        let again: Policy = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&again).unwrap(), json);
    }

    #[test]
    fn within_is_a_duration_of_one_second_to_thirty_days() {
        let d = |s: &str| Within::try_from(s.to_owned());
        assert_eq!(d("30m"), Ok(Within(1800)));
        assert_eq!(d("1h30m"), Ok(Within(5400)));
        assert_eq!(d("1d"), Ok(Within(86_400)));
        assert_eq!(d("30d"), Ok(Within(30 * 86_400)));
        assert_eq!(d("720h"), Ok(Within(30 * 86_400)));
        for bad in ["", "30", "30x", "0s", "721h", "30d1s", "-5m"] {
            assert!(d(bad).is_err(), "{bad}");
        }
        assert_eq!(String::from(Within(5400)), "1h30m");
        assert_eq!(String::from(Within(86_400)), "1d");
    }

    #[test]
    fn refuses_invalid_requirements() {
        for (req, want) in [
            (
                json!({"step": "", "by": ["spiffe://example.org/x"]}),
                "step",
            ),
            (
                json!({"step": "a b", "by": ["spiffe://example.org/x"]}),
                "step",
            ),
            (
                json!({"step": "a", "by": ["spiffe://example.org/x"], "within": "soon"}),
                "duration",
            ),
            (json!({"step": "a", "by": ["nope"]}), "spiffe://"),
            (json!({"step": "a"}), "missing field `by`"),
            (
                json!({"step": "a", "by": ["spiffe://example.org/x"], "sigle_use": true}),
                "unknown field",
            ),
        ] {
            let err = policy(json!({"rules": [{"name": "r", "callers": ["spiffe://example.org/x"], "methods": ["ping"], "require": [req.clone()]}]}))
                .unwrap_err();
            assert!(err.contains(want), "{req}: {err}");
        }
    }

    #[test]
    fn round_trips_through_the_bundle_json() {
        let p = sample();
        let json = serde_json::to_value(&p).unwrap();
        let refunds = serde_json::to_value(refund_policy()).unwrap();
        assert_eq!(refunds["rules"][0]["require"][1]["within"], "30m");
        assert_eq!(refunds["rules"][0]["require"][1]["result"], "approved");
        let again: Policy = serde_json::from_value(refunds.clone()).unwrap();
        assert_eq!(serde_json::to_value(&again).unwrap(), refunds);
        assert_eq!(json["version"], 1);
        assert_eq!(json["default"], "deny");
        let again: Policy = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&again).unwrap(), json);
    }
}
