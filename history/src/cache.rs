//! Caller-owned caches: verified entries and validated signer certificates
//! (skip signature and path-building work only), and a replay cache for
//! proof `jti`s (native use and tests; the filter keeps its own in Envoy
//! shared data).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;

use crate::error::Refusal;
use crate::jws::EntryPayload;
use crate::path::ValidatedSigner;
use crate::x509::ParsedCert;

/// A map that forgets its oldest insertion when it holds more than `cap`
/// keys or more than `max_bytes` of key bytes.
#[derive(Debug, Clone)]
struct Bounded<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    cap: usize,
    max_bytes: usize,
    bytes: usize,
}

/// How many bytes a cache key holds.
trait KeyBytes {
    fn key_bytes(&self) -> usize;
}

impl KeyBytes for [u8; 32] {
    fn key_bytes(&self) -> usize {
        32
    }
}

impl KeyBytes for Box<str> {
    fn key_bytes(&self) -> usize {
        self.len()
    }
}

impl<K: Hash + Eq + Clone + KeyBytes, V> Bounded<K, V> {
    fn new(cap: usize, max_bytes: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap,
            max_bytes,
            bytes: 0,
        }
    }
    fn get<Q: Hash + Eq + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.map.get(k)
    }
    fn insert(&mut self, k: K, v: V) {
        if self.cap == 0 || k.key_bytes() > self.max_bytes {
            return;
        }
        let size = k.key_bytes();
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            self.bytes += size;
            while self.order.len() > self.cap || self.bytes > self.max_bytes {
                if let Some(old) = self.order.pop_front() {
                    self.bytes -= old.key_bytes();
                    self.map.remove(&old);
                }
            }
        }
    }
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// A verified entry: its payload, its SHA-256 (what the next entry's `prev`
/// and the proof's `head` name), and the certificate (by SHA-256) whose key
/// verified its signature.
#[derive(Debug, Clone)]
pub(crate) struct CachedEntry {
    pub payload: EntryPayload,
    pub hash: [u8; 32],
    pub x5t: [u8; 32],
}

/// A signer certificate whose time-independent checks passed under the
/// trust bundle with this fingerprint.
#[derive(Debug, Clone)]
pub(crate) struct CachedCert {
    pub bundle_fingerprint: [u8; 32],
    pub signer: Arc<ValidatedSigner>,
}

/// Hit and miss counts, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entry_hits: u64,
    pub entry_misses: u64,
    pub cert_hits: u64,
    pub cert_misses: u64,
}

/// Cache of verified entries (keyed by the exact text of the compact JWS),
/// decoded certificates (keyed by the exact base64url text sent) and
/// validated signer certificates (keyed by SHA-256 of the DER). Owned by
/// the caller (one per VM in the filter) and passed `&mut` to
/// [`crate::Verifier::verify`]. Keying by the text itself makes a hit cost
/// a hash-map lookup instead of a SHA-256 (slow inside V8) and is exactly as
/// strict: a hit needs the very bytes that were verified before.
///
/// A hit skips only work whose result is fixed by those bytes: base64url
/// decoding, hashing, JWS parsing, the ECDSA check, certificate parsing and
/// path building. Every
/// time check (certificates at now and at `iat`, entry and proof times),
/// the presence of the certificate and intermediates in this request, the
/// `iss` binding, the claims cap and every chain and proof check run again.
#[derive(Debug, Clone)]
pub struct VerifyCache {
    entries: Bounded<Box<str>, CachedEntry>,
    certs: Bounded<[u8; 32], CachedCert>,
    /// Decoded certificates by their base64url text (decoding is a pure
    /// function of it; it costs about 0.1 ms per certificate in V8).
    parsed: Bounded<Box<str>, Arc<ParsedCert>>,
    stats: CacheStats,
}

/// Entry text remembered per cached entry, on average at most: bounds the
/// memory of the entry cache (entries with large claims are fewer).
pub const ENTRY_KEY_BYTES: usize = 512;
/// Certificate text remembered per cached certificate, on average at most.
pub const CERT_KEY_BYTES: usize = 1024;

