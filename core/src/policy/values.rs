//! The values a policy is made of, each checked as it is read: step names,
//! `within` durations, the default action, what a clause binds, and the
//! caller, method and name patterns (globs). None of them knows about rules.

use crate::glob::Glob;
use serde::{Deserialize, Serialize};

/// Only `deny` exists: Custody never allows what no rule names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    #[default]
    Deny,
}

/// What a `require` clause's entry is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Binds {
    /// The exact call: tool, prompt or resource, and the hash of its arguments.
    Call,
}

/// A step name: 1-128 characters of `[A-Za-z0-9._:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StepName(String);

impl TryFrom<String> for StepName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if !ok {
            return Err(format!(
                "step '{s}' must be 1-128 characters of [A-Za-z0-9._:-]"
            ));
        }
        Ok(StepName(s))
    }
}

impl StepName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<StepName> for String {
    fn from(s: StepName) -> String {
        s.0
    }
}

/// A `within` bound: a duration in Custody's one grammar ([`crate::duration`],
/// e.g. `45s`, `30m`, `1h30m`, `1d`), at least one second, at most 30 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Within(pub u64);

impl TryFrom<String> for Within {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let secs = crate::duration::parse(&s)?;
        if !(1..=30 * 86400).contains(&secs) {
            return Err(format!("duration '{s}' must be between 1s and 30d"));
        }
        Ok(Within(secs))
    }
}

impl From<Within> for String {
    fn from(d: Within) -> String {
        crate::duration::format(d.0)
    }
}

/// Declares a glob pattern type read from a string: `check` refuses what
/// this kind of pattern may not contain, then the glob itself is parsed.
macro_rules! glob_pattern {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(pub(super) Glob);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(&s)?;
                Glob::new(&s)
                    .map(Self)
                    .map_err(|e| format!("{} '{s}': {e}", $kind))
            }
        }

        impl From<$name> for String {
            fn from(p: $name) -> String {
                p.0.as_str().to_owned()
            }
        }
    };
}

glob_pattern!(
    /// A SPIFFE ID pattern: a literal trust domain, `*`/`**` only in the path.
    CallerPattern,
    "caller",
    |s| {
        custody_spiffe::check(s, true)
            .map(drop)
            .map_err(|e| format!("caller '{s}' is not a SPIFFE ID pattern: {e}"))
    }
);

glob_pattern!(
    /// An MCP method pattern, e.g. `tools/call`, `notifications/*`, `http:GET`.
    MethodPattern,
    "method",
    |s| {
        let ok = s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.' | b':' | b'*')
        });
        match ok {
            true => Ok(()),
            false => Err(format!("method '{s}' may only contain [A-Za-z0-9/_.:*-]")),
        }
    }
);

glob_pattern!(
    /// A tool name, prompt name or resource URI pattern.
    NamePattern,
    "pattern",
    |s| match s.chars().any(char::is_control) {
        true => Err(format!("pattern {s:?} contains a control character")),
        false => Ok(()),
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn within_is_a_duration_of_one_second_to_thirty_days() {
        let d = |s: &str| Within::try_from(s.to_owned());
        assert_eq!(d("30m"), Ok(Within(1800)));
        assert_eq!(d("1h30m"), Ok(Within(5400)));
        assert_eq!(d("1d"), Ok(Within(86_400)));
        assert_eq!(d("30d"), Ok(Within(30 * 86_400)));
        assert_eq!(d("720h"), Ok(Within(30 * 86_400)));
        for bad in ["", "30", "30x", "0s", "721h", "30d1s", "-5m"] {
            assert!(d(bad).is_err(), "{bad}");
        }
        assert_eq!(String::from(Within(5400)), "1h30m");
        assert_eq!(String::from(Within(86_400)), "1d");
    }
}
