//! `custody config check`: the pre-ship gate. Finds every Custody filter of
//! a plugin configuration, Envoy bootstrap, LDS/ECDS resources or Istio
//! WasmPlugin, parses each configuration with the filter's own parser
//! (`custody_core::config::Config::from_json`), and checks what the
//! filter's guarantees rest on in Envoy ([`guarantees`]).

mod find;
mod guarantees;

use crate::fail::{error, Failure};
use crate::finding::{report, Finding, Severity};
use crate::output::Format;
use clap::Subcommand;
use custody_core::config::Config;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check every Custody filter of a file exactly as the filter will parse
    /// its configuration, and what its guarantees rest on in Envoy.
    ///
    /// FILE is a plugin configuration (JSON), an Envoy bootstrap, LDS or ECDS
    /// resources (YAML or JSON), or an Istio WasmPlugin manifest (several
    /// YAML documents allowed); - reads standard input. Exit 0 every filter
    /// accepted and no error, 1 a refusal or an error (with --strict also a
    /// warning), 2 a file that cannot be read or parsed.
    Check {
        /// The file to check (- for standard input).
        config: PathBuf,
        /// Treat warnings as errors.
        #[arg(long)]
        strict: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// Runs `config check`; `Ok(code)`: the report was printed.
pub fn run_config(cmd: ConfigCommand) -> Result<u8, Failure> {
    let ConfigCommand::Check {
        config: path,
        strict,
        format,
    } = cmd;
    let file = path.display().to_string();
    let text = crate::policy::compile::read_input(&path).map_err(error)?;
    let docs = documents(&text).map_err(|e| error(format!("{file}: {e}")))?;
    let bare = text.trim_start().starts_with('{').then_some(text.as_str());
    let (filters, others) = find::filters(&docs, bare);
    if filters.is_empty() {
        let why = if others.is_empty() {
            "no Custody filter found (a plugin configuration, or a wasm filter whose root_id, vm_id or module names custody)".to_owned()
        } else {
            format!(
                "no Custody filter found; wasm filters of other plugins at {}",
                others.join(", ")
            )
        };
        report(&[Finding::error(&file, None, "", why)], format);
        return Ok(1);
    }
    let mut findings = Vec::new();
    let mut checked = Vec::new();
    for f in &filters {
        let parsed = f
            .config
            .clone()
            .and_then(|c| Config::from_json(c.as_bytes()));
        match &parsed {
            Ok(config) => findings.extend(guarantees::check(&file, f, config)),
            Err(e) => findings.push(Finding::error(
                &file,
                None,
                &f.location,
                format!("refused: {e}"),
            )),
        }
        checked.push((f, parsed));
    }
    let failed = findings
        .iter()
        .any(|f| f.severity == Severity::Error || strict);
    match format {
        Format::Text => {
            let mut out = String::new();
            for (f, parsed) in &checked {
                if let Ok(c) = parsed {
                    let place = if f.location.is_empty() {
                        file.clone()
                    } else {
                        format!("{file}: {}", f.location)
                    };
                    out.push_str(&format!("{place}: ok ({})\n", summary(c)));
                }
            }
            crate::util::print(&out)?;
            report(&findings, format);
        }
        Format::Json => {
            let filters: Vec<Value> = checked
                .iter()
                .map(|(f, parsed)| match parsed {
                    Ok(c) => json!({"location": f.location, "ok": true, "mode": c.mode.name(),
                        "identity": c.identity.name(), "headers": c.headers.name(),
                        "rules": c.policy.rules.len(), "verifies_history": c.verifies_history()}),
                    Err(e) => json!({"location": f.location, "ok": false, "error": e}),
                })
                .collect();
            let doc = json!({
                "file": file, "ok": !failed, "filters": filters,
                "findings": findings.iter().map(Finding::to_json).collect::<Vec<_>>(),
            });
            crate::util::print(&format!("{doc}\n"))?;
        }
    }
    Ok(u8::from(failed))
}

/// The configuration's own values: `mode enforce, identity peer_certificate, …`.
fn summary(c: &Config) -> String {
    format!(
        "mode {}, identity {}, headers {}, {} rules{}",
        c.mode.name(),
        c.identity.name(),
        c.headers.name(),
        c.policy.rules.len(),
        if c.verifies_history() {
            ", verifies history"
        } else {
            ""
        }
    )
}

/// Every YAML (or JSON) document of `text`, empty ones skipped.
fn documents(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| e.to_string())?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}
