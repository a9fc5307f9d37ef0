//! Stage 4: the signed workflow history, verified for this very request.
//! The three headers are taken exactly as sent (every occurrence: a repeated
//! header is refused, never merged), verified against the trust bundle, the
//! mTLS peer, this server's audience and the buffered body. The proof's
//! `jti` is then claimed once through [`crate::ledger`].

use crate::config::Config;
use crate::reason::Reason;
use crate::SpiffeId;
use custody_history::{
    EcdsaP256Verifier, Header, Headers, Part, Presented, Refusal, ReplayCache, TrustBundle,
    VerifiedHistory, Verifier, VerifyCache,
};

pub const HISTORY_HEADER: &str = Header::History.name();
pub const PROOF_HEADER: &str = Header::Proof.name();
pub const CERTS_HEADER: &str = Header::Certs.name();

pub fn is_history_header(name: &str) -> bool {
    matches!(name, HISTORY_HEADER | PROOF_HEADER | CERTS_HEADER)
}

/// The history headers of one request, every occurrence kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryHeaders {
    pub history: Vec<Vec<u8>>,
    pub proof: Vec<Vec<u8>>,
    pub certs: Vec<Vec<u8>>,
}

impl HistoryHeaders {
    /// Picks the history headers out of all request headers (names lowercase, as Envoy gives them).
    pub fn collect<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut out = HistoryHeaders::default();
        for (name, value) in headers {
            let slot = match name {
                HISTORY_HEADER => &mut out.history,
                PROOF_HEADER => &mut out.proof,
                CERTS_HEADER => &mut out.certs,
                _ => continue,
            };
            slot.push(value.to_vec());
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.history.is_empty() && self.proof.is_empty() && self.certs.is_empty()
    }
}

/// This Envoy's store of used-up claims (proof `jti`s, consumed
/// `single_use` entries), keyed as [`crate::ledger::Claim::key`]. The filter
/// keeps it in Envoy's shared data, so a claim is seen by every worker.
pub trait ReplayGuard {
    /// Records `key` until `until` (Unix seconds), or refuses with
    /// `proof_replayed` a key already recorded and still live at `now`.
    fn admit(&mut self, key: &str, until: u64, now: u64) -> Result<(), Refusal>;

    /// Whether `key` is recorded and live at `now`, without recording it:
    /// the etcd ledger's local fast path. A store that cannot tell says no
    /// (etcd then decides).
    fn holds(&mut self, _key: &str, _now: u64) -> bool {
        false
    }
}

/// For native use and tests: the cache adds its own skew to `until`, so
/// build it with skew 0 to keep claims exactly until their horizon.
impl ReplayGuard for ReplayCache {
    fn admit(&mut self, key: &str, until: u64, now: u64) -> Result<(), Refusal> {
        self.check_and_insert(key, until, now)
    }
}

/// What verification needs from the host.
pub struct ProofEnv<'a> {
    /// Unix time, seconds.
    pub now: u64,
    /// The trust bundle in effect: the configured one (`Config::trust`), or
    /// in the filter the one kept current from bundle endpoints.
    pub trust: &'a TrustBundle,
    pub ecdsa: &'a dyn EcdsaP256Verifier,
    pub cache: Option<&'a mut VerifyCache>,
    /// What Rego input documents share across requests (keys, entries' values).
    pub input: Option<&'a mut crate::input::InputCache>,
    /// This Envoy's store of claims ([`crate::ledger`]).
    pub replay: &'a mut dyn ReplayGuard,
}

/// A refusal with its log detail.
pub type ProofError = (Reason, String);

/// `Ok(None)` when the request carries no history headers at all.
pub fn verify(
    config: &Config,
    headers: &HistoryHeaders,
    peer: &SpiffeId,
    body: &[u8],
    env: &mut ProofEnv,
) -> Result<Option<VerifiedHistory>, ProofError> {
    if headers.is_empty() {
        return Ok(None);
    }
    let audience = match (&config.audience, config.verifies_history()) {
        (Some(aud), true) => aud.as_str(),
        _ => {
            return Err((
                Reason::HistoryUnconfigured,
                "history headers sent, but no audience and trust_domains are configured".into(),
            ))
        }
    };
    let wire = Headers {
        history: single(&headers.history, Header::History, Part::Entry(0))?,
        proof: single(&headers.proof, Header::Proof, Part::Proof)?,
        certs: single(&headers.certs, Header::Certs, Part::Cert(0))?,
    };
    let limits = config.history.verifier_limits();
    let request = Presented {
        headers: wire,
        peer,
        audience,
        body,
        now: env.now,
    };
    Verifier::new(env.trust, &limits)
        .with_ecdsa(env.ecdsa)
        .verify(&request, env.cache.as_deref_mut())
        .map(Some)
        .map_err(refused)
}

fn refused(r: Refusal) -> ProofError {
    (Reason::History(r.code()), r.detail())
}

/// Every byte printable ASCII (`!`..=`~`). Without an early exit, so that
/// the loop over several KiB of headers compiles to a branch-free scan.
fn printable_ascii(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(true, |ok, &b| ok & (b.wrapping_sub(b'!') <= b'~' - b'!'))
}

/// At most one occurrence, and printable ASCII (all three are base64url and `~`/`.`).
fn single(values: &[Vec<u8>], header: Header, part: Part) -> Result<Option<&str>, ProofError> {
    match values {
        [] => Ok(None),
        [one] => Some(one.as_slice())
            .filter(|bytes| printable_ascii(bytes))
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .map(Some)
            .ok_or_else(|| {
                refused(Refusal::Malformed {
                    part,
                    what: "header is not printable ASCII",
                })
            }),
        _ => Err(refused(Refusal::HeaderRepeated(header))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use custody_history::Code;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn only_printable_ascii_is_printable() {
        assert!(printable_ascii(b"!~abc.XYZ-_~019"));
        assert!(printable_ascii(b""));
        for bad in [b' ', b'\t', b'\n', 0, 0x1f, 0x7f, 0x80, 0xc3, 0xff] {
            let mut v = b"eyJhbGciOiJFUzI1NiJ9.e30.sig".to_vec();
            v.insert(7, bad);
            assert!(!printable_ascii(&v), "{bad:#x}");
        }
    }

    #[test]
    fn a_header_is_taken_once_and_printable() {
        let ok = vec![b"abc.def~ghi".to_vec()];
        assert_eq!(
            single(&ok, Header::History, Part::Entry(0)).unwrap(),
            Some("abc.def~ghi")
        );
        assert_eq!(single(&[], Header::History, Part::Entry(0)).unwrap(), None);
        let spaced = vec![b"abc def".to_vec()];
        let (reason, _) = single(&spaced, Header::History, Part::Entry(0)).unwrap_err();
        assert_eq!(reason, Reason::History(Code::HistoryMalformed));
        let utf8 = vec!["abcé".as_bytes().to_vec()];
        assert!(single(&utf8, Header::Proof, Part::Proof).is_err());
        let twice = vec![b"a".to_vec(), b"a".to_vec()];
        let (reason, _) = single(&twice, Header::Certs, Part::Cert(0)).unwrap_err();
        assert_eq!(reason, Reason::History(Code::HeaderRepeated));
    }
}
