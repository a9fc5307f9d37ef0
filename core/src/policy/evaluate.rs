//! A policy applied to one request: which rules apply to it, whether the
//! verified history meets their `require` clauses, and the verdict. Pure.
//! An unmet clause reports the entry that came closest ([`closeness`]).

use super::schema::{Policy, Requirement, Rule};
use super::values::Binds;
use crate::input::InputSource;
use crate::mcp::Target;
use crate::reason::Reason;
use crate::rego::RegoOutcome;
use crate::SpiffeId;
use serde_json::Value;

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
            .filter(|(_, s)| s.step == self.step.as_str())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::policy::fixtures::{
        bound_policy, policy, refund_policy, sample, step, APPROVALS, FRAUD,
    };
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

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

    const REFUND: &str = "spiffe://example.org/ns/payments/sa/refund-agent";
    const READER: &str = "spiffe://example.org/ns/docs/sa/reader";

    #[test]
    fn first_matching_rule_allows() {
        let p = sample();
        let cases = [
            (REFUND, "ping", None, "lifecycle"),
            (REFUND, "http:GET", None, "lifecycle"),
            (
                REFUND,
                "tools/call",
                Some(Target::Tool("refund_card".into())),
                "refunds",
            ),
            (
                READER,
                "resources/read",
                Some(Target::Resource("file:///docs/a/b.md".into())),
                "docs",
            ),
            (
                READER,
                "prompts/get",
                Some(Target::Prompt("summarise".into())),
                "docs",
            ),
        ];
        for (caller, method, target, rule) in cases {
            let why = format!("{caller} {method} {target:?}");
            assert_eq!(
                decide(&p, caller, method, target),
                Verdict::Allow { rule },
                "{why}"
            );
        }
    }

    #[test]
    fn everything_else_is_denied() {
        let p = sample();
        let cases = [
            (
                REFUND,
                "tools/call",
                Some(Target::Tool("delete_all".into())),
            ),
            (
                REFUND,
                "tools/call",
                Some(Target::Prompt("refund_card".into())),
            ),
            (REFUND, "resources/list", None),
            (
                "spiffe://example.org.evil/ns/payments/sa/refund-agent",
                "ping",
                None,
            ),
            (
                "spiffe://other.org/ns/payments/sa/refund-agent",
                "ping",
                None,
            ),
            (
                "spiffe://example.org/ns/payments/sa/refund-agent/x",
                "tools/call",
                Some(Target::Tool("lookup".into())),
            ),
            (
                READER,
                "resources/read",
                Some(Target::Resource("file:///etc/passwd".into())),
            ),
            // A rule with target lists never matches a request without a target.
            (READER, "resources/read", None),
        ];
        for (caller, method, target) in cases {
            let why = format!("{caller} {method} {target:?}");
            assert_eq!(decide(&p, caller, method, target), DENY, "{why}");
        }
        let empty = policy(json!({"rules": []})).unwrap();
        assert_eq!(decide(&empty, REFUND, "ping", None), DENY);
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
}
