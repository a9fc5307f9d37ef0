//! This Envoy's store of claims (proof `jti`s, consumed `single_use`
//! entries; see `custody_core::ledger`), in Envoy's shared data so that
//! every worker's VM sees every claim. The keyspace is split into fixed
//! slots, each a small `ReplayCache` updated with compare-and-swap. The slots
//! are created at configure time: shared data checks a CAS only on keys that
//! exist, so two workers racing to create a slot could otherwise both admit
//! one proof.

use crate::host;
use custody_core::proof::ReplayGuard;
use custody_history::{sha256, Refusal, ReplayCache};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, Status};

/// Slots in shared data.
pub const SLOTS: u16 = 4096;
/// Live claims remembered per slot: 262,144 per Envoy in all.
pub const SLOT_CAPACITY: usize = 64;
/// Attempts when another worker updates the same slot at the same time.
const CAS_ATTEMPTS: usize = 16;

fn key(slot: u16) -> String {
    format!("custody.replay.{slot}")
}

/// Creates every missing slot. Idempotent; the first VM to start does the work.
pub fn create_slots() {
    let mut created = 0;
    for slot in 0..SLOTS {
        let key = key(slot);
        // Only a missing key (no value, no CAS) is created: never overwrite.
        if let Ok((None, None)) = hostcalls::get_shared_data(&key) {
            if hostcalls::set_shared_data(&key, Some(b""), None).is_ok() {
                created += 1;
            }
        }
    }
    if created > 0 {
        host::log(
            LogLevel::Info,
            &format!("created {created} replay cache slots"),
        );
    }
}

/// The claims' horizons are exact: the slots add no skew of their own.
pub struct SharedReplay;

fn slot_of(claim: &str) -> String {
    let digest = sha256(claim.as_bytes());
    key(u16::from_be_bytes([digest[0], digest[1]]) % SLOTS)
}

impl ReplayGuard for SharedReplay {
    fn admit(&mut self, claim: &str, until: u64, now: u64) -> Result<(), Refusal> {
        let key = slot_of(claim);
        for _ in 0..CAS_ATTEMPTS {
            // A slot that is missing (no CAS) or unreadable fails closed.
            let Ok((bytes, Some(cas))) = hostcalls::get_shared_data(&key) else {
                return Err(Refusal::ReplayCacheFull);
            };
            let bytes = bytes.unwrap_or_default();
            let mut slot = ReplayCache::decode(&bytes, SLOT_CAPACITY, 0);
            slot.forget_expired(now);
            slot.check_and_insert(claim, until, now)?;
            match hostcalls::set_shared_data(&key, Some(&slot.encode()), Some(cas)) {
                Ok(()) => return Ok(()),
                Err(Status::CasMismatch) => continue,
                Err(_) => return Err(Refusal::ReplayCacheFull),
            }
        }
        Err(Refusal::ReplayCacheFull)
    }

    fn holds(&mut self, claim: &str, now: u64) -> bool {
        let Ok((Some(bytes), _)) = hostcalls::get_shared_data(&slot_of(claim)) else {
            return false; // etcd decides
        };
        // The decoded copy is thrown away: checking it records nothing.
        let mut slot = ReplayCache::decode(&bytes, SLOT_CAPACITY, 0);
        matches!(
            slot.check_and_insert(claim, now, now),
            Err(Refusal::ProofReplayed)
        )
    }
}
