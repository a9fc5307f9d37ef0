//! The etcd leases that expire the ledger's keys: one lease per time
//! bucket, attached to every key whose horizon falls in it. A lease's id is
//! derived from the prefix and the bucket, so every VM of every Envoy grants
//! the same lease (etcd answers "already exists" to all but the first) and
//! the number of live leases does not grow with the fleet.
//!
//! Buckets are a minute wide for horizons up to 20 minutes ahead (every
//! proof's), an hour wide beyond (`single_use` entries), and each lease lives
//! [`MARGIN_SECS`] past its bucket's end, so Envoy clocks up to that far
//! apart never expire a key early. A key may outlive its horizon by at most
//! one bucket plus the margin.

use super::Claim;
use custody_history::sha256;
use std::collections::BTreeSet;

/// Width of the buckets for near horizons (every proof `jti`).
pub const FINE_SECS: u64 = 60;
/// Width of the buckets for far horizons.
pub const COARSE_SECS: u64 = 3600;
/// Horizons up to this far ahead use fine buckets.
pub const FINE_SPAN_SECS: u64 = 20 * 60;
/// Each lease lives this long past its bucket's end.
pub const MARGIN_SECS: u64 = 300;
/// How far ahead the root context grants: proofs claimed in this time need
/// no grant of their own.
pub const GRANT_AHEAD_SECS: u64 = 60;
/// The longest a proof stays acceptable after its `iat` (history-format §5).
const PROOF_LIFETIME_SECS: u64 = 60;

/// A span of time whose keys share one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bucket {
    pub width: u64,
    pub index: u64,
}

impl Bucket {
    /// The bucket of a key with this horizon, claimed at `now`.
    pub fn covering(horizon: u64, now: u64) -> Bucket {
        let width = if horizon <= now.saturating_add(FINE_SPAN_SECS) {
            FINE_SECS
        } else {
            COARSE_SECS
        };
        Bucket {
            width,
            index: horizon / width,
        }
    }

    /// When its lease expires: the bucket's end plus the margin.
    pub fn expires(&self) -> u64 {
        self.index
            .saturating_add(1)
            .saturating_mul(self.width)
            .saturating_add(MARGIN_SECS)
    }

    /// The lease's TTL when granted at `now`, in seconds.
    pub fn ttl(&self, now: u64) -> u64 {
        self.expires().saturating_sub(now).max(1)
    }

    /// The lease id every Envoy with this prefix uses for this bucket:
    /// positive (etcd treats 0 as "choose one"), from SHA-256.
    pub fn lease_id(&self, prefix: &str) -> i64 {
        let seed = format!(
            "custody ledger lease v1\n{prefix}\n{}\n{}",
            self.width, self.index
        );
        let digest = sha256(seed.as_bytes());
        let mut eight = [0u8; 8];
        eight.copy_from_slice(&digest[..8]);
        let id = (u64::from_be_bytes(eight) >> 1).max(1);
        i64::try_from(id).unwrap_or(1)
    }
}

/// The bucket of each claim, in order.
pub fn buckets(claims: &[Claim], now: u64) -> Vec<Bucket> {
    claims
        .iter()
        .map(|c| Bucket::covering(c.horizon, now))
        .collect()
}

/// The leases this VM knows to exist (granted by it, or found existing).
/// Bounded: only buckets of claims (horizons at most
/// [`super::MAX_SINGLE_USE_SECS`] ahead) and of [`LeaseBook::to_grant`] are
/// learnt, and expired ones are forgotten, so it holds at most
/// `FINE_SPAN_SECS / FINE_SECS + MAX_SINGLE_USE_SECS / COARSE_SECS + 4`.
#[derive(Debug, Clone, Default)]
pub struct LeaseBook {
    known: BTreeSet<Bucket>,
}

impl LeaseBook {
    pub fn knows(&self, bucket: &Bucket) -> bool {
        self.known.contains(bucket)
    }

    pub fn learn(&mut self, bucket: Bucket) {
        self.known.insert(bucket);
    }

    /// After etcd said a lease is missing (its data was lost or restored):
    /// every lease is granted again before it is used.
    pub fn forget_all(&mut self) {
        self.known.clear();
    }

