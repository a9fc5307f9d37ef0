//! Certificate path building over attacker-chosen `workflow-history-certs`:
//! from a pool of hostile shapes (issuer mazes, forged issuers, two
//! authorities with one name, self-issued copies; `custody_testkit::pki`),
//! the input picks the signer's leaf, up to 64 certificates in any order
//! with repeats, the depth cap and the certificate cap. Whatever it picks,
//! verification never panics and never costs more ECDSA verifications than
//! the documented bound: `2 × max_certs` for paths, plus the entry and the
//! proof (docs/history-format.md §6.4).
#![no_main]

use custody_history::Limits;
use custody_testkit::pki::{leaf_signer, pool, OneEntry, Pool};
use custody_testkit::Counting;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn shapes() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(pool)
}

fuzz_target!(|data: &[u8]| {
    let [leaf, depth, cap, picks @ ..] = data else {
        return;
    };
    let pool = shapes();
    let (leaf_der, key) = &pool.leaves[usize::from(*leaf) % pool.leaves.len()];
    let limits = Limits {
        max_chain_depth: 1 + usize::from(*depth % 6),
        max_certs: 1 + usize::from(*cap % 64),
        ..Limits::default()
    };
    let extra: Vec<&[u8]> = picks
        .iter()
        .take(64)
        .map(|&p| pool.cas[usize::from(p) % pool.cas.len()].as_slice())
        .collect();
    let request = OneEntry::new(&leaf_signer(key, leaf_der), leaf_der, &extra);
    let counting = Counting::default();
    let _ = request.verify(&pool.bundle, &limits, &counting, None);
    assert!(
        counting.calls() <= limits.path_signature_budget() + 2,
        "{} ECDSA checks for {} certificates (cap {}, depth {})",
        counting.calls(),
        extra.len() + 1,
        limits.max_certs,
        limits.max_chain_depth
    );
});
