//! The etcd ledger, from the filter's side. A request's claims go to etcd in
//! one transaction through an Envoy cluster (etcd's JSON gateway); before
//! it, any lease of theirs this VM has not seen yet is granted (once per
//! lease per VM: at a cold start, or for a `single_use` horizon hours away).
//! Each answer comes back to the request's `on_http_call_response`, which
//! calls [`answered`]. The whole wait is bounded by `timeout_ms`.
//!
//! The root context grants, on a timer, the leases the next minute's proofs
//! will need ([`Granter`]), so in steady state a request makes one call.

use crate::host;
use crate::replay::SharedReplay;
use crate::shared::Shared;
use custody_core::config::{Config, Etcd};
use custody_core::decision::Decision;
use custody_core::ledger::etcd;
use custody_core::ledger::lease::{self, Bucket};
use custody_core::ledger::{self, Answer, Asking};
use proxy_wasm::types::LogLevel;
use std::collections::HashMap;
use std::time::Duration;

/// A request waiting for etcd.
pub struct Waiting {
    asking: Asking,
    /// The lease bucket of each claim.
    buckets: Vec<Bucket>,
    /// The callout in flight, and what it is.
    token: u32,
    call: Call,
    /// Microseconds since the epoch; no call outlives it.
    deadline: u64,
    /// Asked again after etcd lost a lease: at most once.
    retried: bool,
}

#[derive(Clone, Copy)]
enum Call {
    Grant(Bucket),
    Txn,
}

/// What the request does next.
pub enum Next {
    Wait(Waiting),
    Done(Decision),
}

/// Starts claiming `asking` in etcd.
pub fn start(shared: &Shared, config: &Config, asking: Asking) -> Next {
    let now_us = host::now_micros();
    let timeout_ms = config.ledger.etcd().map_or(0, |e| e.timeout_ms);
    let waiting = Waiting {
        buckets: lease::buckets(&asking.claims, now_us / 1_000_000),
        asking,
        token: 0,
        call: Call::Txn,
        deadline: now_us.saturating_add(timeout_ms.saturating_mul(1000)),
        retried: false,
    };
    send(shared, config, waiting)
}

/// The callout `token` of `waiting` answered (`body_size` bytes).
pub fn answered(
    shared: &Shared,
    config: &Config,
    mut waiting: Waiting,
    token: u32,
    body_size: usize,
) -> Next {
    if token != waiting.token {
        return Next::Wait(waiting); // not this request's call
    }
    let Some(prefix) = config.ledger.etcd().map(|e| e.prefix.as_str()) else {
        return done(
            waiting,
            Answer::Unavailable("no etcd ledger configured".into()),
        );
    };
    let (status, body) = host::call_response(body_size, etcd::MAX_ANSWER_BYTES);
    let Some(body) = body else {
        return done(
            waiting,
            Answer::Unavailable(format!("etcd answer of {body_size} bytes")),
        );
    };
    match waiting.call {
        Call::Grant(bucket) => match etcd::parse_grant(status, &body, prefix, &bucket) {
            Ok(()) => {
                shared.leases.borrow_mut().learn(bucket);
                send(shared, config, waiting)
            }
            Err(why) => done(waiting, Answer::Unavailable(why)),
        },
        Call::Txn => match etcd::parse_txn(status, &body, waiting.asking.claims.len()) {
            Answer::LeaseMissing if !waiting.retried => {
                host::log(
                    LogLevel::Warn,
                    "custody: ledger: etcd lost a lease; granting them again",
                );
                shared.leases.borrow_mut().forget_all();
                waiting.retried = true;
                send(shared, config, waiting)
            }
            answer => done(waiting, answer),
        },
    }
}

