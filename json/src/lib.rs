//! Strict JSON: like `serde_json::from_slice`, but a duplicate object member
//! or nesting deeper than a limit is an error. A parser differential (which of
//! two `"name"` members wins?) would let a caller be authorised for one tool
//! and run another, or a signer sign one claim and a verifier read another.
//! Used for MCP bodies, JWS headers and payloads, and SPIFFE bundles.
//! [`jcs`] gives the RFC 8785 canonical form, for hashing JSON values.

pub mod jcs;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::RefCell;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not UTF-8, not JSON, or trailing data after the value.
    Malformed,
    /// An object has this member twice.
    DuplicateKey(String),
    TooDeep,
}

/// Parses `bytes` as one JSON value, refusing duplicate members and nesting
/// deeper than `max_depth` arrays/objects.
pub fn parse_strict(bytes: &[u8], max_depth: usize) -> Result<Value, JsonError> {
    let fault = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = Seed {
        depth: 0,
        max_depth,
        fault: &fault,
    };
    let value = seed
        .deserialize(&mut de)
        .map_err(|_| fault.take().unwrap_or(JsonError::Malformed))?;
    de.end().map_err(|_| JsonError::Malformed)?;
    Ok(value)
}

#[derive(Clone, Copy)]
struct Seed<'f> {
    depth: usize,
    max_depth: usize,
    fault: &'f RefCell<Option<JsonError>>,
}

impl Seed<'_> {
    fn fail<E: de::Error>(&self, fault: JsonError) -> E {
        let message = match &fault {
            JsonError::DuplicateKey(_) => "duplicate member",
            JsonError::TooDeep => "nested too deeply",
            JsonError::Malformed => "malformed",
        };
        *self.fault.borrow_mut() = Some(fault);
        E::custom(message)
    }

    fn nested<E: de::Error>(&self) -> Result<Self, E> {
        if self.depth >= self.max_depth {
            return Err(self.fail(JsonError::TooDeep));
        }
        Ok(Seed {
            depth: self.depth + 1,
            ..*self
        })
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| self.fail(JsonError::Malformed))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(self.fail(JsonError::DuplicateKey(key)));
            }
            let v = map.next_value_seed(inner)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn parses_ordinary_json() {
        let v = parse_strict(br#"{"a":[1,-2,3.5,"x",null,true],"b":{"c":{}}}"#, 8).unwrap();
        assert_eq!(v, json!({"a":[1,-2,3.5,"x",null,true],"b":{"c":{}}}));
    }

    #[test]
    fn refuses_duplicate_members_at_any_depth_and_after_unescaping() {
        for (body, key) in [
            (&br#"{"a":1,"a":2}"#[..], "a"),
            (br#"{"x":{"name":"a","name":"b"}}"#, "name"),
            (br#"[{"k":1,"k":1}]"#, "k"),
            (br#"{"method":"a","m\u0065thod":"b"}"#, "method"),
        ] {
            assert_eq!(
                parse_strict(body, 8),
                Err(JsonError::DuplicateKey(key.into()))
            );
        }
    }

    #[test]
    fn refuses_nesting_past_the_limit_without_overflowing() {
        assert!(parse_strict(b"[[[1]]]", 3).is_ok());
        assert_eq!(parse_strict(b"[[[[1]]]]", 3), Err(JsonError::TooDeep));
        assert_eq!(
            parse_strict(br#"{"a":{"b":{"c":{}}}}"#, 3),
            Err(JsonError::TooDeep)
        );
        let deep = "[".repeat(100_000);
        assert_eq!(parse_strict(deep.as_bytes(), 64), Err(JsonError::TooDeep));
    }

    #[test]
    fn refuses_malformed_input() {
        for body in [
            &b""[..],
            b"{",
            b"{} {}",
            b"{\"a\":1,}",
            b"\xff\xfe{}",
            b"\xef\xbb\xbf{}",
            br#"{"a":"\ud800"}"#,
            b"{\"a\":\"\xc3\x28\"}",
            b"NaN",
            b"{'a':1}",
        ] {
            assert_eq!(
                parse_strict(body, 8),
                Err(JsonError::Malformed),
                "{:?}",
                body
            );
        }
    }
}
