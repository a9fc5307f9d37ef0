//! `custody`: the command-line side of Custody. Every failure is one line on
//! stderr and a non-zero exit code, never a stack trace.
//!
//! Exit codes: 0 success; 1 a refusal (`custody: refused: <reason_code>: …`,
//! from `history verify`), a `policy`/`config` error, a `policy eval` deny or
//! a `policy test` failure; 2 any other error of the `ca`, `history` and
//! `policy eval`/`test` commands, and every usage error.

mod bind;
mod ca_cmd;
mod config_check;
mod fail;
mod finding;
mod headers;
mod history_cmd;
mod output;
mod pki;
mod policy;
mod util;
mod yaml_pos;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use fail::one_line;
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
    /// Compile, evaluate and test policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Check plugin configurations.
    #[command(subcommand)]
    Config(config_check::ConfigCommand),
    /// A development CA: trust bundle and X.509-SVIDs.
    #[command(subcommand)]
    Ca(ca_cmd::CaCommand),
    /// Sign, prove and verify signed workflow histories.
    #[command(subcommand)]
    History(history_cmd::HistoryCommand),
    /// Print the version and the git revision this command was built from.
    Version {
        /// Output format.
        #[arg(long, value_enum, default_value_t = output::Format::Text)]
        format: output::Format,
    },
}

/// `custody VERSION (git REVISION)`, or the same as JSON.
fn version(format: output::Format) -> String {
    let (version, revision) = (env!("CARGO_PKG_VERSION"), env!("CUSTODY_GIT_REVISION"));
    match format {
        output::Format::Text => format!("custody {version} (git {revision})\n"),
        output::Format::Json => {
            format!(
                "{}\n",
                serde_json::json!({"version": version, "git_revision": revision})
            )
        }
    }
}

/// A clap error as one line: the message, its tips, and the usage line.
fn usage_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut message = Vec::new();
    let mut usage = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(u) = line.strip_prefix("Usage: ") {
            usage = Some(u.to_owned());
            break;
        }
        message.push(line.strip_prefix("error: ").unwrap_or(line).to_owned());
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        message = vec!["a subcommand is required".to_owned()];
    }
    let mut line = message.join(" ");
    if let Some(u) = usage {
        line.push_str(&format!(" (usage: {u}; try --help)"));
    }
    one_line(&line)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            // --help and --version: clap prints to stdout; exit 0 (or 2 if stdout is closed).
            return match e.print() {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(2),
            };
        }
        Err(e) => {
            eprintln!("custody: error: {}", usage_line(&e));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Policy(cmd) => match policy::run_policy(cmd) {
            // The command printed its outcome (a decision, a test summary).
            Ok(code) => return ExitCode::from(code),
            Err(failure) => Err(failure),
        },
        Command::Config(cmd) => match config_check::run_config(cmd) {
            Ok(code) => return ExitCode::from(code),
            Err(failure) => Err(failure),
        },
        Command::Ca(cmd) => ca_cmd::run(cmd),
        Command::History(cmd) => history_cmd::run(cmd),
        Command::Version { format } => util::print(&version(format)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `custody` with `args` (split on white space), as parsed.
    fn parse(args: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("custody").chain(args.split_whitespace()))
    }

    /// The one-line usage error of `custody` with `args`; empty if they parse.
    fn parse_err(args: &str) -> String {
        match parse(args) {
            Ok(_) => String::new(),
            Err(e) => usage_line(&e),
        }
    }

    #[test]
    fn version_names_the_revision() {
        let text = version(output::Format::Text);
        assert!(
            text.starts_with(&format!("custody {} (git ", env!("CARGO_PKG_VERSION"))),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&version(output::Format::Json)).unwrap();
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        let rev = v["git_revision"].as_str().unwrap();
        assert!(
            rev == "unknown" || (rev.len() == 12 && rev.bytes().all(|b| b.is_ascii_hexdigit())),
            "{rev}"
        );
    }

    #[test]
    fn usage_errors_are_one_line() {
        let m = parse_err("ca init --out d");
        assert!(m.contains("--trust-domain <TD>"), "{m}");
        assert!(!m.contains('\n'));
        let m = parse_err("ca");
        assert!(m.starts_with("a subcommand is required"), "{m}");
        let m = parse_err("ca issue --ca d --out o --id spiffe://Bad/x");
        assert!(
            m.contains("invalid value") && m.contains("trust domain"),
            "{m}"
        );
        let m = parse_err(
            "history append --cert c --key k --step s --result r \
             --next spiffe://example.org/x --out o --ttl 1y",
        );
        assert!(m.contains("bad duration"), "{m}");
    }

    #[test]
    fn arguments_parse() {
        let cli = parse(
            "ca issue --ca d --id spiffe://example.org/envoy --out o \
             --dns localhost --dns 127.0.0.1.nip.io --ttl 1h30m",
        )
        .unwrap();
        match cli.command {
            Command::Ca(ca_cmd::CaCommand::Issue { ttl, dns, .. }) => {
                assert_eq!(ttl, 5400);
                assert_eq!(dns, ["localhost", "127.0.0.1.nip.io"]);
            }
            _ => unreachable!("parsed as another command"),
        }
        let cli =
            parse("history prove --in h --cert c --key k --aud spiffe://example.org/tool --body -")
                .unwrap();
        match cli.command {
            Command::History(history_cmd::HistoryCommand::Prove { ttl, format, .. }) => {
                assert_eq!(ttl, 60);
                assert_eq!(format, history_cmd::Format::Headers);
            }
            _ => unreachable!("parsed as another command"),
        }
        // verify requires the proof arguments (no entries-only verification).
        let m = parse_err("history verify --in h --bundle b");
        assert!(m.contains("--proof-headers"), "{m}");
    }
}
