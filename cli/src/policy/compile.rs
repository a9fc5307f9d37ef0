//! Policy files to bundles: the YAML and the `*.rego` files beside it
//! compiled into the JSON bundle the filter loads, and compiled bundles read
//! back with the filter's own checks.

use crate::fail::{error, Failure};
use custody_core::policy::Policy;
use custody_core::rego::RegoModules;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// YAML policy → JSON bundle, without Rego files. Validation errors carry
/// the YAML line and column.
#[cfg(test)]
pub fn compile(yaml: &str) -> Result<String, String> {
    let policy = parse_yaml(yaml)?;
    let mut json = serde_json::to_string_pretty(&policy).map_err(|e| e.to_string())?;
    json.push('\n');
    Ok(json)
}

fn parse_yaml(yaml: &str) -> Result<Policy, String> {
    serde_norway::from_str(yaml).map_err(|e| e.to_string())
}

/// The bundle as the filter reads it (pretty JSON, newline-terminated).
pub fn bundle_json(policy: &Policy) -> Result<String, Failure> {
    let mut json = serde_json::to_string_pretty(policy).map_err(|e| error(e.to_string()))?;
    json.push('\n');
    Ok(json)
}

/// Compiles a policy file: the YAML, plus every `*.rego` file of its
/// directory except `*_test.rego` as a module, then checks that every rule's
/// `rego` names a rule of those modules. Errors start with the file's path.
pub fn compile_file(path: &Path) -> Result<Policy, String> {
    let mut policy = parse_yaml(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let files = rego_files(&dir, false)?;
    if !files.is_empty() {
        let mut sources = BTreeMap::from(policy.modules.clone());
        for file in files {
            let name = file_name(&file);
            if sources.contains_key(&name) {
                return Err(format!(
                    "{}: module '{name}' is given both in the policy and as a file",
                    path.display()
                ));
            }
            sources.insert(name, read(&file)?);
        }
        policy.modules =
            RegoModules::try_from(sources).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    policy
        .check_rego()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(policy)
}

/// Reads a compiled bundle and applies the filter's own checks.
pub fn load_bundle(path: &Path) -> Result<Policy, String> {
    let text = read(path)?;
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

pub fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
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
        let yaml = "rules:\n- name: calc\n  callers: [\"spiffe://example.org/ns/a/sa/agent\"]\n  methods: [tools/call]\n  tool: [add]\n";
        let err = compile(yaml).unwrap_err();
        assert!(
            err.contains("unknown field `tool`") && err.contains("line 5"),
            "{err}"
        );
        let yaml =
            "rules:\n- name: calc\n  callers: [\"spiffe://Example.org/x\"]\n  methods: [ping]\n";
        let err = compile(yaml).unwrap_err();
        assert!(
            err.contains("trust domain") && err.contains("line 3"),
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
        let p = compile_file(&dir.path().join("policy.yaml")).unwrap();
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
            let mut p = compile_file(&path).unwrap();
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
