//! A finding of a check (`policy compile`'s lints, `config check`'s
//! guarantees): an error or a warning at a place in a file, printed as one
//! line or one JSON object.

use crate::output::Format;
use crate::yaml_pos::Pos;
use serde_json::json;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding, at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub file: String,
    pub pos: Option<Pos>,
    /// Where in the document (`rules[0].methods[1]`), or a Rego rule's name.
    pub path: String,
    pub message: String,
}

impl Finding {
    pub fn new(
        severity: Severity,
        file: &str,
        pos: Option<Pos>,
        path: &str,
        message: String,
    ) -> Finding {
        Finding {
            severity,
            file: file.to_owned(),
            pos,
            path: path.to_owned(),
            message,
        }
    }

    pub fn error(file: &str, pos: Option<Pos>, path: &str, message: String) -> Finding {
        Finding::new(Severity::Error, file, pos, path, message)
    }

    pub fn warning(file: &str, pos: Option<Pos>, path: &str, message: String) -> Finding {
        Finding::new(Severity::Warning, file, pos, path, message)
    }

    /// `custody: error: …` or `custody: warning: …`: one line.
    pub fn line(&self) -> String {
        let word = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        crate::fail::one_line(&format!("custody: {word}: {self}"))
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "severity": match self.severity { Severity::Error => "error", Severity::Warning => "warning" },
            "file": self.file,
            "line": self.pos.map(|p| p.line),
            "column": self.pos.map(|p| p.column),
            "path": self.path,
            "message": self.message,
        })
    }
}

/// `FILE:LINE:COLUMN: PATH: MESSAGE` (without the position when unknown).
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(p) = self.pos {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Findings on standard error: one line each (`custody: error: FILE:LINE:COLUMN: …`),
/// or one JSON object per line.
pub fn report(findings: &[Finding], format: Format) {
    for f in findings {
        match format {
            Format::Text => eprintln!("{}", f.line()),
            Format::Json => eprintln!("{}", f.to_json()),
        }
    }
}

/// The one finding of a check under test; fails the test on none or several.
#[cfg(test)]
pub fn only(findings: Vec<Finding>) -> Finding {
    assert_eq!(findings.len(), 1, "{findings:#?}");
    findings
        .into_iter()
        .next()
        .unwrap_or_else(|| unreachable!())
}
