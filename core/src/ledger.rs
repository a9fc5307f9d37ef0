//! The ledger: what a request uses up, exactly once. A request with a
//! verified history claims its proof's `jti`; an allowed request whose rule
//! has `single_use` clauses also claims the entries they consume. Each claim
//! carries its horizon, the last instant its proof or entry could still be
//! accepted: remembering it longer protects nothing.
//!
//! The `local` backend keeps claims in this Envoy's shared data
//! ([`settle_local`]). The `etcd` backend claims them in one etcd transaction
//! shared by every replica: [`plan`] first refuses what this Envoy has
//! already seen, then the filter asks etcd ([`etcd`]) and [`resolve`] turns
//! the answer into the final decision. Requests whose rule needs no history
//! never reach etcd.

pub mod etcd;
pub mod lease;

use crate::config::Config;
use crate::decision::Decision;
use crate::proof::ReplayGuard;
use crate::reason::Reason;
use custody_history::{b64url, sha256, Code, Refusal, VerifiedEntry};

/// How long a consumed `single_use` entry is remembered at most, in
/// seconds (7 days). An entry that could stay acceptable longer (its `exp`
/// and its signer's `notAfter` both further away) is refused
/// `single_use_too_long` by a `single_use` clause rather than forgotten early.
pub const MAX_SINGLE_USE_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A proof's `jti`: taken again, `proof_replayed`.
    Proof,
    /// An entry consumed by a `single_use` clause: taken again, `step_consumed`.
    Step,
}

/// One thing a request uses up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub kind: Kind,
    /// SHA-256 of the `jti`, or the entry's own hash: no identity or claim text.
    pub digest: [u8; 32],
    /// Unix seconds; after it the claim may be forgotten.
    pub horizon: u64,
}

impl Claim {
    /// A proof's `jti`, until its `exp` + skew.
    pub fn proof(jti: &str, exp: u64, skew: u64) -> Claim {
        Claim {
            kind: Kind::Proof,
            digest: sha256(jti.as_bytes()),
            horizon: exp.saturating_add(skew),
        }
    }

    /// An entry consumed by a `single_use` clause, until it can no longer be
    /// accepted: its `exp` or its signer's `notAfter`, whichever is first, +
    /// skew. `None` when that is more than [`MAX_SINGLE_USE_SECS`] after `now`.
    pub fn step(entry: &VerifiedEntry, skew: u64, now: u64) -> Option<Claim> {
        let horizon = entry.exp.min(entry.signer_not_after).saturating_add(skew);
        (horizon <= now.saturating_add(MAX_SINGLE_USE_SECS)).then_some(Claim {
            kind: Kind::Step,
            digest: entry.hash,
            horizon,
        })
    }

    /// Its key, the same in shared data and below the etcd prefix:
    /// `jti/<base64url>` or `once/<base64url>`.
    pub fn key(&self) -> String {
        let kind = match self.kind {
            Kind::Proof => "jti/",
            Kind::Step => "once/",
        };
        format!("{kind}{}", b64url(&self.digest))
    }

    /// Why a request is refused when this claim was already taken.
    pub fn taken(&self) -> Reason {
        match self.kind {
            Kind::Proof => Reason::History(Code::ProofReplayed),
            Kind::Step => Reason::StepConsumed,
        }
    }
}

/// What one request must claim, decided with the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// The proof's `jti`, for every request with a verified history.
    pub proof: Option<Claim>,
    /// The entries the allowing rule's `single_use` clauses consume, each once.
    pub steps: Vec<Claim>,
    /// The allowing rule requires history: its claims must hold across replicas.
    pub shared: bool,
}

impl Claims {
    /// Adds an entry to consume, once however many clauses it meets.
    pub fn consume(&mut self, step: Claim) {
        if !self.steps.iter().any(|s| s.digest == step.digest) {
            self.steps.push(step);
        }
    }

    /// Every claim, the proof's first (its refusal wins).
    pub fn all(&self) -> impl Iterator<Item = &Claim> {
        self.proof.iter().chain(&self.steps)
    }
}

/// A decision that is final except for its claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub decision: Decision,
    pub claims: Claims,
}

