//! When to fetch a bundle next, and how long a bundle may be used without a
//! fresh answer. Times are Unix milliseconds.
//!
//! - After a good answer: in `refresh_seconds`, or sooner when the bundle's
//!   `spiffe_refresh_hint` says so (SPIFFE Trust Domain and Bundle §4.1.2),
//!   but a hint never brings it below [`MIN_HINT_SECS`].
//! - After a failure: 1 s, 2 s, 4 s, … doubling, never later than the
//!   interval above.
//! - A bundle is used until `max_age_seconds` after the endpoint (or the
//!   configuration) last vouched for it; then its trust domain trusts nothing
//!   until the endpoint answers again.

use crate::bundle_fetch::BundleEndpoint;

/// A bundle's refresh hint never makes Custody ask more often than this.
pub const MIN_HINT_SECS: u64 = 5;
/// The first retry after a failure.
const FIRST_RETRY_MS: u64 = 1000;

/// Time between good answers.
pub fn interval_ms(endpoint: &BundleEndpoint, refresh_hint: Option<u64>) -> u64 {
    let secs = match refresh_hint {
        Some(hint) => endpoint.refresh_seconds.min(hint.max(MIN_HINT_SECS)),
        None => endpoint.refresh_seconds,
    };
    secs.saturating_mul(1000)
}

/// Time before the next try after `failures` (≥ 1) failures in a row.
pub fn retry_ms(endpoint: &BundleEndpoint, refresh_hint: Option<u64>, failures: u32) -> u64 {
    let doubling = FIRST_RETRY_MS.saturating_mul(1 << failures.saturating_sub(1).min(20));
    doubling.min(interval_ms(endpoint, refresh_hint))
}

/// Whether a bundle last vouched for at `confirmed_at` may still be used at `now`.
pub fn fresh(endpoint: &BundleEndpoint, confirmed_at: u64, now: u64) -> bool {
    now <= confirmed_at.saturating_add(endpoint.max_age_seconds.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn endpoint(refresh_seconds: u64, max_age_seconds: u64) -> BundleEndpoint {
        BundleEndpoint {
            cluster: "bundles".into(),
            path: "/".into(),
            authority: None,
            refresh_seconds,
            timeout_ms: 1000,
            max_age_seconds,
        }
    }

    #[test]
    fn a_hint_shortens_the_interval_but_not_below_five_seconds() {
        let e = endpoint(300, 86_400);
        assert_eq!(interval_ms(&e, None), 300_000);
        assert_eq!(interval_ms(&e, Some(60)), 60_000);
        assert_eq!(interval_ms(&e, Some(2_419_200)), 300_000);
        assert_eq!(interval_ms(&e, Some(0)), 5_000);
        assert_eq!(interval_ms(&e, Some(u64::MAX)), 300_000);
        // The operator's own interval may be shorter than the floor.
        assert_eq!(interval_ms(&endpoint(1, 2), Some(0)), 1_000);
    }

    #[test]
    fn retries_double_up_to_the_interval() {
        let e = endpoint(300, 86_400);
        let waits: Vec<u64> = (1..=12).map(|n| retry_ms(&e, None, n)).collect();
        assert_eq!(
            waits,
            [
                1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000,
                300_000, 300_000
            ]
        );
        assert_eq!(retry_ms(&e, None, u32::MAX), 300_000);
        assert_eq!(retry_ms(&e, Some(10), 5), 10_000);
        assert_eq!(retry_ms(&endpoint(1, 2), None, 3), 1_000);
    }

    #[test]
    fn a_bundle_is_fresh_for_max_age_after_its_last_confirmation() {
        let e = endpoint(300, 3600);
        assert!(fresh(&e, 1_000_000, 1_000_000));
        assert!(fresh(&e, 1_000_000, 1_000_000 + 3_600_000));
        assert!(!fresh(&e, 1_000_000, 1_000_000 + 3_600_001));
        // A confirmation from a clock ahead of this one is fresh, not an overflow.
        assert!(fresh(&e, u64::MAX, 5));
    }
}
