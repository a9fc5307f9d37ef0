//! The files that carry the three request headers between commands.
//!
//! A *headers file* is either
//! - a JSON object whose members are header names (`workflow-history`,
//!   `workflow-history-certs`, and for `history prove --format json` also
//!   `workflow-history-proof`) and whose values are the header values
//!   (strings); any other member, a non-string value or a repeated member is
//!   refused; or
//! - `name: value` lines, as printed by `custody history prove` and read by
//!   `curl -H @FILE`: header names are case-insensitive, blank lines and
//!   other headers are ignored, a repeated history header is refused.

use custody_history::{b64url, b64url_decode, Header};
use serde_json::{Map, Value};

/// The history headers read from or written to a file (each at most once).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderSet {
    pub history: Option<String>,
    pub proof: Option<String>,
    pub certs: Option<String>,
}

/// Why a headers file cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A history header given twice (the verifier's `header_repeated`).
    Repeated(Header),
    Other(String),
}

const HEADERS: [Header; 3] = [Header::History, Header::Proof, Header::Certs];

fn header_named(name: &str) -> Option<Header> {
    HEADERS
        .into_iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))
}

impl HeaderSet {
    /// Parses a headers file in either format (JSON when it starts with `{`).
    pub fn parse(text: &str) -> Result<HeaderSet, ParseError> {
        if text.trim_start().starts_with('{') {
            HeaderSet::from_json(text)
        } else {
            HeaderSet::from_lines(text)
        }
    }

    fn slot(&mut self, h: Header) -> &mut Option<String> {
        match h {
            Header::History => &mut self.history,
            Header::Proof => &mut self.proof,
            Header::Certs => &mut self.certs,
        }
    }

    fn set(&mut self, h: Header, value: String) -> Result<(), ParseError> {
        let slot = self.slot(h);
        if slot.is_some() {
            return Err(ParseError::Repeated(h));
        }
        *slot = Some(value);
        Ok(())
    }

    fn from_json(text: &str) -> Result<HeaderSet, ParseError> {
        let doc = custody_json::parse_strict(text.as_bytes(), 8).map_err(|e| match e {
            custody_json::JsonError::DuplicateKey(k) => match header_named(&k) {
                Some(h) if h.name() == k => ParseError::Repeated(h),
                _ => ParseError::Other(format!("the member {k:?} appears twice")),
            },
            custody_json::JsonError::Malformed => ParseError::Other("not valid JSON".into()),
            custody_json::JsonError::TooDeep => ParseError::Other("nested too deeply".into()),
        })?;
        let Value::Object(members) = doc else {
            return Err(ParseError::Other("not a JSON object".into()));
        };
        let mut set = HeaderSet::default();
        for (k, v) in members {
            // Exact (lowercase) names in JSON: a typo must not pass unnoticed.
            let h = HEADERS.into_iter().find(|h| h.name() == k).ok_or_else(|| {
                ParseError::Other(format!(
                    "unknown member {k:?} (expected workflow-history, workflow-history-certs, workflow-history-proof)"
                ))
            })?;
            let Value::String(s) = v else {
                return Err(ParseError::Other(format!("{k} must be a string")));
            };
            set.set(h, s)?;
        }
        Ok(set)
    }

    fn from_lines(text: &str) -> Result<HeaderSet, ParseError> {
        let mut set = HeaderSet::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let (name, value) = line.split_once(':').ok_or_else(|| {
                ParseError::Other(format!(
                    "line {}: expected `name: value` (or a JSON object)",
                    n + 1
                ))
            })?;
            if let Some(h) = header_named(name.trim()) {
                set.set(h, value.trim().to_owned())?;
            }
        }
        Ok(set)
    }

    /// Pretty JSON with the headers present, and a final newline.
    pub fn to_json(&self) -> String {
        let mut m = Map::new();
        for h in HEADERS {
            if let Some(v) = self.get(h) {
                m.insert(h.name().to_owned(), Value::String(v.to_owned()));
            }
        }
        let mut s = serde_json::to_string_pretty(&Value::Object(m)).unwrap_or_default();
        s.push('\n');
        s
    }

    /// `name: value` lines in the order history, proof, certs.
    pub fn to_lines(&self) -> String {
        HEADERS
            .into_iter()
            .filter_map(|h| self.get(h).map(|v| format!("{}: {v}\n", h.name())))
            .collect()
    }

    pub fn get(&self, h: Header) -> Option<&str> {
        match h {
            Header::History => self.history.as_deref(),
            Header::Proof => self.proof.as_deref(),
            Header::Certs => self.certs.as_deref(),
        }
    }
}