/// Claims in this Envoy's store: the proof's `jti` whatever the verdict
/// (a replay is `proof_replayed` before any rule's reason), then, for an
/// allowed request, each consumed entry in turn (an entry taken after an
/// earlier one was recorded leaves that one consumed).
pub fn settle_local(judged: Judged, store: &mut dyn ReplayGuard, now: u64) -> Decision {
    let Judged {
        mut decision,
        claims,
    } = judged;
    let steps = if decision.is_allowed() {
        &claims.steps[..]
    } else {
        &[]
    };
    for claim in claims.proof.iter().chain(steps) {
        if let Err(refusal) = store.admit(&claim.key(), claim.horizon, now) {
            let reason = match refusal {
                Refusal::ProofReplayed => claim.taken(),
                other => Reason::History(other.code()),
            };
            refuse_taken(&mut decision, claim, reason, "this Envoy");
            break;
        }
    }
    decision
}

/// What the filter does next with a judged request.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Final: apply it.
    Done(Decision),
    /// Claim these in etcd, in one transaction, then [`resolve`].
    Ask(Asking),
}

/// An allowed request waiting for the shared ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct Asking {
    pub decision: Decision,
    /// Every claim, the proof's first; never empty.
    pub claims: Vec<Claim>,
}

/// Where a judged request's claims go. The local backend, a refused
/// request and a rule that needs no history settle in this Envoy's store.
/// Otherwise a claim this Envoy already holds is refused at once (the local
/// fast path); the rest go to etcd.
pub fn plan(config: &Config, judged: Judged, store: &mut dyn ReplayGuard, now: u64) -> Plan {
    let shared = config.ledger.etcd().is_some()
        && judged.claims.shared
        && judged.decision.is_allowed()
        && judged.claims.all().next().is_some();
    if !shared {
        return Plan::Done(settle_local(judged, store, now));
    }
    let Judged {
        mut decision,
        claims,
    } = judged;
    if let Some(held) = claims.all().find(|c| store.holds(&c.key(), now)) {
        refuse_taken(&mut decision, held, held.taken(), "this Envoy");
        return Plan::Done(decision);
    }
    Plan::Ask(Asking {
        decision,
        claims: claims.all().cloned().collect(),
    })
}

/// etcd's answer to the transaction, parsed ([`etcd::parse_txn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Every key was absent and is now written.
    Claimed,
    /// Nothing was written: these claims (by index) already existed.
    Taken(Vec<usize>),
    /// Nothing was written: a key's lease is gone (etcd's data was lost or
    /// restored). The filter grants its leases again and may ask once more.
    LeaseMissing,
    /// No usable answer: refuse `ledger_unavailable`, never allow.
    Unavailable(String),
}

/// The final decision from etcd's answer. What etcd holds is recorded in
/// this Envoy's store too, so a replay here is refused without a round trip.
pub fn resolve(asking: Asking, answer: Answer, store: &mut dyn ReplayGuard, now: u64) -> Decision {
    let Asking {
        mut decision,
        claims,
    } = asking;
    let record = |store: &mut dyn ReplayGuard, c: &Claim| {
        // The shared ledger decided; a full or racing local store only loses the fast path.
        let _ = store.admit(&c.key(), c.horizon, now);
    };
    match answer {
        Answer::Claimed => claims.iter().for_each(|c| record(store, c)),
        Answer::Taken(mut taken) => {
            taken.sort_unstable();
            let taken: Vec<&Claim> = taken.iter().filter_map(|&i| claims.get(i)).collect();
            taken.iter().for_each(|c| record(store, c));
            match taken.first() {
                Some(first) => {
                    refuse_taken(&mut decision, first, first.taken(), "etcd");
                }
                None => {
                    decision.verdict = Err(Reason::LedgerUnavailable);
                    decision.detail = Some("etcd named no claim it refused".into());
                }
            }
        }
        Answer::LeaseMissing => {
            decision.verdict = Err(Reason::LedgerUnavailable);
            decision.detail = Some("etcd transaction: a lease is missing".into());
        }
        Answer::Unavailable(why) => {
            decision.verdict = Err(Reason::LedgerUnavailable);
            decision.detail = Some(why);
        }
    }
    decision
}

