//! `custody policy compile | eval | test`: the same validation and decisions
//! the filter applies, run ahead of time with file and line context.

mod cases;
pub mod compile;
mod dev_pki;
pub mod eval;
pub mod lint;
mod mcp_methods;
mod rego_lint;
pub mod render;
mod test;

use crate::fail::{error, Failure};
use crate::finding::report;
use crate::output::Format;
use clap::Subcommand;
use compile::{compile_file, load_bundle, write, CompileError, Compiled};
use custody_core::policy_bundle;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check a policy (YAML) and write the JSON bundle the filter loads.
    ///
    /// Every `*.rego` file next to the policy (except `*_test.rego`) goes into
    /// the bundle's `modules`; every rule's `rego` must name a rule they define.
    ///
    /// Lints refuse rules that can never match (unknown MCP methods and
    /// pseudo-methods, target lists on methods that carry none, an empty rule
    /// set, Rego calling builtins the filter lacks or naming undefined rules);
    /// warnings for what a person may mean. Exit 0 compiled, 1 refused, 2 error.
    Compile {
        /// Policy file (YAML; JSON is YAML too; - for standard input, without Rego files).
        policy: PathBuf,
        /// Where to write the bundle; standard output if omitted.
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Treat warnings as errors.
        #[arg(long)]
        strict: bool,
        /// How findings are printed on standard error.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Render a policy as what the mesh applies: an Istio WasmPlugin, an Envoy
    /// HTTP filter entry or ECDS resource, or the plugin JSON, with the
    /// bundle's SHA-256 (`custody.dev/policy-sha256`).
    ///
    /// The policy is compiled (and linted) first. Exit 0 rendered, 1 refused, 2 error.
    Render {
        /// Policy file (YAML; - for standard input).
        policy: PathBuf,
        /// What to render.
        #[arg(long = "as", value_enum, value_name = "KIND")]
        target: render::Target,
        /// A plugin configuration (JSON) to put the policy into (its `policy` is replaced);
        /// default {"mode": "enforce"}, and for a WasmPlugin also identity
        /// istio_peer_principal and headers stream.
        #[arg(long, value_name = "PLUGIN.json")]
        config: Option<PathBuf>,
        /// The WasmPlugin's metadata.name, the Envoy filter's and VM's name.
        #[arg(long, default_value = "custody")]
        name: String,
        /// The WasmPlugin's namespace.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// The WasmPlugin's module URL.
        #[arg(long, default_value = "oci://REGISTRY/custody:0.1.0")]
        url: String,
        /// The module file of the Envoy outputs.
        #[arg(long, default_value = "dist/custody.wasm")]
        module: String,
        /// Where to write; standard output if omitted.
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Treat lint warnings as errors.
        #[arg(long)]
        strict: bool,
    },
    /// Decide one Rego input document with a policy, as the filter's decision
    /// stage does (its history taken as verified).
    ///
    /// Prints `allow (rule NAME)` or `deny (REASON)`. Exit 0 allow, 1 deny, 2 error.
    Eval {
        /// The compiled bundle (JSON, from `custody policy compile`).
        #[arg(
            long,
            value_name = "BUNDLE.json",
            required_unless_present = "policy",
            conflicts_with = "policy"
        )]
        bundle: Option<PathBuf>,
        /// A policy YAML instead of a bundle (compiled first, as `policy compile` does).
        #[arg(long, value_name = "POLICY.yaml")]
        policy: Option<PathBuf>,
        /// The Rego input document (JSON; - for standard input).
        #[arg(long, value_name = "INPUT.json")]
        input: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// With --policy: treat lint warnings as errors.
        #[arg(long)]
        strict: bool,
        /// Also print the input document (as completed) and every rule's verdict:
        /// caller, method and target matched or not, each require clause, the Rego result.
        #[arg(long)]
        explain: bool,
    },
    /// Run the Rego unit tests and decision cases of every policy under DIR,
    /// like `opa test`.
    ///
    /// Every directory holding a `policy.yaml` is compiled; its `*_test.rego`
    /// rules named `test_*` must be `true`, and every case of its
    /// `*.cases.yaml` files must get the expected decision. Exit 0 when all
    /// pass, 1 on any failure, 2 on an error.
    Test {
        /// Directory to search (recursively) for policy.yaml files.
        dir: PathBuf,
        /// Print every test and case, not only the failures.
        #[arg(short, long)]
        verbose: bool,
        /// Treat lint warnings as failures.
        #[arg(long)]
        strict: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// Runs a `policy` command. `Ok(code)` when the command reported its outcome
/// itself (a decision, a test summary, findings).
pub fn run_policy(cmd: PolicyCommand) -> Result<u8, Failure> {
    match cmd {
        PolicyCommand::Compile {
            policy,
            out,
            strict,
            format,
        } => {
            let bundle = match compile(&policy, strict, format)? {
                Ok(c) => c.policy,
                Err(code) => return Ok(code),
            };
            let mut prepared = bundle.clone();
            prepared.prepare_rego();
            for rule in prepared.interpreted_rego() {
                eprintln!("custody: note: rule '{rule}': the Rego register VM cannot compile its rule; the filter evaluates it with regorus's interpreter (same verdicts, several times slower)");
            }
            write(out.as_deref(), &policy_bundle::json(&bundle)).map_err(error)?;
            Ok(0)
        }
        PolicyCommand::Eval {
            bundle,
            policy,
            input,
            format,
            strict,
            explain,
        } => {
            let loaded = match (bundle, policy) {
                (Some(b), _) => load_bundle(&b).map_err(error)?,
                (None, Some(p)) => match compile(&p, strict, format)? {
                    Ok(c) => c.policy,
                    // A refused policy is an error here (exit 2), as any bad input.
                    Err(_) => return Ok(2),
                },
                (None, None) => return Err(error("give --bundle or --policy")),
            };
            eval::run(&loaded, &input, format, explain)
        }
        PolicyCommand::Render {
            policy,
            target,
            config,
            name,
            namespace,
            url,
            module,
            out,
            strict,
        } => {
            let compiled = match compile(&policy, strict, Format::Text)? {
                Ok(c) => c.policy,
                Err(code) => return Ok(code),
            };
            let base = match config {
                None => None,
                Some(path) => {
                    let text = compile::read_input(&path).map_err(error)?;
                    let value: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| error(format!("{}: {e}", path.display())))?;
                    Some(value.as_object().cloned().ok_or_else(|| {
                        error(format!(
                            "{}: a plugin configuration is a JSON object",
                            path.display()
                        ))
                    })?)
                }
            };
            let options = render::Options {
                target,
                base,
                name: &name,
                namespace: &namespace,
                url: &url,
                module: &module,
            };
            let text = render::render(&compiled, &options).map_err(error)?;
            write(out.as_deref(), &text).map_err(error)?;
            Ok(0)
        }
        PolicyCommand::Test {
            dir,
            verbose,
            strict,
            format,
        } => test::run(&dir, verbose, strict, format),
    }
}

/// Compiles `path`, printing its findings on standard error. `Ok(Err(1))`
/// when the policy is refused (the findings say why); `Err` when a file
/// cannot be read.
pub fn compile(path: &Path, strict: bool, format: Format) -> Result<Result<Compiled, u8>, Failure> {
    match compile_file(path, strict) {
        Ok(c) => {
            report(&c.warnings, format);
            Ok(Ok(c))
        }
        Err(CompileError::Refused(findings)) => {
            report(&findings, format);
            Ok(Err(1))
        }
        Err(CompileError::Unreadable(e)) => Err(error(e)),
    }
}
