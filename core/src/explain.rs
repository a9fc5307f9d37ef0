//! Why a policy decided as it did: the closest rule and what it lacked, for
//! the decision log, the audit header and `custody policy eval --explain`.
//! Pure. On the filter's path the explanation is built only for denials; an
//! allowed request costs nothing more than [`Policy::evaluate`].
//!
//! The closest rule (docs/policy.md, "Closest rule"): the first rule that
//! applies to the request (caller, method and target), whose first unmet
//! `require` clause or Rego verdict is the reason; if none applies
//! (`no_rule`), the first rule that lists the method and misses only one of
//! caller and target, else the first that lists the method, else none.

use crate::mcp::Target;
use crate::policy::{Policy, Query, Requirement, Rule, Step, Verdict};
use crate::reason::Reason;
use crate::rego::RegoOutcome;

/// A decision with its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<'p> {
    pub verdict: Verdict<'p>,
    /// For a denial: the closest rule, if any.
    pub closest: Option<&'p str>,
    /// For a denial: what the closest rule lacked.
    pub why: Option<Why>,
}

/// What a denial's closest rule lacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// No rule lists the request's method.
    NoRuleForMethod { method: String },
    /// The closest rule lists the method but does not cover the caller
    /// (`caller`) and/or the request's target (`target`: what the request
    /// named, `None` when it named none).
    NotCovered {
        caller: bool,
        target: Option<Option<Target>>,
    },
    /// A `require` clause is unmet.
    Step { step: String, unmet: Unmet },
    /// The rule's Rego rule did not evaluate to `true`.
    Rego { rule: String, outcome: RegoOutcome },
}

/// How close the history came to meeting a `require` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    /// No verified entry has the step.
    Missing,
    /// Only these workloads signed it, and `by` accepts none of them.
    Signer { signers: Vec<String> },
    /// An accepted workload signed it with result `got`; the clause wants `want`.
    Result { got: String, want: String },
    /// Signed by an accepted workload with the right result, `age` seconds
    /// ago (the youngest such entry), over the clause's `within`.
    Stale { age: u64, within: u64 },
    /// Its entries are bound to another call than this request's (`binds: call`).
    CallMismatch,
    /// Any other reason the clause gave.
    Other(Reason),
}

/// Signers named in one explanation, at most.
const MAX_SIGNERS_SHOWN: usize = 4;

impl Why {
    /// For the decision log: names what the request carried (never sent to the caller).
    pub fn log(&self) -> String {
        match self {
            Why::NoRuleForMethod { method } => format!("no rule lists method '{method}'"),
            Why::NotCovered { caller, target } => not_covered(*caller, target.as_ref(), true),
            Why::Step { step, unmet } => match unmet {
                Unmet::Signer { signers } => {
                    let mut shown = signers
                        .iter()
                        .take(MAX_SIGNERS_SHOWN)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ");
                    if signers.len() > MAX_SIGNERS_SHOWN {
                        shown.push_str(", …");
                    }
                    format!("{step} is signed only by {shown}, none of which its `by` accepts")
                }
                Unmet::Result { got, want } => {
                    format!("{step} has result '{got}', the rule requires '{want}'")
                }
                _ => self.public(),
            },
            Why::Rego { rule, outcome } => match outcome {
                RegoOutcome::Error(e) => format!("{rule} failed: {e}"),
                RegoOutcome::Denied(value) => format!("{rule} is {value}"),
                RegoOutcome::Allow => format!("{rule} is true"),
            },
        }
    }

