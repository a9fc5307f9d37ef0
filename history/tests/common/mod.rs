//! Shared test fixtures: the committed CAs and SVIDs of testdata/fixtures.json.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use custody_history::{b64url_decode, TrustBundle};
use serde_json::Value;

pub const FIXTURES: &str = include_str!("../../testdata/fixtures.json");

pub fn fixtures() -> Value {
    serde_json::from_str(FIXTURES).unwrap()
}

pub fn ca_pem(name: &str) -> String {
    fixtures()["cas"][name]["cert_pem"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn ca_spiffe_bundle(name: &str) -> String {
    fixtures()["cas"][name]["spiffe_bundle"].to_string()
}

pub fn cert_der(name: &str) -> Vec<u8> {
    b64url_decode(fixtures()["svids"][name]["cert"].as_str().unwrap()).unwrap()
}

pub fn key_der(name: &str) -> Vec<u8> {
    b64url_decode(fixtures()["svids"][name]["key"].as_str().unwrap()).unwrap()
}

/// example.org (from its SPIFFE bundle), example.org.evil (federated, PEM)
/// and rsa.example (PEM, RSA authority); not other.org.
pub fn bundle() -> TrustBundle {
    let mut b = TrustBundle::new();
    b.load_spiffe_bundle("example.org", &ca_spiffe_bundle("example"))
        .unwrap();
    b.add_pem("example.org.evil", &ca_pem("evil")).unwrap();
    b.add_pem("rsa.example", &ca_pem("rsa")).unwrap();
    b
}
