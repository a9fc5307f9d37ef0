//! SPIFFE IDs, parsed strictly per the SPIFFE ID specification.
//!
//! `spiffe://<trust-domain>/<path>`: lowercase trust domain of `[a-z0-9.-_]`,
//! path segments of `[A-Za-z0-9.-_]` that are neither empty nor `.`/`..`,
//! no port, userinfo, query, fragment or percent-encoding, at most 2048 bytes.
//! Anything else is refused: an identity is compared as a string afterwards,
//! so two spellings of one ID must never both parse.

use std::fmt;

/// Longest SPIFFE ID accepted, in bytes (SPIFFE ID spec §2.3).
pub const MAX_LEN: usize = 2048;
/// Longest trust domain accepted, in bytes (SPIFFE ID spec §2.1).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;
const SCHEME: &str = "spiffe://";

/// Why a string is not a SPIFFE ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpiffeIdError {
    Empty,
    TooLong,
    WrongScheme,
    EmptyTrustDomain,
    TrustDomainTooLong,
    /// Uppercase, `:` (port), `@` (userinfo), `%` or any other character outside `[a-z0-9.-_]`.
    BadTrustDomainChar,
    EmptySegment,
    DotSegment,
    /// `?`, `#`, `%` or any other character outside `[A-Za-z0-9.-_]`.
    BadPathChar,
    TrailingSlash,
}

impl fmt::Display for SpiffeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty SPIFFE ID",
            Self::TooLong => "SPIFFE ID longer than 2048 bytes",
            Self::WrongScheme => "SPIFFE ID must start with spiffe://",
            Self::EmptyTrustDomain => "SPIFFE ID has an empty trust domain",
            Self::TrustDomainTooLong => "trust domain longer than 255 bytes",
            Self::BadTrustDomainChar => "trust domain may only contain [a-z0-9.-_]",
            Self::EmptySegment => "SPIFFE ID path has an empty segment",
            Self::DotSegment => "SPIFFE ID path has a '.' or '..' segment",
            Self::BadPathChar => "SPIFFE ID path may only contain [A-Za-z0-9.-_] and '/'",
            Self::TrailingSlash => "SPIFFE ID path ends with '/'",
        })
    }
}

impl std::error::Error for SpiffeIdError {}

/// A valid SPIFFE ID. Its string form is canonical: equal IDs are equal strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    id: String,
    td_end: usize,
}

impl SpiffeId {
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        let td_end = check(s, false)?;
        Ok(Self {
            id: s.to_owned(),
            td_end,
        })
    }

    /// The trust domain name, e.g. `example.org`.
    pub fn trust_domain(&self) -> &str {
        &self.id[SCHEME.len()..self.td_end]
    }

    /// The path including its leading `/`, or `""` for a trust domain ID.
    pub fn path(&self) -> &str {
        &self.id[self.td_end..]
    }

    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl std::str::FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// Checks a trust domain name on its own (e.g. a key in a trust bundle map).
pub fn check_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    if !td.bytes().all(is_trust_domain_byte) {
        return Err(SpiffeIdError::BadTrustDomainChar);
    }
    Ok(())
}

/// Checks the shape of a SPIFFE ID and returns the end offset of its trust domain.
/// With `allow_glob`, path segments may also contain `*` (used by policy patterns).
pub fn check(s: &str, allow_glob: bool) -> Result<usize, SpiffeIdError> {
    if s.is_empty() {
        return Err(SpiffeIdError::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(SpiffeIdError::TooLong);
    }
    let rest = s.strip_prefix(SCHEME).ok_or(SpiffeIdError::WrongScheme)?;
    let td_len = rest.find('/').unwrap_or(rest.len());
    check_trust_domain(&rest[..td_len])?;
    let path = &rest[td_len..];
    if !path.is_empty() {
        if path.ends_with('/') {
            return Err(SpiffeIdError::TrailingSlash);
        }
        for segment in path[1..].split('/') {
            check_segment(segment, allow_glob)?;
        }
    }
    Ok(SCHEME.len() + td_len)
}

fn check_segment(segment: &str, allow_glob: bool) -> Result<(), SpiffeIdError> {
    match segment {
        "" => Err(SpiffeIdError::EmptySegment),
        "." | ".." => Err(SpiffeIdError::DotSegment),
        _ if segment
            .bytes()
            .all(|b| is_path_byte(b) || (allow_glob && b == b'*')) =>
        {
            Ok(())
        }
        _ => Err(SpiffeIdError::BadPathChar),
    }
}

fn is_trust_domain_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
}

fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn accepts_canonical_ids() {
        let id = SpiffeId::parse("spiffe://example.org/ns/payments/sa/refund-agent").unwrap();
        assert_eq!(id.trust_domain(), "example.org");
        assert_eq!(id.path(), "/ns/payments/sa/refund-agent");
        let td = SpiffeId::parse("spiffe://my_td-1.example").unwrap();
        assert_eq!(td.trust_domain(), "my_td-1.example");
        assert_eq!(td.path(), "");
        assert!(SpiffeId::parse("spiffe://example.org/A.b_c-9").is_ok());
        assert!(SpiffeId::parse("spiffe://example.org/...").is_ok());
    }

    #[test]
    fn refuses_every_non_canonical_form() {
        use SpiffeIdError::*;
        let cases: &[(&str, SpiffeIdError)] = &[
            ("", Empty),
            ("http://example.org/a", WrongScheme),
            ("SPIFFE://example.org/a", WrongScheme),
            ("spiffe:/example.org/a", WrongScheme),
            ("spiffe://", EmptyTrustDomain),
            ("spiffe:///a", EmptyTrustDomain),
            ("spiffe://Example.org/a", BadTrustDomainChar),
            ("spiffe://example.org:443/a", BadTrustDomainChar),
            ("spiffe://user@example.org/a", BadTrustDomainChar),
            ("spiffe://exa%6dple.org/a", BadTrustDomainChar),
            ("spiffe://example.org?x=1", BadTrustDomainChar),
            ("spiffe://example.org#f", BadTrustDomainChar),
            ("spiffe://example.org/", TrailingSlash),
            ("spiffe://example.org/a/", TrailingSlash),
            ("spiffe://example.org//a", EmptySegment),
            ("spiffe://example.org/./a", DotSegment),
            ("spiffe://example.org/a/..", DotSegment),
            ("spiffe://example.org/a%20b", BadPathChar),
            ("spiffe://example.org/a?b", BadPathChar),
            ("spiffe://example.org/a#b", BadPathChar),
            ("spiffe://example.org/a b", BadPathChar),
            ("spiffe://example.org/a*", BadPathChar),
            ("spiffe://example.org/caf\u{e9}", BadPathChar),
        ];
        for (input, want) in cases {
            assert_eq!(SpiffeId::parse(input).err(), Some(*want), "{input}");
        }
    }

    #[test]
    fn enforces_length_limits() {
        let long_path = format!("spiffe://example.org/{}", "a".repeat(MAX_LEN));
        assert_eq!(
            SpiffeId::parse(&long_path).err(),
            Some(SpiffeIdError::TooLong)
        );
        let at_limit = format!("spiffe://example.org/{}", "a".repeat(MAX_LEN - 21));
        assert_eq!(at_limit.len(), MAX_LEN);
        assert!(SpiffeId::parse(&at_limit).is_ok());
        let long_td = format!("spiffe://{}/a", "a".repeat(256));
        assert_eq!(
            SpiffeId::parse(&long_td).err(),
            Some(SpiffeIdError::TrustDomainTooLong)
        );
    }

    #[test]
    fn glob_patterns_are_only_allowed_on_request() {
        assert!(check("spiffe://example.org/ns/*/sa/fraud-*", true).is_ok());
        assert!(check("spiffe://example.org/ns/*/sa/fraud-*", false).is_err());
        assert_eq!(
            check("spiffe://example.*/a", true).err(),
            Some(SpiffeIdError::BadTrustDomainChar)
        );
    }

    #[test]
    fn lookalike_trust_domains_differ() {
        let a = SpiffeId::parse("spiffe://example.org/a").unwrap();
        let b = SpiffeId::parse("spiffe://example.org.evil/a").unwrap();
        assert_ne!(a.trust_domain(), b.trust_domain());
    }
}
