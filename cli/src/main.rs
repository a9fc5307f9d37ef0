//! `custody`: the command-line side of Custody. Every failure is one line on
//! stderr and a non-zero exit code, never a stack trace.

mod policy_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "custody",
    version,
    about = "Identity, authorization and proof for MCP tool calls in Envoy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile and check policies.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Check plugin configurations.
    #[command(subcommand)]
    Config(policy_cmd::ConfigCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(cmd) => policy_cmd::run_policy(cmd),
        Command::Config(cmd) => policy_cmd::run_config(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("custody: error: {message}");
            ExitCode::FAILURE
        }
    }
}
