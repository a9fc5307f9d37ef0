//! Path-style globs for policy patterns: `*` matches any run of characters
//! within one `/`-separated segment (possibly empty), `**` as a whole segment
//! matches one or more segments. There is no escaping: a literal `*` cannot be
//! matched, and no SPIFFE ID, MCP method or tool name contains one.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`: one or more whole segments.
    Deep,
    /// Literal text with `*` wildcards, within one segment.
    Pattern(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobError {
    Empty,
    /// `**` inside a segment (`a**`) or `***`.
    DeepNotWholeSegment,
}

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GlobError::Empty => "empty pattern",
            GlobError::DeepNotWholeSegment => {
                "'**' must be a whole path segment, as in 'a/**' or 'a/**/b'"
            }
        })
    }
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        let segments = pattern
            .split('/')
            .map(|seg| match seg {
                "**" => Ok(Segment::Deep),
                s if s.contains("**") => Err(GlobError::DeepNotWholeSegment),
                s => Ok(Segment::Pattern(s.to_owned())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Glob {
            source: pattern.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the pattern has no wildcard at all.
    pub fn is_literal(&self) -> bool {
        !self.source.contains('*')
    }

    pub fn matches(&self, text: &str) -> bool {
        if self.is_literal() {
            return self.source == text;
        }
        let parts: Vec<&str> = text.split('/').collect();
        match_segments(&self.segments, &parts)
    }
}

/// `**` segments make this a small DP over (pattern segment, text segment):
/// O(pattern × text) however hostile the text, never exponential.
fn match_segments(pattern: &[Segment], parts: &[&str]) -> bool {
    // rest[j]: pattern[i..] matches parts[j..], for the current i.
    let mut rest = vec![false; parts.len() + 1];
    rest[parts.len()] = true;
    for seg in pattern.iter().rev() {
        let mut here = vec![false; parts.len() + 1];
        for j in (0..parts.len()).rev() {
            here[j] = match seg {
                Segment::Deep => rest[j + 1] || here[j + 1],
                Segment::Pattern(p) => rest[j + 1] && wildcard(p.as_bytes(), parts[j].as_bytes()),
            };
        }
        rest = here;
    }
    rest[0]
}

/// `*`-only wildcard match with one backtrack point: O(pattern × text).
fn wildcard(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn m(p: &str, t: &str) -> bool {
        Glob::new(p).unwrap().matches(t)
    }

    #[test]
    fn star_stays_within_a_segment() {
        assert!(m("refund_*", "refund_card"));
        assert!(m("refund_*", "refund_"));
        assert!(!m("refund_*", "refunds"));
        assert!(m(
            "spiffe://example.org/ns/payments/sa/fraud-*",
            "spiffe://example.org/ns/payments/sa/fraud-agent"
        ));
        assert!(!m(
            "spiffe://example.org/ns/payments/sa/fraud-*",
            "spiffe://example.org/ns/payments/sa/fraud-agent/x"
        ));
        assert!(m("notifications/*", "notifications/initialized"));
        assert!(!m("*", "tools/call"));
        assert!(m("*", "ping"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("*.csv", "ré.csv"));
    }

    #[test]
    fn double_star_spans_one_or_more_segments() {
        let all = "spiffe://example.org/**";
        assert!(m(all, "spiffe://example.org/ns/a/sa/b"));
        assert!(m(all, "spiffe://example.org/x"));
        assert!(!m(all, "spiffe://example.org"));
        assert!(!m(all, "spiffe://example.org.evil/x"));
        assert!(!m(all, "spiffe://example.org.evil"));
        assert!(m(
            "spiffe://example.org/ns/**/sa/x",
            "spiffe://example.org/ns/a/b/sa/x"
        ));
        assert!(!m(
            "spiffe://example.org/ns/**/sa/x",
            "spiffe://example.org/ns/sa/x"
        ));
        assert!(m("**", "http:GET"));
        assert!(m("**", "tools/call"));
    }

    #[test]
    fn literals_match_exactly() {
        assert!(m("tools/call", "tools/call"));
        assert!(!m("tools/call", "tools/call2"));
        assert!(!m("spiffe://example.org/a", "spiffe://example.org/a/b"));
        assert!(Glob::new("x").unwrap().is_literal());
    }

    #[test]
    fn refuses_malformed_patterns() {
        assert_eq!(Glob::new(""), Err(GlobError::Empty));
        assert_eq!(Glob::new("a**"), Err(GlobError::DeepNotWholeSegment));
        assert_eq!(Glob::new("a/***/b"), Err(GlobError::DeepNotWholeSegment));
        assert!(Glob::new("a/**/b").is_ok());
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let p = Glob::new(&"*a".repeat(40)).unwrap();
        assert!(p.matches(&"a".repeat(59)));
        assert!(!p.matches(&"a".repeat(39)));
        assert!(!p.matches(&format!("{}b", "a".repeat(100_000))));
        let deep = Glob::new(&["**"; 8].join("/")).unwrap();
        assert!(!deep.matches(&["x"; 7].join("/")));
        assert!(deep.matches(&["x"; 50_000].join("/")));
    }
}
