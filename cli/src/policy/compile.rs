//! Policy files to bundles: the YAML and the `*.rego` files beside it
//! compiled into the JSON bundle the filter loads, and compiled bundles read
//! back with the filter's own checks.

use super::lint;
use super::rego_lint;
use crate::finding::{Finding, Severity};
use crate::yaml_pos::{Pos, Positions};
use custody_core::policy::{CallerPattern, MethodPattern, NamePattern, Policy};
use custody_core::rego::RegoModules;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// YAML policy → JSON bundle, without Rego files or lints. Validation errors
/// carry the YAML line and column.
#[cfg(test)]
pub fn compile(yaml: &str) -> Result<String, String> {
    let at = Positions::of_documents(yaml);
    let policy = parse_yaml(yaml, "p.yaml", at.first()).map_err(|f| f.to_string())?;
    let mut json = serde_json::to_string_pretty(&policy).map_err(|e| e.to_string())?;
    json.push('\n');
    Ok(json)
}

/// Why a policy did not compile.
#[derive(Debug)]
pub enum CompileError {
    /// A file could not be read (exit 2).
    Unreadable(String),
    /// The policy is refused: every error and warning found (exit 1).
    Refused(Vec<Finding>),
}

/// A compiled policy and the warnings its lints gave.
pub struct Compiled {
    pub policy: Policy,
    pub warnings: Vec<Finding>,
}

/// The policy, or the finding that refuses it, pointed at its item.
fn parse_yaml(yaml: &str, file: &str, at: Option<&Positions>) -> Result<Policy, Finding> {
    serde_norway::from_str(yaml).map_err(|e| {
        let text = e.to_string();
        let pos = e.location().map(|l| Pos {
            line: l.line(),
            column: l.column(),
        });
        let message = match pos {
            Some(p) => text
                .strip_suffix(&format!(" at {p}"))
                .unwrap_or(&text)
                .to_owned(),
            None => text,
        };
        let mut finding = Finding::error(file, pos, "", message);
        if let Some(at) = at {
            refine(&mut finding, at);
        }
        finding
    })
}

/// Points a serde error at the item it is about: the list item whose value
/// is refused (serde_norway names the list), or the rule it names.
fn refine(f: &mut Finding, at: &Positions) {
    if let Some((path, rest)) = f.message.split_once(": ") {
        let check: Option<fn(String) -> Result<(), String>> =
            match path.rsplit('.').next().unwrap_or(path) {
                "callers" | "by" => Some(|s| CallerPattern::try_from(s).map(|_| ())),
                "methods" => Some(|s| MethodPattern::try_from(s).map(|_| ())),
                "tools" | "resources" | "prompts" => Some(|s| NamePattern::try_from(s).map(|_| ())),
                _ => None,
            };
        if let Some(check) = check {
            let bad = (0..at.len(path)).find(|i| {
                at.scalar(&format!("{path}[{i}]"))
                    .is_some_and(|v| check(v.to_owned()).is_err())
            });
            if let Some(i) = bad {
                let item = format!("{path}[{i}]");
                f.pos = at.node(&item).or(f.pos);
                f.path = item;
                f.message = rest.to_owned();
                return;
            }
        }
    }
    // `rule 'NAME' …`: the rule of that name (the later one for a name used twice).
    let Some(name) = f
        .message
        .split_once("rule '")
        .or_else(|| f.message.split_once("rule name '"))
        .and_then(|(_, r)| r.split_once('\''))
        .map(|(n, _)| n.to_owned())
    else {
        return;
    };
    let rules: Vec<usize> = (0..at.len("rules"))
        .filter(|i| at.scalar(&format!("rules[{i}].name")) == Some(name.as_str()))
        .collect();
    let i = if f.message.contains("used twice") {
        rules.last()
    } else {
        rules.first()
    };
    if let Some(i) = i {
        let rule = format!("rules[{i}]");
        let member = ["callers", "methods"]
            .into_iter()
            .find(|m| f.message.contains(&format!("lists no {m}")))
            .or_else(|| f.message.contains("rego rule").then_some("rego"));
        f.pos = match member {
            Some(m) => at.key(&format!("{rule}.{m}")),
            None => at.node(&format!("{rule}.name")),
        }
        .or(f.pos);
        f.message = f
            .message
            .strip_prefix("rules: ")
            .unwrap_or(&f.message)
            .to_owned();
        f.path = rule;
    }
}

