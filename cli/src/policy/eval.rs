//! `custody policy eval`: one Rego input document decided by a policy, as the
//! filter's decision stage does once the request and its history are
//! verified: rules (caller, method, target) → `require` clauses over the
//! history's steps → the rule's Rego over the document. `--explain` prints
//! the document and every rule's verdict (`custody_core::explain`, the code
//! that names the closest rule in the filter's decision log).

use crate::fail::{error, Failure};
use crate::output::Format;
use crate::util::{read_bytes_or_stdin, unix_now};
use custody_core::call;
use custody_core::explain::{RuleReport, Why};
use custody_core::mcp::Target;
use custody_core::policy::{Policy, Query, Step, Verdict};
use custody_core::reason::Reason;
use custody_core::rego::RegoOutcome;
use custody_core::SpiffeId;
use serde_json::{json, Map, Value};
use std::path::Path;

/// A decision, with the closest rule and every rule's verdict.
#[derive(Debug)]
pub struct Evaluation {
    pub verdict: Result<String, Reason>,
    /// For a denial: the closest rule, if any, and what it lacked.
    pub closest: Option<String>,
    pub why: Option<Why>,
    pub rules: Vec<RuleReport>,
}

/// Decides `input` and prints the decision (with `explain`: the completed
/// input document and every rule's verdict too). Exit 0 allow, 1 deny.
pub fn run(policy: &Policy, input: &Path, format: Format, explain: bool) -> Result<u8, Failure> {
    let bytes = read_bytes_or_stdin(input)?;
    let mut doc = custody_json::parse_strict(&bytes, 64).map_err(|e| {
        error(format!(
            "{}: {}",
            input.display(),
            match e {
                custody_json::JsonError::DuplicateKey(k) => format!("duplicate member `{k}`"),
                custody_json::JsonError::TooDeep => "nested too deeply".to_owned(),
                custody_json::JsonError::Malformed => "not valid JSON".to_owned(),
            }
        ))
    })?;
    let evaluation = evaluate(policy, &mut doc, unix_now()?)
        .map_err(|e| error(format!("{}: {e}", input.display())))?;
    let out = match (format, explain) {
        (Format::Text, false) => format!("{}\n", text(&evaluation.verdict)),
        (Format::Text, true) => explanation_text(&doc, &evaluation),
        (Format::Json, _) => {
            let mut v = verdict_json(&evaluation.verdict);
            if explain {
                v["closest_rule"] = json!(evaluation.closest);
                v["detail"] = json!(evaluation.why.as_ref().map(Why::log));
                v["input"] = doc.clone();
                v["rules"] = evaluation.rules.iter().map(rule_json).collect();
            }
            format!("{v}\n")
        }
    };
    crate::util::print(&out)?;
    Ok(if evaluation.verdict.is_ok() { 0 } else { 1 })
}

/// `allow (rule NAME)` or `deny (REASON)`.
pub fn text(verdict: &Result<String, Reason>) -> String {
    match verdict {
        Ok(rule) => format!("allow (rule {rule})"),
        Err(reason) => format!("deny ({})", reason.code()),
    }
}

fn verdict_json(verdict: &Result<String, Reason>) -> Value {
    match verdict {
        Ok(rule) => json!({"decision": "allow", "rule": rule}),
        Err(reason) => json!({"decision": "deny", "reason": reason.code()}),
    }
}

