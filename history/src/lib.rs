//! Signed workflow history, wire format v1 (`docs/history-format.md`).
//!
//! A pure library: no proxy-wasm, no host calls; it builds natively, for
//! `wasm32-wasip1` and for `wasm32-unknown-unknown`.
//!
//! - [`Verifier::verify`] checks the `workflow-history`, `workflow-history-proof`
//!   and `workflow-history-certs` headers of one request against a
//!   [`TrustBundle`], the mTLS peer, the configured audience, the body and
//!   `now`, and returns a [`VerifiedHistory`] or a typed [`Refusal`] with a
//!   stable [`Refusal::reason`] code.
//! - [`VerifyCache`] (caller-owned) skips repeated signature and path work;
//!   a hit is exactly as strict as a miss.
//! - [`ReplayCache`] is a bounded `jti` replay cache for native use.
//! - [`EcdsaP256Verifier`] makes ECDSA pluggable (the filter uses Envoy's
//!   BoringSSL); all format checks happen before it is called.
//! - Feature `sign` (default): [`sign::append_entry`], [`sign::make_proof`].
//! - Feature `dev-ca` (native): `dev_ca::init`, `dev_ca::issue`.

mod bundle;
mod cache;
mod caller;
mod codec;
mod ecdsa;
mod error;
mod jws;
mod path;
pub mod spiffe;
pub mod svid;
mod verify;
pub mod x509;

#[cfg(feature = "dev-ca")]
pub mod dev_ca;
#[cfg(feature = "sign")]
pub mod sign;

pub use bundle::TrustBundle;
pub use cache::{CacheStats, ReplayCache, VerifyCache};
pub use caller::{caller_path, CallerPath};
pub use codec::{b64url, b64url_decode, hex, sha256, MAX_JSON_DEPTH};
pub use ecdsa::{
    check_es256_signature, EcdsaP256Verifier, P256Verifier, SigFormat, P256_HALF_N, P256_N,
};
pub use error::{CheckedAt, Code, Group, Header, Part, Refusal};
pub use jws::{
    ALG, ENTRY_MEMBERS, ENTRY_TYP, MAX_JTI_CHARS, MAX_SAFE_INTEGER, PROOF_MEMBERS, PROOF_TYP, X5T,
};
pub use spiffe::{SpiffeId, SpiffeIdError};
pub use verify::{
    entry_hash, Headers, Limits, Presented, VerifiedEntry, VerifiedHistory, VerifiedProof, Verifier,
};
