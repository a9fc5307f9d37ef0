//! `custody config check`: a plugin configuration checked exactly as the
//! filter parses it.

use crate::policy::compile::read;
use clap::Subcommand;
use custody_core::config::Config;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check a plugin configuration (JSON) exactly as the filter will parse it.
    Check {
        /// Plugin configuration file (the JSON placed in Envoy's StringValue or Istio's pluginConfig).
        config: PathBuf,
    },
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