impl VerifyCache {
    /// A cache holding at most `max_entries` entries (and `max_entries` ×
    /// [`ENTRY_KEY_BYTES`] of their text) and `max_certs` certificates (and
    /// `max_certs` × [`CERT_KEY_BYTES`] of their text).
    pub fn new(max_entries: usize, max_certs: usize) -> VerifyCache {
        VerifyCache {
            entries: Bounded::new(max_entries, max_entries * ENTRY_KEY_BYTES),
            certs: Bounded::new(max_certs, max_certs * 32),
            parsed: Bounded::new(max_certs, max_certs * CERT_KEY_BYTES),
            stats: CacheStats::default(),
        }
    }

    /// Hit and miss counts so far.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Number of cached entries and certificates.
    pub fn len(&self) -> (usize, usize) {
        (self.entries.len(), self.certs.len())
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0 && self.certs.len() == 0
    }

    pub(crate) fn entry(&mut self, text: &str) -> Option<CachedEntry> {
        let hit = self.entries.get(text).cloned();
        if hit.is_some() {
            self.stats.entry_hits += 1;
        } else {
            self.stats.entry_misses += 1;
        }
        hit
    }

    pub(crate) fn parsed_cert(&self, text: &str) -> Option<Arc<ParsedCert>> {
        self.parsed.get(text).cloned()
    }

    pub(crate) fn put_parsed_cert(&mut self, text: &str, cert: Arc<ParsedCert>) {
        self.parsed.insert(text.into(), cert);
    }

    pub(crate) fn put_entry(&mut self, text: &str, e: CachedEntry) {
        self.entries.insert(text.into(), e);
    }

    pub(crate) fn cert(
        &mut self,
        hash: &[u8; 32],
        fingerprint: &[u8; 32],
    ) -> Option<Arc<ValidatedSigner>> {
        let hit = self
            .certs
            .get(hash)
            .filter(|c| &c.bundle_fingerprint == fingerprint)
            .map(|c| Arc::clone(&c.signer));
        if hit.is_some() {
            self.stats.cert_hits += 1;
        } else {
            self.stats.cert_misses += 1;
        }
        hit
    }

    pub(crate) fn put_cert(&mut self, hash: [u8; 32], c: CachedCert) {
        self.certs.insert(hash, c);
    }
}

/// Bounded replay cache of proof `jti`s. A `jti` is remembered until its
/// proof's `exp` + skew (the last instant the proof could be accepted).
/// When full of live `jti`s it refuses (`replay_cache_full`) rather than
/// forget one, so a replay can never slip through.
#[derive(Debug, Clone)]
pub struct ReplayCache {
    seen: HashMap<String, u64>,
    cap: usize,
    skew: u64,
}

impl ReplayCache {
    /// Holds at most `capacity` live `jti`s; `skew_secs` must be the verifier's skew.
    pub fn new(capacity: usize, skew_secs: u64) -> ReplayCache {
        ReplayCache {
            seen: HashMap::new(),
            cap: capacity,
            skew: skew_secs,
        }
    }

    /// Records `jti` (valid until `exp`), or refuses with `proof_replayed`
    /// when it is already recorded and not yet expired at `now`.
    pub fn check_and_insert(&mut self, jti: &str, exp: u64, now: u64) -> Result<(), Refusal> {
        if let Some(&until) = self.seen.get(jti) {
            if until >= now {
                return Err(Refusal::ProofReplayed);
            }
        }
        if self.seen.len() >= self.cap && !self.seen.contains_key(jti) {
            self.seen.retain(|_, until| *until >= now);
            if self.seen.len() >= self.cap {
                return Err(Refusal::ReplayCacheFull);
            }
        }
        self.seen
            .insert(jti.to_owned(), exp.saturating_add(self.skew));
        Ok(())
    }

    /// The remembered `jti`s as bytes (`<until> <jti>\n` lines, sorted), so a
    /// host can keep a cache in shared memory and update it atomically.
    pub fn encode(&self) -> Vec<u8> {
        let mut lines: Vec<String> = self
            .seen
            .iter()
            .map(|(jti, until)| format!("{until} {jti}\n"))
            .collect();
        lines.sort();
        lines.concat().into_bytes()
    }

    /// Reads what [`ReplayCache::encode`] wrote. Every entry is kept, even
    /// past `capacity` (which only stops growth): forgetting a live `jti`
    /// would let a replay through.
    pub fn decode(bytes: &[u8], capacity: usize, skew_secs: u64) -> ReplayCache {
        let mut cache = ReplayCache::new(capacity, skew_secs);
        let text = core::str::from_utf8(bytes).unwrap_or_default();
        for line in text.lines() {
            if let Some((until, jti)) = line.split_once(' ') {
                if let Ok(until) = until.parse::<u64>() {
                    cache.seen.insert(jti.to_owned(), until);
                }
            }
        }
        cache
    }