    /// For the upstream's `x-custody-decision` in audit mode: only names and
    /// numbers the policy itself holds (no caller-supplied text, no Rego error).
    pub fn public(&self) -> String {
        match self {
            Why::NoRuleForMethod { .. } => "no rule lists the method".to_owned(),
            Why::NotCovered { caller, target } => not_covered(*caller, target.as_ref(), false),
            Why::Step { step, unmet } => match unmet {
                Unmet::Missing => format!("{step} is not in the verified history"),
                Unmet::Signer { .. } => {
                    format!("{step} is signed only by workloads its `by` does not accept")
                }
                Unmet::Result { want, .. } => format!("{step} has another result than '{want}'"),
                Unmet::Stale { age, within } => {
                    format!("{step} is {age} s old, within {within} s")
                }
                Unmet::CallMismatch => format!("{step} is bound to another call (binds: call)"),
                Unmet::Other(reason) => format!("{step}: {}", reason.code()),
            },
            Why::Rego { rule, outcome } => match outcome {
                RegoOutcome::Error(_) => format!("{rule} failed to evaluate"),
                _ => format!("{rule} is not true"),
            },
        }
    }
}

fn not_covered(caller: bool, target: Option<&Option<Target>>, named: bool) -> String {
    let mut parts = Vec::new();
    if caller {
        parts.push("the caller matches none of its callers".to_owned());
    }
    match target {
        None => {}
        Some(None) => parts.push("the request has no tool, resource or prompt".to_owned()),
        Some(Some(t)) if named => parts.push(format!(
            "{} '{}' matches none of its patterns",
            t.kind(),
            t.name()
        )),
        Some(Some(t)) => parts.push(format!("the {} matches none of its patterns", t.kind())),
    }
    parts.join(", and ")
}

impl<'p> Outcome<'p> {
    fn allow(rule: &'p str) -> Self {
        Outcome {
            verdict: Verdict::Allow { rule },
            closest: None,
            why: None,
        }
    }
}

impl Policy {
    /// [`Policy::evaluate`], with the closest rule and what it lacked when the
    /// request is denied.
    pub fn decide(&self, req: &Query) -> Outcome<'_> {
        let mut first: Option<(&Rule, Reason, Option<RegoOutcome>)> = None;
        for rule in self.rules.iter().filter(|r| r.applies_to(req)) {
            let (reason, rego) = match rule.requirements_met(req) {
                Err(reason) => (reason, None),
                Ok(()) => match self.rego_outcome(rule, req) {
                    None | Some(RegoOutcome::Allow) => return Outcome::allow(&rule.name),
                    Some(o @ RegoOutcome::Denied(_)) => (Reason::RegoDenied, Some(o)),
                    Some(o) => (Reason::RegoError, Some(o)),
                },
            };
            first.get_or_insert((rule, reason, rego));
        }
        let Some((rule, reason, rego)) = first else {
            return self.nearest(req);
        };
        let why = match (rego, &rule.rego) {
            (Some(outcome), Some(name)) => Some(Why::Rego {
                rule: name.as_str().to_owned(),
                outcome,
            }),
            _ => first_unmet(rule, req),
        };
        Outcome {
            verdict: Verdict::Deny { reason },
            closest: Some(&rule.name),
            why,
        }
    }

    /// `no_rule`: the rule that came nearest to applying.
    fn nearest(&self, req: &Query) -> Outcome<'_> {
        let listing = || self.rules.iter().filter(|r| r.matches_method(req.method));
        let misses = |r: &Rule| (!r.matches_caller(req.caller), !r.matches_target(req.target));
        let nearest = listing()
            .find(|r| matches!(misses(r), (true, false) | (false, true)))
            .or_else(|| listing().next());
        let why = match nearest {
            None => Why::NoRuleForMethod {
                method: req.method.to_owned(),
            },
            Some(rule) => {
                let (caller, target) = misses(rule);
                Why::NotCovered {
                    caller,
                    target: target.then(|| req.target.cloned()),
                }
            }
        };
        Outcome {
            verdict: Verdict::Deny {
                reason: Reason::NoRule,
            },
            closest: nearest.map(|r| r.name.as_str()),
            why: Some(why),
        }
    }

    /// Every rule's verdict on the request, in policy order, as the filter
    /// reaches it: caller, method and target; then (for a rule that applies)
    /// every `require` clause; then (when they are all met) its Rego rule.
    pub fn explain(&self, req: &Query) -> Vec<RuleReport> {
        self.rules
            .iter()
            .map(|rule| {
                let caller = rule.matches_caller(req.caller);
                let method = rule.matches_method(req.method);
                let target = rule.matches_target(req.target);
                let applies = caller && method && target;
                let require: Vec<ClauseReport> = if applies {
                    rule.require.iter().map(|r| clause_report(r, req)).collect()
                } else {
                    Vec::new()
                };
                let unmet = require.iter().find_map(|c| c.met.as_ref().err());
                let rego = match (&rule.rego, applies && unmet.is_none()) {
                    (None, _) => None,
                    (Some(name), evaluated) => Some(RegoReport {
                        rule: name.as_str().to_owned(),
                        outcome: evaluated.then(|| self.rego_outcome(rule, req)).flatten(),
                    }),
                };
                let verdict = if !applies {
                    Err(Reason::NoRule)
                } else if let Some((reason, _)) = unmet {
                    Err(*reason)
                } else {
                    match rego.as_ref().and_then(|r| r.outcome.as_ref()) {
                        Some(RegoOutcome::Denied(_)) => Err(Reason::RegoDenied),
                        Some(RegoOutcome::Error(_)) => Err(Reason::RegoError),
                        _ => Ok(()),
                    }
                };
                RuleReport {
                    name: rule.name.clone(),
                    caller,
                    method,
                    target,
                    require,
                    rego,
                    verdict,
                }
            })
            .collect()
    }
}