/// Sends the next call: the first lease not known yet, else the transaction.
fn send(shared: &Shared, config: &Config, mut waiting: Waiting) -> Next {
    let Some(e) = config.ledger.etcd() else {
        return done(
            waiting,
            Answer::Unavailable("no etcd ledger configured".into()),
        );
    };
    let now_us = host::now_micros();
    let left = waiting.deadline.saturating_sub(now_us);
    if left < 1000 {
        return done(
            waiting,
            Answer::Unavailable(format!("no answer within {} ms", e.timeout_ms)),
        );
    }
    let missing = shared.leases.borrow().missing(&waiting.buckets);
    let (call, path, body) = match missing {
        Some(bucket) => (
            Call::Grant(bucket),
            etcd::LEASE_GRANT_PATH,
            etcd::grant_body(&e.prefix, &bucket, now_us / 1_000_000),
        ),
        None => (
            Call::Txn,
            etcd::TXN_PATH,
            etcd::txn_body(&e.prefix, &waiting.asking.claims, &waiting.buckets),
        ),
    };
    match host::post_json(&e.cluster, path, &body, Duration::from_micros(left)) {
        Ok(token) => {
            waiting.token = token;
            waiting.call = call;
            Next::Wait(waiting)
        }
        Err(why) => done(waiting, Answer::Unavailable(why)),
    }
}

fn done(waiting: Waiting, answer: Answer) -> Next {
    let now = host::now_micros() / 1_000_000;
    Next::Done(ledger::resolve(
        waiting.asking,
        answer,
        &mut SharedReplay,
        now,
    ))
}

/// How often the root context looks ahead for leases to grant.
pub const TICK: Duration = Duration::from_secs(10);
/// ... the first time, soon after configure (Envoy's clusters cannot be
/// called while the plugin is configured).
pub const FIRST_TICK: Duration = Duration::from_millis(200);
/// A grant from the root context waits at most this long.
const GRANT_TIMEOUT: Duration = Duration::from_secs(5);

/// The root context's side: grants, ahead of need, the leases of the
/// buckets the next minute's proofs land in.
#[derive(Default)]
pub struct Granter {
    /// Grants in flight, by token.
    in_flight: HashMap<u32, Bucket>,
    /// The last grant failed (logged once, until one succeeds).
    failing: bool,
}

impl Granter {
    /// On every tick.
    pub fn grant_ahead(&mut self, shared: &Shared, etcd: &Etcd, skew: u64) {
        let now = host::now_micros() / 1_000_000;
        let due = {
            let mut book = shared.leases.borrow_mut();
            book.forget_expired(now);
            book.to_grant(now, skew)
        };
        for bucket in due {
            if self.in_flight.values().any(|b| *b == bucket) {
                continue;
            }
            let body = etcd::grant_body(&etcd.prefix, &bucket, now);
            match host::post_json(&etcd.cluster, etcd::LEASE_GRANT_PATH, &body, GRANT_TIMEOUT) {
                Ok(token) => {
                    self.in_flight.insert(token, bucket);
                }
                Err(why) => return self.failed(&why),
            }
        }
    }

    /// A grant answered.
    pub fn answered(&mut self, shared: &Shared, etcd: &Etcd, token: u32, body_size: usize) {
        let Some(bucket) = self.in_flight.remove(&token) else {
            return;
        };
        let (status, body) = host::call_response(body_size, etcd::MAX_ANSWER_BYTES);
        let granted = body
            .ok_or_else(|| format!("etcd answer of {body_size} bytes"))
            .and_then(|body| etcd::parse_grant(status, &body, &etcd.prefix, &bucket));
        match granted {
            Ok(()) => {
                shared.leases.borrow_mut().learn(bucket);
                if self.failing {
                    self.failing = false;
                    host::log(LogLevel::Info, "custody: ledger: etcd grants leases again");
                }
            }
            Err(why) => self.failed(&why),
        }
    }

    fn failed(&mut self, why: &str) {
        if !self.failing {
            self.failing = true;
            host::log(
                LogLevel::Warn,
                &format!("custody: ledger: cannot grant leases in etcd ({why}); requests that need the ledger will be refused with 503 ledger_unavailable while etcd does not answer"),
            );
        }
    }
}
