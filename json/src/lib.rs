//! Strict JSON: like `serde_json::from_slice`, but a duplicate object member
//! or nesting deeper than a limit is an error. A parser differential (which of
//! two `"name"` members wins?) would let a caller be authorised for one tool
//! and run another, or a signer sign one claim and a verifier read another.
//! Used for MCP bodies, JWS headers and payloads, and SPIFFE bundles.
//! [`jcs`] gives the RFC 8785 canonical form, for hashing JSON values.

pub mod jcs;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
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

/// Like [`parse_strict`] but builds nothing: for input that is then read
/// with borrowed, typed deserializers (several times faster on large bodies).
pub fn check_strict(bytes: &[u8], max_depth: usize) -> Result<(), JsonError> {
    let fault = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = Check {
        depth: 0,
        max_depth,
        fault: &fault,
    };
    seed.deserialize(&mut de)
        .map_err(|_| fault.take().unwrap_or(JsonError::Malformed))?;
    de.end().map_err(|_| JsonError::Malformed)?;
    Ok(())
}

#[derive(Clone, Copy)]
struct Check<'f> {
    depth: usize,
    max_depth: usize,
    fault: &'f RefCell<Option<JsonError>>,
}

impl Check<'_> {
    fn fail<E: de::Error>(&self, fault: JsonError) -> E {
        *self.fault.borrow_mut() = Some(fault);
        E::custom("refused")
    }

    fn nested<E: de::Error>(&self) -> Result<Self, E> {
        if self.depth >= self.max_depth {
            return Err(self.fail(JsonError::TooDeep));
        }
        Ok(Check {
            depth: self.depth + 1,
            ..*self
        })
    }
}

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A member name, borrowed from the input when it has no escapes.
pub struct Key<'de>(pub Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match v.is_finite() {
            true => Ok(()),
            false => Err(self.fail(JsonError::Malformed)),
        }
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        // A few members are compared in a list; many go to a set (no O(n²)).
        let mut few: Vec<Cow<'de, str>> = Vec::new();
        let mut many: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if few.len() == 16 {
                many.extend(few.drain(..));
            }
            if few.contains(&key) || many.contains(&key) {
                return Err(self.fail(JsonError::DuplicateKey(key.into_owned())));
            }
            if many.is_empty() {
                few.push(key);
            } else {
                many.insert(key);
            }
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
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
    fn check_strict_gives_the_verdicts_of_parse_strict() {
        let many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        let many_dup = format!("{{{many}\"k3\":0}}");
        let many_ok = format!("{{{}}}", many.trim_end_matches(','));
        for (body, depth) in [
            (&br#"{"a":[1,-2,3.5,"x",null,true],"b":{"c":{}}}"#[..], 8),
            (br#"{"a":1,"a":2}"#, 8),
            (br#"{"x":{"name":"a","n\u0061me":"b"}}"#, 8),
            (b"[[[[1]]]]", 3),
            (b"[[[1]]]", 3),
            (b"{} {}", 8),
            (b"\xef\xbb\xbf{}", 8),
            (br#"{"a":"\ud800"}"#, 8),
            (b"1e400", 8),
            (many_dup.as_bytes(), 8),
            (many_ok.as_bytes(), 8),
        ] {
            assert_eq!(
                check_strict(body, depth),
                parse_strict(body, depth).map(|_| ()),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            check_strict(many_dup.as_bytes(), 8),
            Err(JsonError::DuplicateKey("k3".into()))
        );
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