/// The input document, then one block per rule, then the decision.
fn explanation_text(doc: &Value, e: &Evaluation) -> String {
    let mut out = String::from("input:\n");
    for line in serde_json::to_string_pretty(doc)
        .unwrap_or_default()
        .lines()
    {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str("rules:\n");
    for r in &e.rules {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        out.push_str(&format!(
            "  {}: {} (caller {}, method {}, target {})\n",
            r.name,
            match r.verdict {
                Ok(()) => "allows",
                _ if !(r.caller && r.method && r.target) => "does not apply",
                Err(reason) => reason.code(),
            },
            yes_no(r.caller),
            yes_no(r.method),
            yes_no(r.target),
        ));
        for c in &r.require {
            match &c.met {
                Ok(i) => out.push_str(&format!("    require {}: met by history[{i}]\n", c.step)),
                Err((reason, why)) => out.push_str(&format!(
                    "    require {}: {}: {}\n",
                    c.step,
                    reason.code(),
                    why.log()
                )),
            }
        }
        if let Some(rego) = &r.rego {
            let outcome = match &rego.outcome {
                None => "not evaluated".to_owned(),
                Some(RegoOutcome::Allow) => "true".to_owned(),
                Some(RegoOutcome::Denied(v)) => v.clone(),
                Some(RegoOutcome::Error(e)) => format!("error: {e}"),
            };
            out.push_str(&format!("    rego {}: {outcome}\n", rego.rule));
        }
    }
    out.push_str(&text(&e.verdict));
    if let Some(rule) = &e.closest {
        out.push_str(&format!(", closest rule {rule}"));
    }
    if let Some(why) = &e.why {
        out.push_str(&format!(": {}", why.log()));
    }
    out.push('\n');
    out
}

fn rule_json(r: &RuleReport) -> Value {
    let require: Vec<Value> = r
        .require
        .iter()
        .map(|c| match &c.met {
            Ok(i) => json!({"step": c.step, "met": true, "entry": i}),
            Err((reason, why)) => {
                json!({"step": c.step, "met": false, "reason": reason.code(), "detail": why.log()})
            }
        })
        .collect();
    let rego = r.rego.as_ref().map(|g| {
        let (result, error) = match &g.outcome {
            None => (Value::Null, Value::Null),
            Some(RegoOutcome::Allow) => (json!("true"), Value::Null),
            Some(RegoOutcome::Denied(v)) => (json!(v), Value::Null),
            Some(RegoOutcome::Error(e)) => (json!("error"), json!(e)),
        };
        json!({"rule": g.rule, "evaluated": g.outcome.is_some(), "result": result, "error": error})
    });
    json!({
        "name": r.name,
        "verdict": match r.verdict { Ok(()) => "allow", Err(reason) => reason.code() },
        "applies": r.caller && r.method && r.target,
        "caller": r.caller, "method": r.method, "target": r.target,
        "require": require, "rego": rego,
    })
}

/// [`evaluate`]'s verdict alone.
pub fn decide(
    policy: &Policy,
    doc: &mut Value,
    default_now: u64,
) -> Result<Result<String, Reason>, String> {
    evaluate(policy, doc, default_now).map(|e| e.verdict)
}

/// Decides an input document (docs/policy.md) whose history is taken as
/// verified. The document is completed first, so that Rego sees what the
/// rules saw: a missing `now` becomes `default_now`, a missing `history`
/// becomes `[]`, and each history entry's missing `iat` or `age` is computed
/// from the other.
pub fn evaluate(policy: &Policy, doc: &mut Value, default_now: u64) -> Result<Evaluation, String> {
    let obj = doc
        .as_object_mut()
        .ok_or("the input document must be a JSON object")?;
    let now = match obj.get("now") {
        None => {
            obj.insert("now".into(), json!(default_now));
            default_now
        }
        Some(v) => v
            .as_u64()
            .ok_or("`now` must be a Unix time in seconds (a non-negative integer)")?,
    };
    let caller = obj
        .get("calling_agent")
        .and_then(Value::as_str)
        .ok_or("`calling_agent` (the caller's SPIFFE ID) is required")?;
    let caller = SpiffeId::parse(caller).map_err(|e| format!("`calling_agent` '{caller}': {e}"))?;
    let mcp = obj
        .get("mcp")
        .and_then(Value::as_object)
        .ok_or("`mcp` (an object with `method`) is required")?;
    let method = mcp
        .get("method")
        .and_then(Value::as_str)
        .ok_or("`mcp.method` must be a string")?
        .to_owned();
    let target = target_of(mcp)?;
    let history = obj.entry("history").or_insert_with(|| json!([]));
    let entries = history
        .as_array_mut()
        .ok_or("`history` must be an array of entries")?;
    for (i, e) in entries.iter_mut().enumerate() {
        complete_entry(e, now).map_err(|m| format!("history[{i}]: {m}"))?;
    }
    let doc_ref: &Value = doc;
    let steps: Vec<Step> = doc_ref["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Step {
            step: e["step"].as_str().unwrap_or_default(),
            result: e["result"].as_str().unwrap_or_default(),
            signer: e["agent"].as_str().unwrap_or_default(),
            iat: e["iat"].as_u64().unwrap_or_default(),
            call: e.get("claims").and_then(|c| c.get(call::CALL_CLAIM)),
        })
        .collect();
    let call = call::claim(&method, target.as_ref(), doc_ref["mcp"].get("arguments")).ok();
    let rego_input = regorus::Value::from(doc_ref.clone());
    let request = Query {
        caller: &caller,
        method: &method,
        target: target.as_ref(),
        history: &steps,
        now,
        input: Some(&rego_input),
        call: call.as_ref(),
    };
    let outcome = policy.decide(&request);
    Ok(Evaluation {
        verdict: match outcome.verdict {
            Verdict::Allow { rule } => Ok(rule.to_owned()),
            Verdict::Deny { reason } => Err(reason),
        },
        closest: outcome.closest.map(str::to_owned),
        why: outcome.why,
        rules: policy.explain(&request),
    })
}