/// Compiles a policy file (`-`: standard input, without Rego files): the
/// YAML, plus every `*.rego` file of its directory except `*_test.rego` as a
/// module; checks that every rule's `rego` names a rule of those modules;
/// then lints it ([`super::lint`], [`super::rego_lint`]). With `strict`,
/// warnings refuse it too. Findings start with the file's path.
pub fn compile_file(path: &Path, strict: bool) -> Result<Compiled, CompileError> {
    let unreadable = |e: String| CompileError::Unreadable(e);
    let file = path.display().to_string();
    let refused =
        |message: String| CompileError::Refused(vec![Finding::error(&file, None, "", message)]);
    let text = read_input(path).map_err(unreadable)?;
    let at = Positions::of_documents(&text)
        .into_iter()
        .next()
        .unwrap_or_default();
    let mut policy =
        parse_yaml(&text, &file, Some(&at)).map_err(|f| CompileError::Refused(vec![f]))?;
    let dir = match path.parent() {
        _ if path.as_os_str() == "-" => None,
        Some(d) if !d.as_os_str().is_empty() => Some(d.to_path_buf()),
        _ => Some(PathBuf::from(".")),
    };
    let mut module_files = BTreeMap::new();
    if let Some(dir) = &dir {
        let files = rego_files(dir, false).map_err(unreadable)?;
        if !files.is_empty() {
            let mut sources = BTreeMap::from(policy.modules.clone());
            for f in files {
                let name = file_name(&f);
                if sources.contains_key(&name) {
                    return Err(refused(format!(
                        "module '{name}' is given both in the policy and as a file"
                    )));
                }
                sources.insert(name.clone(), read_input(&f).map_err(unreadable)?);
                module_files.insert(name, f.display().to_string());
            }
            policy.modules = RegoModules::try_from(sources)
                .map_err(|e| CompileError::Refused(vec![rego_error(&e, &file, &module_files)]))?;
        }
    }
    if let Err(e) = policy.check_rego() {
        let mut f = Finding::error(&file, None, "", crate::fail::one_line(&e));
        refine(&mut f, &at);
        return Err(CompileError::Refused(vec![f]));
    }
    let mut findings = lint::lint(&policy, &file, &at);
    let sources = BTreeMap::from(policy.modules.clone());
    findings.extend(rego_lint::lint(&sources, &|name| {
        module_files
            .get(name)
            .cloned()
            .unwrap_or_else(|| format!("{file}: modules.{name}"))
    }));
    let refuses = |f: &Finding| f.severity == Severity::Error || strict;
    if findings.iter().any(refuses) {
        return Err(CompileError::Refused(findings));
    }
    Ok(Compiled {
        policy,
        warnings: findings,
    })
}

/// A Rego error from regorus (`--> x.rego:3:12 … error: …`) as a finding at
/// that file, line and column.
fn rego_error(e: &str, file: &str, module_files: &BTreeMap<String, String>) -> Finding {
    let located = e.split("--> ").nth(1).and_then(|rest| {
        let (place, after) = rest.split_once('\n').unwrap_or((rest, ""));
        let mut parts = place.trim().rsplitn(3, ':');
        let column = parts.next()?.parse().ok()?;
        let line = parts.next()?.parse().ok()?;
        let name = parts.next()?;
        let message = after
            .lines()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .unwrap_or(after)
            .to_owned();
        Some((name.to_owned(), Pos { line, column }, message))
    });
    let before = e
        .split("--> ")
        .next()
        .unwrap_or(e)
        .trim()
        .trim_end_matches(':');
    match located {
        Some((name, pos, message)) => {
            let shown = module_files.get(&name).cloned().unwrap_or(name);
            let prefix = before
                .split_once("Rego module '")
                .map_or(before, |_| "")
                .to_owned();
            let message = if prefix.is_empty() {
                message
            } else {
                format!("{prefix}: {message}")
            };
            Finding::error(&shown, Some(pos), "", message)
        }
        None => Finding::error(file, None, "", crate::fail::one_line(e)),
    }
}

/// Reads a compiled bundle and applies the filter's own checks.
pub fn load_bundle(path: &Path) -> Result<Policy, String> {
    let text = read_input(path)?;
    let at = |e: String| format!("{}: {e}", path.display());
    if let Err(custody_json::JsonError::DuplicateKey(key)) =
        custody_json::parse_strict(text.as_bytes(), 64)
    {
        return Err(at(format!("duplicate member `{key}`")));
    }
    let policy: Policy = serde_json::from_str(&text).map_err(|e| at(e.to_string()))?;
    policy.check_rego().map_err(at)?;
    Ok(policy)
}

/// The `*.rego` files of `dir` (not recursive), sorted: the test files
/// (`*_test.rego`) if `tests`, else the others.
pub fn rego_files(dir: &Path, tests: bool) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let name = file_name(&path);
        if name.ends_with(".rego") && name.ends_with("_test.rego") == tests && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The text of `path`, or of standard input for `-`.
pub fn read_input(path: &Path) -> Result<String, String> {
    crate::util::read_text(path).map_err(|f| match f {
        crate::fail::Failure::Error(m) => m,
        other => other.to_string(),
    })
}

