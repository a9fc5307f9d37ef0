//! `json::parse_strict` never panics; what it accepts serde_json accepts too
//! (the filter must never read a body the server cannot), to the same value,
//! and the value survives a serialise/parse round trip.
#![no_main]

use custody_core::json::{parse_strict, JsonError};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Nesting depth of a value (scalars 0), as `parse_strict` counts it.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Equal, except that a float may come back one or two ULPs off: without its
/// `float_roundtrip` feature serde_json's float parsing is not correctly
/// rounded (`-1.5e-300` reads as `-1.4999999999999998e-300`, prints as such,
/// and can read back as a neighbour). Custody forwards the bytes it was sent
/// and decides on no float, so only that much slack is allowed.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => {
                    x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
                }
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, x), (ky, y))| kx == ky && same(x, y))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let max_depth = usize::from(first);
    let strict = parse_strict(body, max_depth);
    let lax = serde_json::from_slice::<Value>(body);
    match &strict {
        Ok(value) => {
            let lax = lax
                .as_ref()
                .expect("strict parser accepted what serde_json refuses");
            assert_eq!(value, lax, "strict and serde_json read different values");
            assert!(depth(value) <= max_depth, "nesting past max_depth accepted");
            let text = serde_json::to_vec(value).expect("serialise");
            let again = parse_strict(&text, max_depth).expect("re-serialised value parses");
            assert!(
                same(&again, value),
                "round trip: {value:?} became {again:?}"
            );
        }
        // Malformed for the strict parser is malformed for serde_json.
        Err(JsonError::Malformed) => assert!(lax.is_err(), "Malformed for what serde_json reads"),
        Err(JsonError::TooDeep) => {
            if let Ok(v) = &lax {
                assert!(depth(v) > max_depth, "TooDeep for a shallow value");
            }
        }
        Err(JsonError::DuplicateKey(_)) => {}
    }
});
