//! Rego rules named by policy rules, evaluated with regorus. The modules are
//! parsed once (when the policy loads); each rule a policy names is then
//! compiled once for regorus's register VM (RVM), and every request runs that
//! program in a fresh VM (several times cheaper than the tree-walking
//! interpreter, most of all inside V8). A rule the RVM compiler does not
//! support, or an unprepared one, is evaluated by the interpreter on a clone
//! of the parsed engine instead. Only `true` allows: `false`, undefined and
//! every error deny.

use regorus::rvm::{Program, RegoVM};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Rego modules by file name, and the engine prepared from them.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct RegoModules {
    sources: BTreeMap<String, String>,
    engine: regorus::Engine,
    /// RVM programs by rule path, compiled by [`RegoModules::prepare`].
    programs: BTreeMap<String, Arc<Program>>,
}

impl fmt::Debug for RegoModules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegoModules")
            .field("modules", &self.sources.keys())
            .finish()
    }
}

impl TryFrom<BTreeMap<String, String>> for RegoModules {
    type Error = String;
    fn try_from(sources: BTreeMap<String, String>) -> Result<Self, String> {
        let mut engine = regorus::Engine::new();
        for (name, source) in &sources {
            engine
                .add_policy(name.clone(), source.clone())
                .map_err(|e| format!("Rego module '{name}': {e}"))?;
        }
        Ok(RegoModules {
            sources,
            engine,
            programs: BTreeMap::new(),
        })
    }
}

impl From<RegoModules> for BTreeMap<String, String> {
    fn from(m: RegoModules) -> Self {
        m.sources
    }
}

/// Why a Rego rule did not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegoOutcome {
    Allow,
    /// The rule is `false`, undefined, or any value other than `true`.
    Denied(String),
    /// Evaluation failed.
    Error(String),
}

impl RegoModules {
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Whether `rule` (e.g. `data.payments.refund.allow`) is a rule of these modules.
    pub fn check_rule(&self, rule: &RegoRule) -> Result<(), String> {
        let mut engine = self.engine.clone();
        engine
            .compile_with_entrypoint(&rule.0.as_str().into())
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "rego rule '{}' is not defined by the policy's modules: {e}",
                    rule.0
                )
            })
    }

    /// Compiles `rule` once for the RVM; if the RVM compiler refuses it,
    /// prepares the interpreter's engine instead (so that its clones skip
    /// regorus's preparation). Results are never cached: each evaluation
    /// runs over its own input.
    pub fn prepare(&mut self, rule: &RegoRule) {
        if let Some(program) = self.compile(rule) {
            self.programs.insert(rule.0.clone(), program);
            return;
        }
        self.engine.set_input(regorus::Value::new_object());
        let _ = self.engine.eval_rule(rule.0.clone());
    }

    fn compile(&self, rule: &RegoRule) -> Option<Arc<Program>> {
        let entry: regorus::Rc<str> = rule.0.as_str().into();
        let compiled = self.engine.clone().compile_with_entrypoint(&entry).ok()?;
        regorus::languages::rego::compiler::Compiler::compile_from_policy(
            &compiled,
            &[rule.0.as_str()],
        )
        .ok()
    }

    /// Whether `rule` runs on the RVM (it was prepared and the RVM compiled it).
    pub fn compiled(&self, rule: &RegoRule) -> bool {
        self.programs.contains_key(&rule.0)
    }

    /// Evaluates `rule` over `input` (a cheap clone: regorus values are shared).
    pub fn eval(&self, rule: &RegoRule, input: &regorus::Value) -> RegoOutcome {
        let input = input.clone();
        let result = match self.programs.get(&rule.0) {
            Some(program) => {
                let mut vm = RegoVM::new();
                vm.load_program(Arc::clone(program));
                vm.set_input(input);
                vm.execute_entry_point_by_name(&rule.0)
                    .map_err(|e| e.to_string())
            }
            None => {
                let mut engine = self.engine.clone();
                engine.set_input(input);
                engine.eval_rule(rule.0.clone()).map_err(|e| e.to_string())
            }
        };
        match result {
            Ok(regorus::Value::Bool(true)) => RegoOutcome::Allow,
            Ok(regorus::Value::Undefined) => RegoOutcome::Denied("undefined".into()),
            Ok(v) => RegoOutcome::Denied(
                v.to_json_str()
                    .unwrap_or_else(|_| "a non-boolean value".into()),
            ),
            Err(e) => RegoOutcome::Error(e),
        }
    }
}

/// A rule path: `data.` followed by dot-separated identifiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegoRule(String);

impl TryFrom<String> for RegoRule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ident = |p: &str| {
            p.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let mut parts = s.split('.');
        let ok = parts.next() == Some("data") && s.len() <= 256 && {
            let rest: Vec<&str> = parts.collect();
            rest.len() >= 2 && rest.iter().all(|p| ident(p))
        };
        if !ok {
            return Err(format!(
                "rego '{s}' must name a rule as data.<package>.<rule>, e.g. data.payments.refund.allow"
            ));
        }
        Ok(RegoRule(s))
    }
}

