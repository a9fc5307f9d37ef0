//! `custody policy compile` and `custody config check`: the same validation
//! the filter applies at load time, run ahead of time with file and line context.

use clap::Subcommand;
use custody_core::config::Config;
use custody_core::policy::Policy;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check a policy (YAML) and write the JSON bundle the filter loads.
    Compile {
        /// Policy file (YAML; JSON is YAML too).
        policy: PathBuf,
        /// Where to write the bundle; standard output if omitted.
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check a plugin configuration (JSON) exactly as the filter will parse it.
    Check {
        /// Plugin configuration file (the JSON placed in Envoy's StringValue or Istio's pluginConfig).
        config: PathBuf,
    },
}

pub fn run_policy(cmd: PolicyCommand) -> Result<(), String> {
    match cmd {
        PolicyCommand::Compile { policy, out } => {
            let bundle =
                compile(&read(&policy)?).map_err(|e| format!("{}: {e}", policy.display()))?;
            write(out.as_deref(), &bundle)
        }
    }
}

pub fn run_config(cmd: ConfigCommand) -> Result<(), String> {
    match cmd {
        ConfigCommand::Check { config } => {
            let c = Config::from_json(read(&config)?.as_bytes())
                .map_err(|e| format!("{}: {e}", config.display()))?;
            println!(
                "{}: ok (mode {:?}, {} rules)",
                config.display(),
                c.mode,
                c.policy.rules.len()
            );
            Ok(())
        }
    }
}

/// YAML policy → JSON bundle. Validation errors carry the YAML line and column.
pub fn compile(yaml: &str) -> Result<String, String> {
    let policy: Policy = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
    let mut json = serde_json::to_string_pretty(&policy).map_err(|e| e.to_string())?;
    json.push('\n');
    Ok(json)
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(out: Option<&Path>, text: &str) -> Result<(), String> {
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
}
