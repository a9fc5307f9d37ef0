//! How reporting commands print: text for people (the default) or JSON for
//! programs, like `opa … --format json` and `istioctl … -o json`.

use crate::fail::Result;
use crate::util::print;
use clap::ValueEnum;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document (findings on standard error: one JSON object per line).
    Json,
}

/// Prints a command's result: `text` for people, or `json` as one line.
pub fn report(format: Format, text: String, json: serde_json::Value) -> Result<()> {
    print(&match format {
        Format::Text => text,
        Format::Json => format!("{json}\n"),
    })
}