impl RegoRule {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<RegoRule> for String {
    fn from(r: RegoRule) -> String {
        r.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const REFUND: &str = r#"
package payments.refund
import rego.v1

default allow := false

allow if {
    some h in input.history
    h.step == "human_approval"
    input.mcp.arguments.amount <= h.claims.amount
}

broken if { 1 / 0 == 1 }
number := 7
"#;

    fn modules() -> RegoModules {
        RegoModules::try_from(BTreeMap::from([(
            "refund.rego".to_owned(),
            REFUND.to_owned(),
        )]))
        .unwrap()
    }

    fn rule(s: &str) -> RegoRule {
        RegoRule::try_from(s.to_owned()).unwrap()
    }

    fn input(amount: i64) -> regorus::Value {
        json!({"mcp": {"arguments": {"amount": amount}},
               "history": [{"step": "human_approval", "claims": {"amount": 100}}]})
        .into()
    }

    #[test]
    fn only_true_allows() {
        let m = modules();
        assert_eq!(
            m.eval(&rule("data.payments.refund.allow"), &input(100)),
            RegoOutcome::Allow
        );
        assert_eq!(
            m.eval(&rule("data.payments.refund.allow"), &input(101)),
            RegoOutcome::Denied("false".into())
        );
        assert_eq!(
            m.eval(&rule("data.payments.refund.number"), &input(1)),
            RegoOutcome::Denied("7".into())
        );
        assert!(matches!(
            m.eval(&rule("data.payments.refund.broken"), &input(1)),
            RegoOutcome::Denied(_) | RegoOutcome::Error(_)
        ));
        assert!(matches!(
            m.eval(&rule("data.payments.refund.nope"), &input(1)),
            RegoOutcome::Error(_)
        ));
    }

    #[test]
    fn a_prepared_engine_still_evaluates_each_input() {
        let mut m = modules();
        let allow = rule("data.payments.refund.allow");
        m.prepare(&allow);
        assert_eq!(m.eval(&allow, &input(100)), RegoOutcome::Allow);
        assert_eq!(
            m.eval(&allow, &input(101)),
            RegoOutcome::Denied("false".into())
        );
        assert_eq!(m.eval(&allow, &input(1)), RegoOutcome::Allow);
    }

    #[test]
    fn the_rvm_and_the_interpreter_agree() {
        let inputs: [regorus::Value; 8] = [
            input(100),
            input(101),
            input(-1),
            json!({}).into(),
            json!({"mcp": {"arguments": {"amount": "100"}}, "history": [{"step": "human_approval", "claims": {"amount": 100}}]}).into(),
            json!({"mcp": {"arguments": {"amount": 5}}, "history": [{"step": "human_approval"}]}).into(),
            json!({"mcp": {"arguments": {"amount": 5}}, "history": {"step": "human_approval", "claims": {"amount": 9}}}).into(),
            json!({"mcp": {"arguments": {"amount": 5.5}}, "history": [{"step": "other", "claims": {"amount": 9}}, {"step": "human_approval", "claims": {"amount": 5.5}}]}).into(),
        ];
        for path in ["data.payments.refund.allow", "data.payments.refund.number"] {
            let r = rule(path);
            let interpreter = modules();
            let mut rvm = modules();
            rvm.prepare(&r);
            assert!(rvm.compiled(&r), "{path} runs on the RVM");
            assert!(!interpreter.compiled(&r));
            for i in &inputs {
                assert_eq!(
                    rvm.eval(&r, i),
                    interpreter.eval(&r, i),
                    "{path} over {i:?}"
                );
            }
        }
        let broken = rule("data.payments.refund.broken");
        let mut rvm = modules();
        rvm.prepare(&broken);
        let outcome = rvm.eval(&broken, &input(1));
        assert!(!matches!(outcome, RegoOutcome::Allow), "{outcome:?}");
    }

    #[test]
    fn rules_are_checked_ahead_of_time() {
        let m = modules();
        assert!(m.check_rule(&rule("data.payments.refund.allow")).is_ok());
        assert!(m.check_rule(&rule("data.payments.refund.nope")).is_err());
        assert!(m.check_rule(&rule("data.other.allow")).is_err());
    }

    #[test]
    fn bad_modules_and_paths_are_refused() {
        let bad = RegoModules::try_from(BTreeMap::from([(
            "x.rego".to_owned(),
            "package x\nallow if {".to_owned(),
        )]));
        assert!(bad.unwrap_err().contains("x.rego"));
        for p in [
            "payments.allow",
            "data",
            "data.x",
            "data.x.",
            "data.1x.y",
            "data.x.y z",
            "data.x[\"y\"]",
        ] {
            assert!(RegoRule::try_from(p.to_owned()).is_err(), "{p}");
        }
    }

    #[test]
    fn round_trips_as_sources() {
        let m = modules();
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["refund.rego"], REFUND);
        let again: RegoModules = serde_json::from_value(v).unwrap();
        assert_eq!(
            again.eval(&rule("data.payments.refund.allow"), &input(5)),
            RegoOutcome::Allow
        );
    }
}
