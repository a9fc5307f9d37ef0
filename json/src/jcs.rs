//! RFC 8785 JSON Canonicalization Scheme (JCS), through the maintained
//! `serde_jcs` crate: members sorted by their UTF-16 code units, no
//! whitespace, strings with only the mandatory escapes, numbers as
//! ECMAScript prints IEEE 754 doubles. The one place Custody canonicalises
//! JSON; `json/testdata/jcs-vectors.json` is checked byte for byte here and
//! by both client libraries (Python `rfc8785`, TypeScript `canonicalize`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Largest integer every JSON reader holds exactly (2^53 − 1, I-JSON).
pub const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JcsError {
    /// A number of magnitude above 2^53 − 1. JCS compares numbers as
    /// doubles, so `9007199254740993` and `9007199254740992` would hash the
    /// same while a server reading integers exactly (Python) tells them
    /// apart: such a value cannot be bound to a hash.
    UnsafeNumber,
    /// The canonicaliser failed (not expected for a `serde_json::Value`).
    Serialize,
}

impl std::fmt::Display for JcsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JcsError::UnsafeNumber => "a number's magnitude is above 2^53 - 1",
            JcsError::Serialize => "JSON canonicalization failed",
        })
    }
}

/// The RFC 8785 canonical text of `value`.
pub fn canonical(value: &Value) -> Result<String, JcsError> {
    serde_jcs::to_string(value).map_err(|_| JcsError::Serialize)
}

/// Every number of `value` has a magnitude of at most 2^53 − 1. Iterative:
/// the depth of a value is bounded by its parser, the loop by its size.
pub fn check_safe_numbers(value: &Value) -> Result<(), JcsError> {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Number(n) => {
                let safe = match (n.as_u64(), n.as_i64(), n.as_f64()) {
                    (Some(u), _, _) => u <= MAX_SAFE_INTEGER as u64,
                    (None, Some(i), _) => i.unsigned_abs() <= MAX_SAFE_INTEGER as u64,
                    (None, None, Some(f)) => f.abs() <= MAX_SAFE_INTEGER,
                    _ => false,
                };
                if !safe {
                    return Err(JcsError::UnsafeNumber);
                }
            }
            Value::Array(items) => stack.extend(items),
            Value::Object(members) => stack.extend(members.values()),
            Value::Null | Value::Bool(_) | Value::String(_) => {}
        }
    }
    Ok(())
}

/// base64url (no padding) of SHA-256 of the canonical text of the call's
/// arguments; absent arguments are `{}`. Refuses unsafe numbers.
pub fn args_sha256(arguments: Option<&Value>) -> Result<String, JcsError> {
    let empty = Value::Object(serde_json::Map::new());
    let arguments = arguments.unwrap_or(&empty);
    check_safe_numbers(arguments)?;
    let text = canonical(arguments)?;
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::parse_strict;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The shared known-answer vectors (also read by clients/python and clients/typescript).
    const VECTORS: &str = include_str!("../testdata/jcs-vectors.json");

    #[test]
    fn known_answer_vectors_byte_for_byte() {
        let file: Value = serde_json::from_str(VECTORS).unwrap();
        let vectors = file["vectors"].as_array().unwrap();
        assert!(vectors.len() >= 10);
        for v in vectors {
            let name = v["name"].as_str().unwrap();
            let input = parse_strict(v["input"].as_str().unwrap().as_bytes(), 64).unwrap();
            if let Some(want) = v["canonical"].as_str() {
                assert_eq!(canonical(&input).unwrap(), want, "{name}");
            }
            match v["args_sha256"].as_str() {
                Some(want) => assert_eq!(args_sha256(Some(&input)).unwrap(), want, "{name}"),
                None => assert_eq!(
                    args_sha256(Some(&input)),
                    Err(JcsError::UnsafeNumber),
                    "{name}"
                ),
            }
        }
        assert_eq!(
            args_sha256(None).unwrap(),
            file["absent_arguments_sha256"].as_str().unwrap()
        );
    }

    #[test]
    fn unsafe_numbers_are_found_at_any_depth() {
        for text in [
            r#"{"a":9007199254740992}"#,
            r#"{"a":-9007199254740992}"#,
            r#"{"a":[{"b":[1e300]}]}"#,
            r#"{"a":18446744073709551616}"#,
        ] {
            let v = parse_strict(text.as_bytes(), 64).unwrap();
            assert_eq!(
                check_safe_numbers(&v),
                Err(JcsError::UnsafeNumber),
                "{text}"
            );
        }
        for text in [
            r#"{"a":9007199254740991,"b":-9007199254740991,"c":1.5,"d":-0}"#,
            r#"{"a":[{"b":[1e-300, 0.1]}]}"#,
        ] {
            let v = parse_strict(text.as_bytes(), 64).unwrap();
            assert_eq!(check_safe_numbers(&v), Ok(()), "{text}");
        }
    }

    #[test]
    fn equal_arguments_hash_equal_whatever_their_spelling() {
        let a = parse_strict(br#"{"amount":12000,"order_id":"o-1"}"#, 8).unwrap();
        let b = parse_strict(br#"{ "order_id" : "o\u002d1", "amount" : 1.2e4 }"#, 8).unwrap();
        let c = parse_strict(br#"{"amount":12000,"order_id":"o-2"}"#, 8).unwrap();
        assert_eq!(args_sha256(Some(&a)), args_sha256(Some(&b)));
        assert_ne!(args_sha256(Some(&a)), args_sha256(Some(&c)));
        assert_eq!(args_sha256(Some(&serde_json::json!({}))), args_sha256(None));
    }
}