    /// Forgets every `jti` whose proof can no longer be accepted at `now`.
    pub fn forget_expired(&mut self, now: u64) {
        self.seen.retain(|_, until| *until >= now);
    }

    /// Number of remembered `jti`s (live or not yet purged).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn replay_refused_until_expiry_plus_skew() {
        let mut c = ReplayCache::new(4, 30);
        c.check_and_insert("a", 1000, 990).unwrap();
        assert_eq!(
            c.check_and_insert("a", 1000, 995).unwrap_err().reason(),
            "proof_replayed"
        );
        assert_eq!(
            c.check_and_insert("a", 1000, 1030).unwrap_err().reason(),
            "proof_replayed"
        );
        // After exp + skew the proof itself is refused as expired, so the jti may go.
        c.check_and_insert("a", 2000, 1031).unwrap();
    }

    #[test]
    fn encoded_cache_remembers_exactly_what_it_held() {
        let mut c = ReplayCache::new(4, 30);
        c.check_and_insert("jti-a", 1000, 900).unwrap();
        c.check_and_insert("jti-b", 2000, 900).unwrap();
        let bytes = c.encode();
        assert_eq!(bytes, b"1030 jti-a\n2030 jti-b\n");
        let mut again = ReplayCache::decode(&bytes, 4, 30);
        assert_eq!(
            again
                .check_and_insert("jti-a", 1000, 950)
                .unwrap_err()
                .reason(),
            "proof_replayed"
        );
        assert_eq!(
            again
                .check_and_insert("jti-b", 2000, 950)
                .unwrap_err()
                .reason(),
            "proof_replayed"
        );
        again.check_and_insert("jti-c", 1000, 950).unwrap();
        // A smaller capacity keeps every live entry and refuses new ones.
        let mut small = ReplayCache::decode(&again.encode(), 1, 30);
        assert_eq!(small.len(), 3);
        assert_eq!(
            small
                .check_and_insert("jti-d", 1000, 950)
                .unwrap_err()
                .reason(),
            "replay_cache_full"
        );
        assert!(ReplayCache::decode(b"garbage\nx y\n", 4, 30).is_empty());
    }

    #[test]
    fn replay_cache_full_refuses_rather_than_forgets() {
        let mut c = ReplayCache::new(2, 0);
        c.check_and_insert("a", 100, 50).unwrap();
        c.check_and_insert("b", 200, 50).unwrap();
        assert_eq!(
            c.check_and_insert("c", 200, 60).unwrap_err().reason(),
            "replay_cache_full"
        );
        // "a" is still remembered.
        assert_eq!(
            c.check_and_insert("a", 100, 60).unwrap_err().reason(),
            "proof_replayed"
        );
        // Once "a" expired there is room again.
        c.check_and_insert("c", 200, 101).unwrap();
        assert_eq!(c.len(), 2);
    }

    fn key(s: &str) -> Box<str> {
        s.into()
    }

    #[test]
    fn bounded_forgets_oldest() {
        let mut b = Bounded::new(2, 1024);
        b.insert(key("1"), "a");
        b.insert(key("2"), "b");
        b.insert(key("3"), "c");
        assert!(b.get("1").is_none());
        assert_eq!(b.get("3"), Some(&"c"));
        assert_eq!(b.len(), 2);
        let mut z: Bounded<Box<str>, u8> = Bounded::new(0, 1024);
        z.insert(key("1"), 1);
        assert_eq!(z.len(), 0);
    }

    #[test]
    fn bounded_keeps_its_key_bytes_under_the_cap() {
        let mut b = Bounded::new(100, 10);
        b.insert(key("aaaa"), 1);
        b.insert(key("bbbb"), 2);
        b.insert(key("cccc"), 3); // 12 bytes: the oldest goes
        assert!(b.get("aaaa").is_none());
        assert_eq!(b.len(), 2);
        assert_eq!(b.bytes, 8);
        b.insert(key("much too long"), 4); // larger than the whole budget: not kept
        assert!(b.get("much too long").is_none());
        assert_eq!(b.len(), 2);
        b.insert(key("bbbb"), 5); // same key: replaced, not counted twice
        assert_eq!(b.bytes, 8);
        assert_eq!(b.get("bbbb"), Some(&5));
    }
}