/// One rule's verdict, for `custody policy eval --explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleReport {
    pub name: String,
    /// Whether some `callers` pattern matches the caller.
    pub caller: bool,
    pub method: bool,
    pub target: bool,
    /// Each `require` clause (only for a rule that applies).
    pub require: Vec<ClauseReport>,
    /// The rule's Rego rule, if it names one; its outcome when it was evaluated.
    pub rego: Option<RegoReport>,
    /// `Ok` when this rule allows the request, else the reason it gives.
    pub verdict: Result<(), Reason>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClauseReport {
    pub step: String,
    /// The index of the history entry that meets it, or why none does.
    pub met: Result<usize, (Reason, Why)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegoReport {
    pub rule: String,
    /// `None`: not evaluated (the rule does not apply, or a clause is unmet).
    pub outcome: Option<RegoOutcome>,
}

fn clause_report(r: &Requirement, req: &Query) -> ClauseReport {
    let step = r.step.as_str().to_owned();
    let met = r.met_by(req).map_err(|reason| {
        let why = Why::Step {
            step: step.clone(),
            unmet: unmet(r, reason, req),
        };
        (reason, why)
    });
    ClauseReport { step, met }
}

/// The first `require` clause of `rule` the request's history does not meet.
fn first_unmet(rule: &Rule, req: &Query) -> Option<Why> {
    rule.require.iter().find_map(|r| {
        let reason = r.met_by(req).err()?;
        Some(Why::Step {
            step: r.step.as_str().to_owned(),
            unmet: unmet(r, reason, req),
        })
    })
}

/// The details of an unmet clause whose overall reason is `reason`: each
/// entry with the step is judged alone by the clause, and those that got
/// that reason say by how much.
fn unmet(r: &Requirement, reason: Reason, req: &Query) -> Unmet {
    let now = req.now;
    let alone = |s: &Step| {
        let one = Query {
            history: std::slice::from_ref(s),
            ..*req
        };
        r.met_by(&one) == Err(reason)
    };
    let candidates = req
        .history
        .iter()
        .filter(|s| s.step == r.step.as_str())
        .filter(|s| alone(s));
    match reason {
        Reason::MissingStep => Unmet::Missing,
        Reason::StepCallMismatch => Unmet::CallMismatch,
        Reason::StaleStep => match candidates.map(|s| now.saturating_sub(s.iat)).min() {
            Some(age) => Unmet::Stale {
                age,
                within: r.within.map_or(0, |w| w.0),
            },
            None => Unmet::Other(reason),
        },
        Reason::StepResult => match candidates.map(|s| s.result).next() {
            Some(got) => Unmet::Result {
                got: got.to_owned(),
                want: r.result.clone(),
            },
            None => Unmet::Other(reason),
        },
        Reason::StepSigner => {
            let mut signers: Vec<String> = Vec::new();
            for s in candidates {
                if !signers.iter().any(|seen| seen == s.signer) {
                    signers.push(s.signer.to_owned());
                }
            }
            Unmet::Signer { signers }
        }
        other => Unmet::Other(other),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::policy::fixtures::step;
    use crate::SpiffeId;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const AGENT: &str = "spiffe://example.org/ns/p/sa/agent";
    const APPROVALS: &str = "spiffe://example.org/ns/p/sa/approvals";
    const FRAUD: &str = "spiffe://example.org/ns/p/sa/fraud";

    fn policy() -> Policy {
        let mut p: Policy = serde_json::from_value(json!({"rules": [
            {"name": "lifecycle", "callers": ["spiffe://example.org/**"], "methods": ["initialize", "tools/list"]},
            {"name": "calculator", "callers": [AGENT], "methods": ["tools/call"], "tools": ["add"]},
            {"name": "refunds", "callers": [AGENT], "methods": ["tools/call"], "tools": ["refund"],
             "require": [
                {"step": "fraud_check", "by": [FRAUD]},
                {"step": "human_approval", "by": [APPROVALS], "within": "30m"}],
             "rego": "data.p.allow"}],
            "modules": {"p.rego": "package p\nimport rego.v1\nallow if input.amount <= 10\n"}}))
        .unwrap();
        p.prepare_rego();
        p
    }

    fn decide(
        p: &Policy,
        caller: &str,
        method: &str,
        target: Option<Target>,
        history: &[Step],
        input: serde_json::Value,
    ) -> (Verdict<'static>, Option<String>, Option<(String, String)>) {
        let caller = SpiffeId::parse(caller).unwrap();
        let input = regorus::Value::from(input);
        let req = Query {
            caller: &caller,
            method,
            target: target.as_ref(),
            history,
            now: 10_000,
            input: Some(&input),
            call: None,
        };
        let o = p.decide(&req);
        assert_eq!(o.verdict, p.evaluate(&req), "decide and evaluate agree");
        let verdict = match o.verdict {
            Verdict::Allow { rule } => Verdict::Allow {
                rule: Box::leak(rule.to_owned().into_boxed_str()),
            },
            Verdict::Deny { reason } => Verdict::Deny { reason },
        };
        (
            verdict,
            o.closest.map(str::to_owned),
            o.why.map(|w| (w.log(), w.public())),
        )
    }

    fn deny(reason: Reason) -> Verdict<'static> {
        Verdict::Deny { reason }
    }

    fn refund() -> Option<Target> {
        Some(Target::Tool("refund".into()))
    }

    #[test]
    fn an_allowed_request_has_no_explanation() {
        let p = policy();
        let (v, closest, why) = decide(&p, AGENT, "initialize", None, &[], json!({}));
        assert_eq!(v, Verdict::Allow { rule: "lifecycle" });
        assert_eq!((closest, why), (None, None));
    }

    #[test]
    fn a_missing_step_names_the_rule_and_the_step() {
        let p = policy();
        let fraud = step("fraud_check", FRAUD, "approved", 9_000);
        let (v, closest, why) = decide(&p, AGENT, "tools/call", refund(), &[fraud], json!({}));
        assert_eq!(v, deny(Reason::MissingStep));
        assert_eq!(closest.as_deref(), Some("refunds"));
        let (log, public) = why.unwrap();
        assert_eq!(log, "human_approval is not in the verified history");
        assert_eq!(public, log);
    }

    #[test]
    fn a_stale_step_says_by_how_much_of_the_youngest_entry() {
        let p = policy();
        let fraud = step("fraud_check", FRAUD, "approved", 9_000);
        let old = step("human_approval", APPROVALS, "approved", 10_000 - 3_000);
        let older = step("human_approval", APPROVALS, "approved", 10_000 - 1_860);
        let (v, _, why) = decide(
            &p,
            AGENT,
            "tools/call",
            refund(),
            &[fraud, old, older],
            json!({}),
        );
        assert_eq!(v, deny(Reason::StaleStep));
        let (log, public) = why.unwrap();
        assert_eq!(log, "human_approval is 1860 s old, within 1800 s");
        assert_eq!(public, log);
    }

    #[test]
    fn signer_and_result_are_named_in_the_log_only() {
        let p = policy();
        let fraud = step("fraud_check", FRAUD, "approved", 9_000);
        let forged = step("human_approval", AGENT, "approved", 9_900);
        let (v, _, why) = decide(
            &p,
            AGENT,
            "tools/call",
            refund(),
            &[fraud, forged],
            json!({}),
        );
        assert_eq!(v, deny(Reason::StepSigner));
        let (log, public) = why.unwrap();
        assert_eq!(
            log,
            format!("human_approval is signed only by {AGENT}, none of which its `by` accepts")
        );
        assert!(!public.contains("spiffe://"), "{public}");
        let rejected = step("human_approval", APPROVALS, "rejected", 9_900);
        let (v, _, why) = decide(
            &p,
            AGENT,
            "tools/call",
            refund(),
            &[fraud, rejected],
            json!({}),
        );
        assert_eq!(v, deny(Reason::StepResult));
        let (log, public) = why.unwrap();
        assert_eq!(
            log,
            "human_approval has result 'rejected', the rule requires 'approved'"
        );
        assert_eq!(public, "human_approval has another result than 'approved'");
    }

    #[test]
    fn rego_verdicts_and_errors_are_logged_and_errors_never_made_public() {
        let mut p = policy();
        let fraud = step("fraud_check", FRAUD, "approved", 9_000);
        let approval = step("human_approval", APPROVALS, "approved", 9_900);
        let history = [fraud, approval];
        let (v, _, _) = decide(
            &p,
            AGENT,
            "tools/call",
            refund(),
            &history,
            json!({"amount": 5}),
        );
        assert_eq!(v, Verdict::Allow { rule: "refunds" });
        let (v, closest, why) = decide(
            &p,
            AGENT,
            "tools/call",
            refund(),
            &history,
            json!({"amount": 50}),
        );
        assert_eq!(v, deny(Reason::RegoDenied));
        assert_eq!(closest.as_deref(), Some("refunds"));
        assert_eq!(
            why.unwrap(),
            (
                "data.p.allow is undefined".to_owned(),
                "data.p.allow is not true".to_owned()
            )
        );
        p.modules = serde_json::from_value(
            json!({"p.rego": "package p\nimport rego.v1\nallow if 1 / input.zero == 1\n"}),
        )
        .unwrap();
        let (v, _, why) = decide(
            &p,
            AGENT,
            "tools/call",
            refund(),
            &history,
            json!({"zero": 0}),
        );
        assert_eq!(v, deny(Reason::RegoError));
        let (log, public) = why.unwrap();
        assert!(
            log.starts_with("data.p.allow failed: ") && log.len() > 21,
            "{log}"
        );
        assert_eq!(public, "data.p.allow failed to evaluate");
    }

    #[test]
    fn no_rule_names_the_rule_that_came_nearest() {
        let p = policy();
        // calculator lists the method and the caller; only the tool is missing.
        let (v, closest, why) = decide(
            &p,
            AGENT,
            "tools/call",
            Some(Target::Tool("rm".into())),
            &[],
            json!({}),
        );
        assert_eq!(v, deny(Reason::NoRule));
        assert_eq!(closest.as_deref(), Some("calculator"));
        assert_eq!(
            why.unwrap(),
            (
                "tool 'rm' matches none of its patterns".to_owned(),
                "the tool matches none of its patterns".to_owned()
            )
        );
        // Another workload calling `add`: calculator covers the tool, not the caller.
        let intruder = "spiffe://example.org/ns/x/sa/intruder";
        let (_, closest, why) = decide(
            &p,
            intruder,
            "tools/call",
            Some(Target::Tool("add".into())),
            &[],
            json!({}),
        );
        assert_eq!(closest.as_deref(), Some("calculator"));
        assert_eq!(why.unwrap().0, "the caller matches none of its callers");
        // Neither caller nor tool: the first rule listing the method.
        let (_, closest, why) = decide(
            &p,
            intruder,
            "tools/call",
            Some(Target::Tool("rm".into())),
            &[],
            json!({}),
        );
        assert_eq!(closest.as_deref(), Some("calculator"));
        assert_eq!(
            why.unwrap().0,
            "the caller matches none of its callers, and tool 'rm' matches none of its patterns"
        );
        // No rule lists the method.
        let (_, closest, why) = decide(&p, AGENT, "ping", None, &[], json!({}));
        assert_eq!(closest, None);
        assert_eq!(
            why.unwrap(),
            (
                "no rule lists method 'ping'".to_owned(),
                "no rule lists the method".to_owned()
            )
        );
        // A rule with target lists and a request without a target.
        let (_, closest, why) = decide(&p, AGENT, "tools/call", None, &[], json!({}));
        assert_eq!(closest.as_deref(), Some("calculator"));
        assert_eq!(
            why.unwrap().0,
            "the request has no tool, resource or prompt"
        );
    }

    #[test]
    fn explain_reports_every_rule_as_the_filter_reaches_it() {
        let p = policy();
        let caller = SpiffeId::parse(AGENT).unwrap();
        let target = refund();
        let fraud = step("fraud_check", FRAUD, "approved", 9_000);
        let input = regorus::Value::from(json!({"amount": 50}));
        let req = Query {
            caller: &caller,
            method: "tools/call",
            target: target.as_ref(),
            history: &[fraud],
            now: 10_000,
            input: Some(&input),
            call: None,
        };
        let reports = p.explain(&req);
        assert_eq!(reports.len(), 3);
        assert_eq!(
            (reports[0].caller, reports[0].method, reports[0].target),
            (true, false, true)
        );
        assert_eq!(reports[0].verdict, Err(Reason::NoRule));
        assert!(reports[0].require.is_empty() && reports[0].rego.is_none());
        assert_eq!(
            (reports[1].caller, reports[1].method, reports[1].target),
            (true, true, false)
        );
        let refunds = &reports[2];
        assert_eq!(refunds.require[0].met, Ok(0));
        let (reason, why) = refunds.require[1].met.as_ref().unwrap_err();
        assert_eq!(*reason, Reason::MissingStep);
        assert_eq!(why.log(), "human_approval is not in the verified history");
        // Rego is not evaluated while a clause is unmet, as in the filter.
        assert_eq!(
            refunds.rego,
            Some(RegoReport {
                rule: "data.p.allow".into(),
                outcome: None
            })
        );
        assert_eq!(refunds.verdict, Err(Reason::MissingStep));
        let approval = step("human_approval", APPROVALS, "approved", 9_900);
        let history = [fraud, approval];
        let req = Query {
            history: &history,
            ..req
        };
        let refunds = &p.explain(&req)[2];
        assert_eq!(refunds.require[1].met, Ok(1));
        assert_eq!(
            refunds.rego.as_ref().unwrap().outcome,
            Some(RegoOutcome::Denied("undefined".into()))
        );
        assert_eq!(refunds.verdict, Err(Reason::RegoDenied));
    }
}
