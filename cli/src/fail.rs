//! How a command fails: one line on stderr and an exit code.
//!
//! - exit 1: `custody: refused: <reason_code>: <detail>`, a history, proof or
//!   certificate failed a check of `docs/history-format.md` (`policy` and
//!   `config` refusals print their findings themselves and exit 1);
//! - exit 2: `custody: error: <message>`, anything else: a bad argument, a
//!   missing or unreadable file, a key that does not fit its certificate.

use custody_history::Refusal;
use std::fmt;

/// A failed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A verification check failed (exit 1).
    Refused {
        reason: &'static str,
        detail: String,
    },
    /// A usage or input error (exit 2).
    Error(String),
}

impl Failure {
    pub fn refused(r: &Refusal) -> Failure {
        Failure::Refused {
            reason: r.reason(),
            detail: r.detail(),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Refused { .. } => 1,
            Failure::Error(_) => 2,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = match self {
            Failure::Refused { reason, detail } => format!("custody: refused: {reason}: {detail}"),
            Failure::Error(m) => format!("custody: error: {m}"),
        };
        f.write_str(&one_line(&line))
    }
}

/// Shorthand for an exit-2 error.
pub fn error(message: impl Into<String>) -> Failure {
    Failure::Error(message.into())
}

/// Folds any line breaks (e.g. from a library's error text) into spaces.
pub fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

pub type Result<T> = std::result::Result<T, Failure>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_codes() {
        let r = Failure::refused(&Refusal::ProofBody);
        assert_eq!(r.exit_code(), 1);
        assert!(r.to_string().starts_with("custody: refused: proof_body: "));
        let e = error("a\n  b\n\nc");
        assert_eq!(e.exit_code(), 2);
        assert_eq!(e.to_string(), "custody: error: a b c");
    }
}
