//! `custody policy test DIR`: like `opa test`, for every policy under DIR.
//! Each directory holding a `policy.yaml` is compiled (as `policy compile`
//! does), then its Rego unit tests run (rules named `test_*` in its
//! `*_test.rego` files, which pass iff `true`), then its decision cases
//! (`*.cases.yaml`, see [`super::cases`]).

use super::cases;
use super::compile::{compile_file, file_name, rego_files, CompileError};
use crate::fail::{error, one_line, Failure};
use crate::output::Format;
use custody_core::policy::Policy;
use regorus::unstable::{Rule, RuleHead};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Runs every test under `dir`. Exit 0 all passed, 1 any failed. With
/// `strict`, a policy's lint warnings fail it.
pub fn run(dir: &Path, verbose: bool, strict: bool, format: Format) -> Result<u8, Failure> {
    if !dir.is_dir() {
        return Err(error(format!("{}: not a directory", dir.display())));
    }
    let mut policies = Vec::new();
    find_policies(dir, &mut policies).map_err(error)?;
    if policies.is_empty() {
        return Err(error(format!("{}: no policy.yaml found", dir.display())));
    }
    let mut report = Report {
        verbose: verbose && format == Format::Text,
        passed: 0,
        failed: 0,
        results: Vec::new(),
        format,
    };
    for policy in &policies {
        test_policy(policy, strict, &mut report);
    }
    let total = report.passed + report.failed;
    match format {
        Format::Text => {
            let summary = if report.failed == 0 {
                format!("PASS: {}/{total}", report.passed)
            } else {
                format!("FAIL: {}/{total}", report.failed)
            };
            crate::util::print(&format!("{}\n{summary}\n", "-".repeat(80)))?;
        }
        Format::Json => {
            let doc = json!({"passed": report.passed, "failed": report.failed, "results": report.results});
            crate::util::print(&format!("{doc}\n"))?;
        }
    }
    Ok(u8::from(report.failed > 0))
}

/// Directories holding a `policy.yaml`, depth first, sorted (symbolic links
/// to directories are not followed).
fn find_policies(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let policy = dir.join("policy.yaml");
    if policy.is_file() {
        out.push(policy);
    }
    let mut subdirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            subdirs.push(entry.path());
        }
    }
    subdirs.sort();
    for sub in subdirs {
        find_policies(&sub, out)?;
    }
    Ok(())
}

struct Report {
    verbose: bool,
    passed: usize,
    failed: usize,
    /// Every outcome, for `--format json`.
    results: Vec<serde_json::Value>,
    format: Format,
}

impl Report {
    /// One test's outcome: failures always printed, passes with -v.
    fn record(&mut self, file: &Path, name: &str, result: Result<(), String>) {
        let why = result.as_ref().err().map(|w| one_line(w));
        self.results.push(json!({
            "file": file.display().to_string(), "name": name,
            "result": if why.is_none() { "pass" } else { "fail" }, "why": why,
        }));
        match why {
            None => {
                self.passed += 1;
                if self.verbose {
                    println!("PASS {}: {name}", file.display());
                }
            }
            Some(why) => {
                self.failed += 1;
                if self.format == Format::Text {
                    println!("FAIL {}: {name}: {why}", file.display());
                }
            }
        }
    }
}

fn test_policy(path: &Path, strict: bool, report: &mut Report) {
    let policy = match compile_file(path, strict) {
        Ok(c) => {
            crate::finding::report(&c.warnings, report.format);
            c.policy
        }
        Err(CompileError::Refused(findings)) => {
            // Each finding names its file and place.
            for f in findings {
                report.failed += 1;
                if report.format == Format::Text {
                    println!("FAIL {f}");
                }
                report.results.push(json!({"file": f.file, "name": "(compile)", "result": "fail", "why": f.to_string()}));
            }
            return;
        }
        Err(CompileError::Unreadable(e)) => {
            return report.record(path, "(compile)", Err(e));
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    match rego_files(dir, true) {
        Ok(tests) => rego_tests(&policy, &tests, report),
        Err(e) => report.record(dir, "Rego tests", Err(e)),
    }
    let cases = match case_files(dir) {
        Ok(c) => c,
        Err(e) => return report.record(dir, "cases", Err(e)),
    };
    for file in cases {
        match cases::run_file(&policy, &file) {
            Ok(outcomes) => {
                for o in outcomes {
                    report.record(&file, &o.name, o.result);
                }
            }
            Err(e) => report.record(&file, "(case file)", Err(e)),
        }
    }
}

/// The `*.cases.yaml` files of `dir`, sorted.
fn case_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if file_name(&path).ends_with(".cases.yaml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads the policy's modules and the test files into one engine and
/// evaluates every `test_*` rule of the test files.
fn rego_tests(policy: &Policy, tests: &[PathBuf], report: &mut Report) {
    if tests.is_empty() {
        return;
    }
    let mut engine = regorus::Engine::new();
    for (name, source) in BTreeMap::from(policy.modules.clone()) {
        if let Err(e) = engine.add_policy(name.clone(), source) {
            // Compiling already refused this; kept for completeness.
            return report.record(Path::new(&name), "(module)", Err(e.to_string()));
        }
    }
    let mut loaded = Vec::new();
    for file in tests {
        let source = match std::fs::read_to_string(file) {
            Ok(s) => s,
            Err(e) => {
                report.record(file, "(test file)", Err(e.to_string()));
                continue;
            }
        };
        let key = file.display().to_string();
        match engine.add_policy(key.clone(), source) {
            Ok(_) => loaded.push((file, key)),
            Err(e) => report.record(file, "(test file)", Err(e.to_string())),
        }
    }
    for (file, key) in loaded {
        let names = test_rules(&mut engine, &key);
        if names.is_empty() {
            report.record(file, "(test file)", Err("defines no test_* rule".into()));
        }
        for rule in names {
            let result = match engine.clone().eval_rule(rule.clone()) {
                Ok(regorus::Value::Bool(true)) => Ok(()),
                Ok(regorus::Value::Undefined) => Err("undefined".to_owned()),
                Ok(v) => Err(format!(
                    "{} (only true passes)",
                    v.to_json_str().unwrap_or_else(|_| "a value".into())
                )),
                Err(e) => Err(format!("error: {e}")),
            };
            report.record(file, &rule, result);
        }
    }
}

/// `data.<package>.test_*` for every rule of the module loaded as `key`
/// whose name starts with `test_`, in source order, each once.
fn test_rules(engine: &mut regorus::Engine, key: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for module in engine.get_modules() {
        if module.package.span.source.get_path() != key {
            continue;
        }
        let Ok(package) = regorus::utils::get_path_string(&module.package.refr, Some("data"))
        else {
            continue;
        };
        for rule in &module.policy {
            let refr = match &**rule {
                Rule::Spec {
                    head: RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. },
                    ..
                } => refr,
                Rule::Default { refr, .. } => refr,
                // Functions take arguments: not tests.
                Rule::Spec { .. } => continue,
            };
            let Ok(name) = regorus::utils::get_path_string(refr, None) else {
                continue;
            };
            let full = format!("{package}.{name}");
            if name.starts_with("test_") && !names.contains(&full) {
                names.push(full);
            }
        }
    }
    names
}
