//! Property tests for SPIFFE ID parsing: every ID built from valid parts
//! parses and splits back into them; every way of spoiling one is refused;
//! whatever parses is canonical. Native only (proptest).
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use custody_spiffe::{SpiffeId, SpiffeIdError, MAX_LEN};
use proptest::prelude::*;
use proptest::sample::Index;

fn trust_domain() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,40}"
}

/// A trust domain with at least one letter, to uppercase.
fn lettered_trust_domain() -> impl Strategy<Value = String> {
    ("[a-z0-9._-]{0,20}", "[a-z]", "[a-z0-9._-]{0,20}").prop_map(|(a, b, c)| a + &b + &c)
}

fn segment() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,16}".prop_filter("dot segment", |s| s != "." && s != "..")
}

fn segments(min: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(segment(), min..6)
}

fn join(td: &str, segs: &[String]) -> String {
    let mut s = format!("spiffe://{td}");
    for seg in segs {
        s.push('/');
        s.push_str(seg);
    }
    s
}

/// Characters never allowed anywhere after the scheme (`/` aside).
const INVALID: &[char] = &[
    ':',
    '@',
    '%',
    '?',
    '#',
    ' ',
    '*',
    '+',
    '~',
    '!',
    '$',
    '&',
    '\'',
    '(',
    ')',
    ',',
    ';',
    '=',
    '[',
    ']',
    '\\',
    '"',
    '<',
    '>',
    '^',
    '`',
    '{',
    '|',
    '}',
    '\0',
    '\t',
    '\n',
    '\u{7f}',
    '\u{e9}',
    '\u{2215}',
    '\u{ff0f}',
    '\u{1f600}',
];

fn refused(s: &str) -> Result<(), TestCaseError> {
    prop_assert!(SpiffeId::parse(s).is_err(), "accepted {s:?}");
    Ok(())
}

