//! `custody policy compile | eval | test`: the same validation and decisions
//! the filter applies, run ahead of time with file and line context.

mod cases;
pub mod compile;
mod dev_pki;
pub mod eval;
mod test;

use crate::fail::{error, Failure};
use clap::Subcommand;
use compile::{bundle_json, compile_file, load_bundle, write};
use eval::EvalFormat;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check a policy (YAML) and write the JSON bundle the filter loads.
    ///
    /// Every `*.rego` file next to the policy (except `*_test.rego`) goes into
    /// the bundle's `modules`; every rule's `rego` must name a rule they define.
    Compile {
        /// Policy file (YAML; JSON is YAML too).
        policy: PathBuf,
        /// Where to write the bundle; standard output if omitted.
        #[arg(short, long)]
        out: Option<PathBuf>,
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
        #[arg(long, value_enum, default_value_t = EvalFormat::Text)]
        format: EvalFormat,
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
    },
}

/// Runs a `policy` command. `Ok(code)` when the command reported its outcome
/// itself (a decision or a test summary, on standard output).
pub fn run_policy(cmd: PolicyCommand) -> Result<u8, Failure> {
    match cmd {
        PolicyCommand::Compile { policy, out } => {
            let bundle = compile_file(&policy).map_err(Failure::Policy)?;
            let mut prepared = bundle.clone();
            prepared.prepare_rego();
            for rule in prepared.interpreted_rego() {
                eprintln!("custody: note: rule '{rule}': the Rego register VM cannot compile its rule; the filter evaluates it with regorus's interpreter (same verdicts, several times slower)");
            }
            write(out.as_deref(), &bundle_json(&bundle)?).map_err(Failure::Policy)?;
            Ok(0)
        }
        PolicyCommand::Eval {
            bundle,
            policy,
            input,
            format,
        } => {
            let loaded = match (bundle, policy) {
                (Some(b), _) => load_bundle(&b),
                (None, Some(p)) => compile_file(&p),
                (None, None) => Err("give --bundle or --policy".to_owned()),
            }
            .map_err(error)?;
            eval::run(&loaded, &input, format)
        }
        PolicyCommand::Test { dir, verbose } => test::run(&dir, verbose),
    }
}
