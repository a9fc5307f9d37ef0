//! Test support shared by the workspace's tests, benchmarks and fuzz
//! targets (as rustls keeps `rustls-test`): the committed fixtures of
//! `history/testdata` (CAs and X.509-SVIDs with fixed validity windows), the
//! instant they are all valid at, signers, the vectors' trust bundle, and an
//! ECDSA verifier that counts its calls. With feature `pki`, builders for
//! certificates of any shape (rcgen, native only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "pki")]
pub mod pki;

use custody_history::sign::Signer;
use custody_history::{b64url_decode, EcdsaP256Verifier, P256Verifier, TrustBundle};
use serde_json::Value;
use std::cell::Cell;

/// `history/testdata/fixtures.json`: CAs valid 2026-01-01..2031-01-01, SVIDs
/// 2026-04-01..2026-06-01 unless named otherwise.
pub const FIXTURES: &str = include_str!("../../history/testdata/fixtures.json");
/// 2026-04-18T14:20:00Z: inside every fixture's validity window.
pub const NOW: u64 = 1_776_522_000;
/// The trust domain of the fixtures.
pub const TD: &str = "example.org";
/// The refund tool's audience (its SPIFFE ID).
pub const AUD: &str = "spiffe://example.org/ns/payments/sa/refund-tool";

/// `spiffe://example.org/ns/payments/sa/<name>`.
pub fn sa(name: &str) -> String {
    format!("spiffe://{TD}/ns/payments/sa/{name}")
}

pub fn fixtures() -> Value {
    serde_json::from_str(FIXTURES).unwrap()
}

/// A fixture SVID's certificate DER.
pub fn cert_der(name: &str) -> Vec<u8> {
    b64url_decode(fixtures()["svids"][name]["cert"].as_str().unwrap()).unwrap()
}

/// A fixture SVID's PKCS#8 key DER.
pub fn key_der(name: &str) -> Vec<u8> {
    b64url_decode(fixtures()["svids"][name]["key"].as_str().unwrap()).unwrap()
}

/// The signer of a fixture SVID (e.g. `fraud-agent`, `approvals`, `refund-agent`).
pub fn signer(name: &str) -> Signer {
    Signer::from_pkcs8_der(&key_der(name), &cert_der(name)).unwrap()
}

/// A fixture CA's certificate, PEM (`example`, `evil`, `other`, `rsa`).
pub fn ca_pem(name: &str) -> String {
    fixtures()["cas"][name]["cert_pem"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A fixture CA as a SPIFFE bundle (JSON text).
pub fn ca_spiffe_bundle(name: &str) -> String {
    fixtures()["cas"][name]["spiffe_bundle"].to_string()
}

/// The known-answer vectors' trust bundle: example.org (from its SPIFFE
/// bundle), example.org.evil (PEM) and rsa.example (PEM, an RSA authority);
/// not other.org.
pub fn bundle() -> TrustBundle {
    let mut b = TrustBundle::new();
    b.load_spiffe_bundle(TD, &ca_spiffe_bundle("example"))
        .unwrap();
    b.add_pem("example.org.evil", &ca_pem("evil")).unwrap();
    b.add_pem("rsa.example", &ca_pem("rsa")).unwrap();
    b
}

/// Counts the ECDSA P-256 verifications it is asked for (then verifies
/// with `p256`), to prove how much work a request may cost.
#[derive(Default)]
pub struct Counting {
    calls: Cell<usize>,
}

impl Counting {
    pub fn calls(&self) -> usize {
        self.calls.get()
    }
}

impl EcdsaP256Verifier for Counting {
    fn verify(&self, sec1: &[u8], message: &[u8], sig: &[u8; 64]) -> bool {
        self.calls.set(self.calls.get() + 1);
        P256Verifier.verify(sec1, message, sig)
    }
}