proptest! {
    #[test]
    fn ids_from_valid_parts_parse_and_round_trip(td in trust_domain(), segs in segments(0)) {
        let s = join(&td, &segs);
        let id = SpiffeId::parse(&s).unwrap();
        prop_assert_eq!(id.as_str(), s.as_str());
        prop_assert_eq!(id.to_string(), s.clone());
        prop_assert_eq!(id.trust_domain(), td.as_str());
        let path: String = segs.iter().map(|seg| format!("/{seg}")).collect();
        prop_assert_eq!(id.path(), path.as_str());
        prop_assert_eq!(SpiffeId::parse(id.as_str()).unwrap(), id);
    }

    #[test]
    fn an_invalid_character_anywhere_is_refused(
        td in trust_domain(),
        segs in segments(0),
        at in any::<Index>(),
        c in prop::sample::select(INVALID),
    ) {
        let s = join(&td, &segs);
        // Any character boundary after the scheme.
        let positions: Vec<usize> = (9..=s.len()).filter(|&i| s.is_char_boundary(i)).collect();
        let pos = *at.get(&positions);
        let mut bad = s.clone();
        bad.insert(pos, c);
        refused(&bad)?;
        // And in place of a character, too.
        let mut replaced = s.clone();
        if pos < s.len() && &s[pos..=pos] != "/" {
            replaced.replace_range(pos..=pos, &c.to_string());
            refused(&replaced)?;
        }
    }

    #[test]
    fn an_uppercase_trust_domain_letter_is_refused(
        td in lettered_trust_domain(),
        segs in segments(0),
        at in any::<Index>(),
    ) {
        let letters: Vec<usize> = td.char_indices().filter(|(_, c)| c.is_ascii_lowercase()).map(|(i, _)| i).collect();
        let i = *at.get(&letters);
        let mut upper = td.clone();
        upper.replace_range(i..=i, &td[i..=i].to_ascii_uppercase());
        prop_assert_eq!(
            SpiffeId::parse(&join(&upper, &segs)).err(),
            Some(SpiffeIdError::BadTrustDomainChar)
        );
    }

    #[test]
    fn an_uppercase_scheme_letter_is_refused(td in trust_domain(), segs in segments(0), i in 0usize..6) {
        let mut s = join(&td, &segs);
        s.replace_range(i..=i, &s[i..=i].to_ascii_uppercase());
        prop_assert_eq!(SpiffeId::parse(&s).err(), Some(SpiffeIdError::WrongScheme));
    }

    #[test]
    fn empty_and_dot_segments_are_refused(
        td in trust_domain(),
        segs in segments(1),
        at in any::<Index>(),
        replacement in prop::sample::select(vec!["", ".", ".."]),
    ) {
        let mut segs = segs;
        let i = at.index(segs.len());
        let last = i == segs.len() - 1;
        segs[i] = replacement.to_owned();
        let want = match replacement {
            "" if last => SpiffeIdError::TrailingSlash,
            "" => SpiffeIdError::EmptySegment,
            _ => SpiffeIdError::DotSegment,
        };
        prop_assert_eq!(SpiffeId::parse(&join(&td, &segs)).err(), Some(want));
    }

    #[test]
    fn a_doubled_slash_is_refused(td in trust_domain(), segs in segments(1), at in any::<Index>()) {
        let s = join(&td, &segs);
        let slashes: Vec<usize> = s.match_indices('/').map(|(i, _)| i).filter(|&i| i >= 8).collect();
        let i = *at.get(&slashes);
        let mut bad = s.clone();
        bad.insert(i, '/');
        refused(&bad)?;
    }

    #[test]
    fn a_trailing_slash_is_refused(td in trust_domain(), segs in segments(0)) {
        prop_assert_eq!(
            SpiffeId::parse(&(join(&td, &segs) + "/")).err(),
            Some(SpiffeIdError::TrailingSlash)
        );
    }

    #[test]
    fn ports_userinfo_queries_and_fragments_are_refused(
        td in trust_domain(),
        segs in segments(0),
        port in 0u32..70000,
        user in "[a-z0-9]{0,8}",
        tail in "[a-z0-9=]{0,8}",
    ) {
        refused(&join(&format!("{td}:{port}"), &segs))?;
        refused(&join(&format!("{td}:"), &segs))?;
        refused(&join(&format!("{user}@{td}"), &segs))?;
        refused(&format!("{}?{tail}", join(&td, &segs)))?;
        refused(&format!("{}#{tail}", join(&td, &segs)))?;
    }

    #[test]
    fn a_percent_escape_is_refused(td in trust_domain(), segs in segments(0), at in any::<Index>()) {
        let s = join(&td, &segs);
        let chars: Vec<usize> = (9..s.len()).filter(|&i| &s[i..=i] != "/").collect();
        let i = *at.get(&chars);
        let mut bad = s.clone();
        bad.replace_range(i..=i, &format!("%{:02X}", s.as_bytes()[i]));
        refused(&bad)?;
    }

    #[test]
    fn over_long_ids_are_refused(td in trust_domain(), extra in 1usize..64) {
        let filler = "a".repeat(MAX_LEN - td.len() - 10 + extra);
        let s = format!("spiffe://{td}/{filler}");
        prop_assert_eq!(s.len(), MAX_LEN + extra);
        prop_assert_eq!(SpiffeId::parse(&s).err(), Some(SpiffeIdError::TooLong));
    }

    /// Near-misses of IDs: whatever parses is canonical.
    #[test]
    fn whatever_parses_is_canonical(rest in "[a-zA-Z0-9./%:@_#?*~-]{0,40}") {
        let s = format!("spiffe://{rest}");
        if let Ok(id) = SpiffeId::parse(&s) {
            prop_assert_eq!(id.as_str(), s.as_str());
            let td = id.trust_domain();
            prop_assert!(!td.is_empty());
            prop_assert!(td.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)), "{s}");
            let path = id.path();
            prop_assert!(!path.contains("//") && !path.ends_with('/'), "{s}");
            prop_assert!(path.is_empty() || path.starts_with('/'));
            for seg in path.split('/').skip(1) {
                prop_assert!(seg != "." && seg != "..", "{s}");
                prop_assert!(seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)), "{s}");
            }
            prop_assert_eq!(format!("spiffe://{td}{path}"), s);
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        let _ = SpiffeId::parse(&s);
        let _ = SpiffeId::parse(&format!("spiffe://{s}"));
    }
}