/// `existing` (a `workflow-history-certs` value) plus each of `add` (DER)
/// that it does not already hold, compared by DER bytes; existing values
/// are kept verbatim and in order.
pub fn merge_certs(existing: Option<&str>, add: &[Vec<u8>]) -> Result<String, String> {
    let mut parts: Vec<String> = Vec::new();
    let mut ders: Vec<Vec<u8>> = Vec::new();
    if let Some(e) = existing {
        for (i, b64) in e.split('~').enumerate() {
            let der = b64url_decode(b64).ok_or_else(|| {
                format!("workflow-history-certs: certificate {i} is not canonical base64url")
            })?;
            if !ders.contains(&der) {
                parts.push(b64.to_owned());
                ders.push(der);
            }
        }
    }
    for der in add {
        if !ders.contains(der) {
            parts.push(b64url(der));
            ders.push(der.clone());
        }
    }
    Ok(parts.join("~"))
}

/// The payload of a compact JWS as a JSON object, without verifying anything.
pub fn peek_payload(compact: &str) -> Option<Map<String, Value>> {
    let p = compact.split('.').nth(1)?;
    let bytes = b64url_decode(p)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// A string member of the last entry of a `workflow-history` value (unverified).
pub fn last_entry_member(history: &str, member: &str) -> Option<String> {
    let last = history.rsplit('~').next()?;
    peek_payload(last)?
        .get(member)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `write` makes `text` of `set`, which parses back to `set`.
    fn round_trips(set: &HeaderSet, write: fn(&HeaderSet) -> String, text: &str) {
        assert_eq!(write(set), text);
        assert_eq!(&HeaderSet::parse(text).unwrap(), set);
    }

    #[test]
    fn json_round_trip() {
        let set = HeaderSet {
            history: Some("a.b.c~d.e.f".into()),
            proof: None,
            certs: Some("AAAA".into()),
        };
        round_trips(
            &set,
            HeaderSet::to_json,
            "{\n  \"workflow-history\": \"a.b.c~d.e.f\",\n  \"workflow-history-certs\": \"AAAA\"\n}\n",
        );
    }

    #[test]
    fn lines_round_trip_and_other_headers() {
        let set = HeaderSet {
            history: Some("a.b.c".into()),
            proof: Some("p.q.r".into()),
            certs: Some("AAAA~BBBB".into()),
        };
        round_trips(
            &set,
            HeaderSet::to_lines,
            "workflow-history: a.b.c\nworkflow-history-proof: p.q.r\nworkflow-history-certs: AAAA~BBBB\n",
        );
        let crlf = "Content-Type: application/json\r\n\r\nWorkflow-History:a.b.c\r\n";
        let got = HeaderSet::parse(crlf).unwrap();
        assert_eq!(got.history.as_deref(), Some("a.b.c"));
        assert_eq!(got.proof, None);
    }

    #[test]
    fn refusals() {
        assert_eq!(
            HeaderSet::parse("workflow-history: a\nworkflow-history: b\n"),
            Err(ParseError::Repeated(Header::History))
        );
        assert_eq!(
            HeaderSet::parse(r#"{"workflow-history-proof":"a","workflow-history-proof":"b"}"#),
            Err(ParseError::Repeated(Header::Proof))
        );
        for bad in [
            r#"{"workflow_history":"a"}"#,
            r#"{"workflow-history":1}"#,
            r#"{"Workflow-History":"a"}"#,
            "[1]",
            "{",
            "no colon here",
        ] {
            assert!(
                matches!(HeaderSet::parse(bad), Err(ParseError::Other(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn certs_are_deduplicated_by_der() {
        let a = vec![1u8, 2, 3];
        let b = vec![4u8, 5, 6];
        let start = merge_certs(None, std::slice::from_ref(&a)).unwrap();
        assert_eq!(start, b64url(&a));
        let both = merge_certs(Some(&start), &[a.clone(), b.clone()]).unwrap();
        assert_eq!(both, format!("{}~{}", b64url(&a), b64url(&b)));
        assert_eq!(merge_certs(Some(&both), &[b, a]).unwrap(), both);
        assert!(merge_certs(Some("AQID="), &[]).is_err());
    }

    #[test]
    fn peeks_the_last_entry() {
        let payload = b64url(br#"{"wid":"w1","nxt":"spiffe://example.org/x"}"#);
        let h = format!("x.e30.s~h.{payload}.s");
        assert_eq!(last_entry_member(&h, "wid").as_deref(), Some("w1"));
        assert_eq!(last_entry_member(&h, "seq"), None);
        assert_eq!(last_entry_member("garbage", "wid"), None);
    }
}
