//! Canonical base64url, SHA-256, and strict JSON (duplicate members refused).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
pub use custody_json::JsonError;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// url-safe alphabet, no padding on encode, padding refused and non-zero
/// trailing bits refused on decode.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Encodes as canonical unpadded base64url.
pub fn b64url(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}

/// Decodes canonical unpadded base64url; `None` for anything else.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let out = B64URL.decode(s.as_bytes()).ok()?;
    // Belt and braces: canonical means re-encoding gives the same text.
    if B64URL.encode(&out) != s {
        return None;
    }
    Some(out)
}

/// Lowercase hexadecimal, two digits per byte.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

/// SHA-256.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Deepest JSON nesting accepted in JWS headers, payloads and bundles.
pub const MAX_JSON_DEPTH: usize = 32;

/// Strict JSON (duplicate members and deep nesting refused): the workspace's
/// one parser, shared with the MCP body parser.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    custody_json::parse_strict(bytes, MAX_JSON_DEPTH)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn canonical_base64url() {
        assert_eq!(b64url(b"\xfb\xff"), "-_8");
        assert_eq!(b64url_decode("-_8"), Some(b"\xfb\xff".to_vec()));
        assert_eq!(b64url_decode("-_8="), None, "padding");
        assert_eq!(b64url_decode("-_9"), None, "non-zero trailing bits");
        assert_eq!(b64url_decode("+/8"), None, "standard alphabet");
        assert_eq!(b64url_decode("-_8 "), None, "space");
        assert_eq!(b64url_decode("A"), None, "impossible length");
        assert_eq!(b64url_decode(""), Some(vec![]));
    }

    #[test]
    fn strict_json() {
        assert!(parse_strict(br#"{"a":1,"b":{"c":[1,{"d":2}]}}"#).is_ok());
        assert_eq!(
            parse_strict(br#"{"a":1,"a":2}"#),
            Err(JsonError::DuplicateKey("a".into()))
        );
        assert_eq!(
            parse_strict(br#"{"x":{"b":[{"c":1,"c":1}]}}"#),
            Err(JsonError::DuplicateKey("c".into()))
        );
        assert_eq!(parse_strict(br#"{"a":1} x"#), Err(JsonError::Malformed));
        assert_eq!(parse_strict(b"{\"a\":\xff}"), Err(JsonError::Malformed));
        let v = parse_strict(br#"{"i":1,"f":1.0,"e":1e3,"n":-1}"#).unwrap();
        assert!(v["i"].is_u64());
        assert!(!v["f"].is_u64() && !v["f"].is_i64());
        assert!(!v["e"].is_u64());
        assert!(v["n"].is_i64());
    }
}
