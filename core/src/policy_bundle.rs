//! A compiled policy bundle's canonical text and its identity: the SHA-256
//! that `custody policy render` writes as `custody.dev/policy-sha256`, and
//! the filter logs and exports (`custody_build_info`) at configure time, so
//! an operator can tell which policy each Envoy runs.

use crate::policy::Policy;

/// The bundle exactly as `custody policy compile` writes it: pretty JSON and
/// a newline. Parsing it back and writing it again gives the same text.
pub fn json(policy: &Policy) -> String {
    let mut text = serde_json::to_string_pretty(policy).unwrap_or_default();
    text.push('\n');
    text
}

/// The lowercase hex SHA-256 of [`json`].
pub fn sha256_hex(policy: &Policy) -> String {
    custody_history::hex(&custody_history::sha256(json(policy).as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_hash_is_of_the_canonical_text_whatever_its_source_layout() {
        let p: Policy = serde_json::from_value(json!({"rules": [
            {"name": "a", "callers": ["spiffe://example.org/x"], "methods": ["ping"],
             "require": [{"step": "s", "by": ["spiffe://example.org/y"], "within": "60m"}]}]}))
        .unwrap();
        let text = json(&p);
        assert!(
            text.ends_with("}\n") && text.contains("\n  \"version\": 1,"),
            "{text}"
        );
        // `60m` is written back as `1h`; the text (and hash) round-trip exactly.
        assert!(text.contains("\"within\": \"1h\""), "{text}");
        let again: Policy = serde_json::from_str(&text).unwrap();
        assert_eq!(json(&again), text);
        let hash = sha256_hex(&again);
        assert_eq!(hash, sha256_hex(&p));
        assert_eq!(hash.len(), 64);
        assert!(hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let other: Policy = serde_json::from_value(json!({"rules": []})).unwrap();
        assert_ne!(sha256_hex(&other), hash);
    }

    #[test]
    fn known_answer() {
        let p: Policy = serde_json::from_value(json!({"rules": []})).unwrap();
        assert_eq!(
            json(&p),
            "{\n  \"version\": 1,\n  \"default\": \"deny\",\n  \"rules\": []\n}\n"
        );
        // sha256 of the text above (python3 -c 'import hashlib; ...').
        assert_eq!(sha256_hex(&p), KNOWN);
    }

    const KNOWN: &str = "f54a04d0f8ee9485c6eda650b454abd9f88a9fa455ce1d882aa56771c5de8605";
}