    pub fn forget_expired(&mut self, now: u64) {
        self.known.retain(|b| b.expires() > now);
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// The first of `buckets` not known yet.
    pub fn missing(&self, buckets: &[Bucket]) -> Option<Bucket> {
        buckets.iter().find(|b| !self.knows(b)).copied()
    }

    /// The buckets a proof claimed in the next [`GRANT_AHEAD_SECS`] can
    /// land in (its horizon is at most `2 × skew + 60 s` after the claim),
    /// not known yet.
    pub fn to_grant(&self, now: u64, skew: u64) -> Vec<Bucket> {
        let last = now
            .saturating_add(GRANT_AHEAD_SECS)
            .saturating_add(2 * skew)
            .saturating_add(PROOF_LIFETIME_SECS);
        (now / FINE_SECS..=last / FINE_SECS)
            .map(|index| Bucket {
                width: FINE_SECS,
                index,
            })
            .filter(|b| !self.knows(b))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ledger::{Claim, MAX_SINGLE_USE_SECS};
    use custody_testkit::NOW;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_key_outlives_its_horizon_by_less_than_a_bucket_and_the_margin() {
        for offset in [
            0,
            1,
            59,
            60,
            61,
            600,
            1_199,
            1_200,
            1_201,
            3_600,
            86_400,
            MAX_SINGLE_USE_SECS,
        ] {
            let horizon = NOW + offset;
            let b = Bucket::covering(horizon, NOW);
            assert!(b.expires() >= horizon + MARGIN_SECS, "{offset}");
            assert!(b.expires() <= horizon + b.width + MARGIN_SECS, "{offset}");
            assert_eq!(
                b.width,
                if offset <= FINE_SPAN_SECS {
                    FINE_SECS
                } else {
                    COARSE_SECS
                }
            );
            assert_eq!(b.ttl(NOW), b.expires() - NOW);
        }
        let b = Bucket::covering(NOW + 30, NOW);
        assert_eq!(b.ttl(b.expires() + 10), 1, "never zero or negative");
    }

    #[test]
    fn lease_ids_are_shared_by_a_bucket_and_differ_between_buckets_and_prefixes() {
        let a = Bucket::covering(NOW + 10, NOW);
        let same = Bucket::covering(NOW + 10 - (NOW + 10) % 60, NOW);
        assert_eq!(a, same);
        assert_eq!(a.lease_id("custody/"), same.lease_id("custody/"));
        let next = Bucket {
            index: a.index + 1,
            ..a
        };
        let coarse = Bucket {
            width: COARSE_SECS,
            index: a.index,
        };
        let ids = [
            a.lease_id("custody/"),
            next.lease_id("custody/"),
            coarse.lease_id("custody/"),
            a.lease_id("other/"),
        ];
        for (i, x) in ids.iter().enumerate() {
            assert!(*x > 0);
            assert!(!ids[i + 1..].contains(x));
        }
    }

    #[test]
    fn the_root_grants_ahead_what_proofs_will_need() {
        let mut book = LeaseBook::default();
        let skew = 30;
        let ahead = book.to_grant(NOW, skew);
        // Every proof claimed in the next minute: horizon ≤ claim time + 2·skew + 60.
        for t in [NOW, NOW + 30, NOW + GRANT_AHEAD_SECS] {
            for horizon in [t, t + 2 * skew + 60] {
                assert!(
                    ahead.contains(&Bucket::covering(horizon, t)),
                    "{t} {horizon}"
                );
            }
        }
        assert!(ahead.len() as u64 <= (GRANT_AHEAD_SECS + 2 * skew + 60) / FINE_SECS + 2);
        ahead.iter().for_each(|b| book.learn(*b));
        assert!(book.to_grant(NOW, skew).is_empty());
        assert_eq!(
            book.to_grant(NOW + 60, skew).len(),
            1,
            "one more each minute"
        );
        // Even at the largest skew, proofs stay in fine buckets.
        assert!(book.to_grant(NOW, 300).iter().all(|b| b.width == FINE_SECS));
    }

    #[test]
    fn the_book_stays_bounded_and_forgets() {
        let mut book = LeaseBook::default();
        // A week of claims at the farthest horizons, one per minute.
        let mut most = 0;
        for minute in 0..7 * 24 * 60 {
            let now = NOW + minute * 60;
            book.forget_expired(now);
            for b in book.to_grant(now, 300) {
                book.learn(b);
            }
            let far = Claim {
                kind: crate::ledger::Kind::Step,
                digest: [0; 32],
                horizon: now + MAX_SINGLE_USE_SECS,
            };
            for b in buckets(&[far], now) {
                book.learn(b);
            }
            most = most.max(book.len());
        }
        let bound = (FINE_SPAN_SECS / FINE_SECS + MAX_SINGLE_USE_SECS / COARSE_SECS + 4) as usize;
        assert!(most <= bound, "{most} > {bound}");
        let missing = Bucket {
            width: FINE_SECS,
            index: 1,
        };
        assert_eq!(book.missing(&[missing]), Some(missing));
        book.forget_all();
        assert!(book.is_empty());
    }
}