/// Refuses a request whose claim was already taken. The rule that allowed it
/// becomes the closest rule of the refusal; the detail names the ledger
/// (`place`) and holds no caller-supplied text, so audit mode may show it.
fn refuse_taken(decision: &mut Decision, claim: &Claim, reason: Reason, place: &str) {
    if let Ok(rule) = &decision.verdict {
        decision.closest_rule = Some(rule.clone());
    }
    decision.verdict = Err(reason);
    let what = match claim.kind {
        Kind::Proof => "proof jti already used",
        Kind::Step => "single_use entry already consumed",
    };
    let detail = format!("{what} ({place})");
    decision.public_detail = Some(detail.clone());
    decision.detail = Some(detail);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use custody_history::SpiffeId;
    use serde_json::json;
    use std::collections::HashMap;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A store that counts what it is asked.
    #[derive(Default)]
    struct Store {
        live: HashMap<String, u64>,
        admits: usize,
        looks: usize,
    }

    impl ReplayGuard for Store {
        fn admit(&mut self, key: &str, until: u64, now: u64) -> Result<(), Refusal> {
            self.admits += 1;
            if self.live.get(key).is_some_and(|&u| u >= now) {
                return Err(Refusal::ProofReplayed);
            }
            self.live.insert(key.to_owned(), until);
            Ok(())
        }
        fn holds(&mut self, key: &str, now: u64) -> bool {
            self.looks += 1;
            self.live.get(key).is_some_and(|&u| u >= now)
        }
    }

    fn config(etcd: bool) -> Config {
        let mut c = json!({"policy": {"rules": []}});
        if etcd {
            c["ledger"] = json!({"backend": "etcd", "etcd": {"cluster": "etcd"}});
        }
        Config::from_json(c.to_string().as_bytes()).unwrap()
    }

    fn entry(hash: u8, exp: u64, not_after: u64) -> VerifiedEntry {
        let id = SpiffeId::parse("spiffe://example.org/a").unwrap();
        VerifiedEntry {
            seq: 0,
            step: "s".into(),
            result: "approved".into(),
            iss: id.clone(),
            nxt: id,
            iat: 0,
            exp,
            claims: json!({}),
            hash: [hash; 32],
            signer_not_after: not_after,
        }
    }

    fn judged(allowed: bool, shared: bool, steps: &[u8]) -> Judged {
        let mut decision = Decision::refuse(Reason::NoRule);
        if allowed {
            decision.verdict = Ok("r".into());
        }
        let mut claims = Claims {
            proof: Some(Claim::proof("jti-1", 1_060, 30)),
            steps: Vec::new(),
            shared,
        };
        for &h in steps {
            claims.consume(Claim::step(&entry(h, 2_000, 9_000), 30, 1_000).unwrap());
        }
        Judged { decision, claims }
    }

    #[test]
    fn keys_are_hashes_and_never_the_text() {
        let c = Claim::proof("spiffe://example.org/secret-jti", 100, 30);
        assert_eq!(
            c.key(),
            format!(
                "jti/{}",
                b64url(&sha256(b"spiffe://example.org/secret-jti"))
            )
        );
        assert!(!c.key().contains("example"));
        assert_eq!(c.horizon, 130);
        let s = Claim::step(&entry(7, 500, 900), 30, 0).unwrap();
        assert_eq!(s.key(), format!("once/{}", b64url(&[7; 32])));
        assert_eq!(c.taken(), Reason::History(Code::ProofReplayed));
        assert_eq!(s.taken(), Reason::StepConsumed);
    }

    #[test]
    fn a_step_is_kept_until_its_exp_or_its_signers_not_after_and_never_past_the_maximum() {
        let now = 1_000;
        assert_eq!(
            Claim::step(&entry(1, 5_000, 3_000), 30, now)
                .unwrap()
                .horizon,
            3_030
        );
        assert_eq!(
            Claim::step(&entry(1, 2_000, 3_000), 30, now)
                .unwrap()
                .horizon,
            2_030
        );
        let edge = now + MAX_SINGLE_USE_SECS - 30;
        assert_eq!(
            Claim::step(&entry(1, edge, u64::MAX), 30, now)
                .unwrap()
                .horizon,
            now + MAX_SINGLE_USE_SECS
        );
        assert_eq!(Claim::step(&entry(1, edge + 1, u64::MAX), 30, now), None);
        assert_eq!(Claim::step(&entry(1, u64::MAX, u64::MAX), 300, now), None);
    }

    #[test]
    fn local_claims_refuse_the_second_use() {
        let mut store = Store::default();
        let first = settle_local(judged(true, true, &[1]), &mut store, 1_000);
        assert!(first.is_allowed());
        // The same proof again: replayed, whatever the rule says.
        let again = settle_local(judged(false, false, &[]), &mut store, 1_001);
        assert_eq!(again.verdict, Err(Reason::History(Code::ProofReplayed)));
        // A fresh proof, the same entry: consumed.
        let mut other = judged(true, true, &[1]);
        other.claims.proof = Some(Claim::proof("jti-2", 1_060, 30));
        let d = settle_local(other, &mut store, 1_002);
        assert_eq!(d.verdict, Err(Reason::StepConsumed));
        assert_eq!(
            d.detail.as_deref(),
            Some("single_use entry already consumed (this Envoy)")
        );
        // After the proof's horizon it may be used again (the verifier refuses it by then).
        assert!(settle_local(judged(true, false, &[]), &mut store, 1_091).is_allowed());
    }

    #[test]
    fn a_refused_request_consumes_no_entry() {
        let mut store = Store::default();
        let d = settle_local(judged(false, true, &[1, 2]), &mut store, 1_000);
        assert_eq!(d.verdict, Err(Reason::NoRule));
        assert_eq!(store.admits, 1, "only the proof's jti");
    }

    #[test]
    fn the_local_backend_and_rules_without_history_never_ask_etcd() {
        for (etcd, shared, allowed) in [
            (false, true, true),
            (true, false, true),
            (true, true, false),
        ] {
            let mut store = Store::default();
            let plan = plan(
                &config(etcd),
                judged(allowed, shared, &[1]),
                &mut store,
                1_000,
            );
            assert!(matches!(plan, Plan::Done(_)), "{etcd} {shared} {allowed}");
            assert!(store.admits >= 1, "settled locally");
        }
    }

    #[test]
    fn the_fast_path_refuses_what_this_envoy_saw_without_asking() {
        let c = config(true);
        let mut store = Store::default();
        let Plan::Ask(asking) = plan(&c, judged(true, true, &[1, 1, 2]), &mut store, 1_000) else {
            panic!("should ask etcd")
        };
        assert_eq!(store.admits, 0, "nothing recorded before etcd answers");
        assert_eq!(
            asking.claims.len(),
            3,
            "an entry meeting two clauses is claimed once"
        );
        assert_eq!(asking.claims[0].kind, Kind::Proof);
        let d = resolve(asking, Answer::Claimed, &mut store, 1_000);
        assert!(d.is_allowed());
        assert_eq!(store.live.len(), 3, "the proof and two distinct entries");
        // Seen here: refused without a round trip.
        let mut fresh = judged(true, true, &[2]);
        fresh.claims.proof = Some(Claim::proof("jti-9", 1_060, 30));
        let Plan::Done(d) = plan(&c, fresh, &mut store, 1_001) else {
            panic!("should be refused locally")
        };
        assert_eq!(d.verdict, Err(Reason::StepConsumed));
    }

    #[test]
    fn etcd_answers_become_decisions() {
        let asking = || match plan(
            &config(true),
            judged(true, true, &[1]),
            &mut Store::default(),
            1_000,
        ) {
            Plan::Ask(a) => a,
            Plan::Done(d) => panic!("{d:?}"),
        };
        let mut store = Store::default();
        let d = resolve(asking(), Answer::Taken(vec![1]), &mut store, 1_000);
        assert_eq!(d.verdict, Err(Reason::StepConsumed));
        assert_eq!(
            d.detail.as_deref(),
            Some("single_use entry already consumed (etcd)")
        );
        assert_eq!(
            store.live.len(),
            1,
            "the taken entry is remembered here, the proof is not"
        );
        let d = resolve(
            asking(),
            Answer::Taken(vec![1, 0]),
            &mut Store::default(),
            1_000,
        );
        assert_eq!(
            d.verdict,
            Err(Reason::History(Code::ProofReplayed)),
            "proof first"
        );
        for answer in [
            Answer::Taken(vec![]),
            Answer::Taken(vec![7]),
            Answer::LeaseMissing,
            Answer::Unavailable("x".into()),
        ] {
            let mut store = Store::default();
            let d = resolve(asking(), answer, &mut store, 1_000);
            assert_eq!(d.verdict, Err(Reason::LedgerUnavailable));
            assert!(store.live.is_empty(), "nothing recorded without a verdict");
        }
    }
}