pub fn write(out: Option<&Path>, text: &str) -> Result<(), String> {
    match out {
        None => {
            print!("{text}");
            Ok(())
        }
        Some(path) => std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use custody_core::config::Config;

    #[test]
    fn compiles_yaml_to_the_bundle_the_filter_reads() {
        let yaml = "default: deny\nrules:\n- name: calc\n  callers: [\"spiffe://example.org/ns/a/sa/agent\"]\n  methods: [tools/call]\n  tools: [\"add\", \"sub_*\"]\n";
        let json = compile(yaml).unwrap();
        let config = format!("{{\"policy\": {json}}}");
        let c = Config::from_json(config.as_bytes()).unwrap();
        assert_eq!(c.policy.rules[0].name, "calc");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["rules"][0]["tools"][1], "sub_*");
    }

    #[test]
    fn errors_carry_line_context() {
        for (yaml, want) in [
            (
                "rules:\n- name: calc\n  callers: [\"spiffe://example.org/ns/a/sa/agent\"]\n  methods: [tools/call]\n  tool: [add]\n",
                "p.yaml:5:3: rules[0]: unknown field `tool`",
            ),
            // An item of a block list: the item, not the list.
            (
                "rules:\n- name: r\n  callers:\n  - spiffe://example.org/a\n  - spiffe://example.org/a**\n  methods:\n  - ping\n  - \"to ols\"\n",
                "p.yaml:5:5: rules[0].callers[1]: caller",
            ),
            (
                "rules:\n- name: r\n  callers: [\"spiffe://example.org/a\"]\n  methods:\n  - ping\n  - \"to ols\"\n",
                "p.yaml:6:5: rules[0].methods[1]: method 'to ols'",
            ),
            // A rule named in the error: that rule.
            (
                "rules:\n- name: a\n  callers: [\"spiffe://example.org/a\"]\n  methods: [ping]\n- name: a\n  callers: [\"spiffe://example.org/a\"]\n  methods: [ping]\n",
                "p.yaml:5:9: rules[1]: rule name 'a' is used twice",
            ),
            (
                "rules:\n- name: a\n  callers: [\"spiffe://example.org/a\"]\n  methods: [ping]\n- name: b\n  callers: []\n  methods: [ping]\n",
                "p.yaml:6:3: rules[1]: rule 'b' lists no callers",
            ),
        ] {
            let err = compile(yaml).unwrap_err();
            assert!(err.starts_with(want), "{err}");
        }
        let yaml =
            "rules:\n- name: calc\n  callers: [\"spiffe://Example.org/x\"]\n  methods: [ping]\n";
        let err = compile(yaml).unwrap_err();
        assert!(
            err.starts_with("p.yaml:3:13: rules[0].callers[0]: caller")
                && err.contains("trust domain"),
            "{err}"
        );
        let yaml = "rules:\n- name: calc\n  name: other\n  callers: [\"spiffe://example.org/x\"]\n  methods: [ping]\n";
        assert!(
            compile(yaml).unwrap_err().contains("duplicate"),
            "duplicate YAML keys are refused"
        );
    }

    #[test]
    fn compile_file_adds_rego_modules_but_not_tests() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = "rules:\n- name: r\n  callers: [\"spiffe://example.org/a\"]\n  methods: [ping]\n  rego: data.x.allow\n";
        std::fs::write(dir.path().join("policy.yaml"), yaml).unwrap();
        std::fs::write(
            dir.path().join("x.rego"),
            "package x\nimport rego.v1\nallow if true\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("x_test.rego"),
            "package x\nimport rego.v1\ntest_a if allow\n",
        )
        .unwrap();
        let p = compile_file(&dir.path().join("policy.yaml"), false)
            .ok()
            .unwrap()
            .policy;
        let v = serde_json::to_value(&p).unwrap();
        assert!(v["modules"]["x.rego"].is_string());
        assert!(v["modules"].get("x_test.rego").is_none());
    }

    /// The shipped policies' Rego runs on the register VM, not the slower interpreter.
    #[test]
    fn shipped_rego_compiles_for_the_register_vm() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let mut checked = 0;
        for dir in std::fs::read_dir(&root).unwrap() {
            let path = dir.unwrap().path().join("policy.yaml");
            if !path.exists() {
                continue;
            }
            let mut p = compile_file(&path, true).ok().unwrap().policy;
            p.prepare_rego();
            assert_eq!(
                p.interpreted_rego(),
                Vec::<&str>::new(),
                "{}",
                path.display()
            );
            checked += p.rules.iter().filter(|r| r.rego.is_some()).count();
        }
        assert!(checked > 0, "no shipped rule names Rego");
    }
}