/// At most one of `tool`, `resource`, `prompt`, a non-empty string.
fn target_of(mcp: &Map<String, Value>) -> Result<Option<Target>, String> {
    let mut target = None;
    for kind in ["tool", "resource", "prompt"] {
        let Some(v) = mcp.get(kind) else { continue };
        let name = v
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or(format!("`mcp.{kind}` must be a non-empty string"))?
            .to_owned();
        if target.is_some() {
            return Err("`mcp` may name only one of `tool`, `resource`, `prompt`".into());
        }
        target = Some(match kind {
            "tool" => Target::Tool(name),
            "resource" => Target::Resource(name),
            _ => Target::Prompt(name),
        });
    }
    Ok(target)
}

/// Checks one history entry and fills in `iat` or `age`.
fn complete_entry(e: &mut Value, now: u64) -> Result<(), String> {
    let e = e.as_object_mut().ok_or("an entry must be a JSON object")?;
    for key in ["step", "result", "agent"] {
        if !e.get(key).is_some_and(Value::is_string) {
            return Err(format!("`{key}` must be a string"));
        }
    }
    let agent = e["agent"].as_str().unwrap_or_default();
    SpiffeId::parse(agent).map_err(|err| format!("`agent` '{agent}': {err}"))?;
    let number = |key: &str| -> Result<Option<u64>, String> {
        match e.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or(format!("`{key}` must be a non-negative integer (seconds)")),
        }
    };
    let (iat, age) = (number("iat")?, number("age")?);
    match (iat, age) {
        (Some(iat), None) => {
            e.insert("age".into(), json!(now.saturating_sub(iat)));
        }
        (None, Some(age)) => {
            e.insert("iat".into(), json!(now.saturating_sub(age)));
        }
        (Some(_), Some(_)) => {}
        (None, None) => return Err("give `iat` or `age`".into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy() -> Policy {
        serde_json::from_value(json!({"rules": [
            {"name": "refunds", "callers": ["spiffe://example.org/ns/p/sa/agent"],
             "methods": ["tools/call"], "tools": ["refund"],
             "require": [{"step": "approval", "by": ["spiffe://example.org/ns/p/sa/approvals"], "within": "30m"}],
             "rego": "data.p.allow"}],
            "modules": {"p.rego": "package p\nimport rego.v1\nallow if input.mcp.arguments.amount <= 10\n"}}))
        .unwrap()
    }

    fn input(amount: u64, age: u64) -> Value {
        json!({"calling_agent": "spiffe://example.org/ns/p/sa/agent", "now": 10_000,
               "mcp": {"method": "tools/call", "tool": "refund", "arguments": {"amount": amount}},
               "history": [{"step": "approval", "result": "approved",
                            "agent": "spiffe://example.org/ns/p/sa/approvals", "age": age}]})
    }

    #[test]
    fn rules_then_requirements_then_rego() {
        let p = policy();
        assert_eq!(
            decide(&p, &mut input(5, 60), 0).unwrap(),
            Ok("refunds".into())
        );
        assert_eq!(
            decide(&p, &mut input(50, 60), 0).unwrap(),
            Err(Reason::RegoDenied)
        );
        assert_eq!(
            decide(&p, &mut input(5, 3600), 0).unwrap(),
            Err(Reason::StaleStep)
        );
        let mut doc = input(5, 60);
        doc["mcp"]["tool"] = json!("other");
        assert_eq!(decide(&p, &mut doc, 0).unwrap(), Err(Reason::NoRule));
        let mut doc = input(5, 60);
        doc["history"] = json!([]);
        assert_eq!(decide(&p, &mut doc, 0).unwrap(), Err(Reason::MissingStep));
    }

    #[test]
    fn completes_the_document() {
        let p = policy();
        let mut doc = input(5, 60);
        doc.as_object_mut().unwrap().remove("now");
        assert_eq!(decide(&p, &mut doc, 5_000).unwrap(), Ok("refunds".into()));
        assert_eq!(doc["now"], 5_000);
        assert_eq!(doc["history"][0]["iat"], 4_940);
    }

    #[test]
    fn refuses_bad_documents() {
        let p = policy();
        for (edit, want) in [
            (json!({"calling_agent": "nope"}), "calling_agent"),
            (json!({"now": -1}), "now"),
            (json!({"mcp": {"tool": "refund"}}), "mcp.method"),
            (
                json!({"mcp": {"method": "tools/call", "tool": "a", "prompt": "b"}}),
                "only one",
            ),
            (json!({"history": [{"step": "a"}]}), "history[0]"),
            (json!({"history": {}}), "array"),
        ] {
            let mut doc = input(1, 1);
            for (k, v) in edit.as_object().unwrap() {
                doc[k] = v.clone();
            }
            let err = decide(&p, &mut doc, 0).unwrap_err();
            assert!(err.contains(want), "{edit}: {err}");
        }
        assert!(decide(&p, &mut json!([]), 0).is_err());
    }
}
