//! How reporting commands print: text for people (the default) or JSON for
//! programs, like `opa … --format json` and `istioctl … -o json`.

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document (findings on standard error: one JSON object per line).
    Json,
}
