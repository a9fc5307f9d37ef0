//! `SpiffeId::parse` never panics; an accepted ID is kept verbatim, splits
//! into its trust domain and path, and is canonical.
#![no_main]

use custody_spiffe::{check, check_trust_domain, SpiffeId, MAX_LEN, MAX_TRUST_DOMAIN_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(id) = SpiffeId::parse(s) else {
        return;
    };
    assert_eq!(id.as_str(), s);
    assert_eq!(id.to_string(), s);
    assert_eq!(format!("spiffe://{}{}", id.trust_domain(), id.path()), s);
    assert!(s.len() <= MAX_LEN);

    let td = id.trust_domain();
    assert!(!td.is_empty() && td.len() <= MAX_TRUST_DOMAIN_LEN);
    assert_eq!(check_trust_domain(td), Ok(()));
    assert!(td
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)));

    let path = id.path();
    if !path.is_empty() {
        assert!(path.starts_with('/') && !path.ends_with('/'));
        assert!(!path.contains("//"));
        for seg in path[1..].split('/') {
            assert!(!seg.is_empty() && seg != "." && seg != "..");
            assert!(seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        }
    }
    // A valid ID is also a valid pattern (a pattern that matches only itself),
    // and parsing it again gives the same ID.
    assert_eq!(check(s, true), Ok("spiffe://".len() + td.len()));
    assert_eq!(SpiffeId::parse(id.as_str()).as_ref(), Ok(&id));
});
