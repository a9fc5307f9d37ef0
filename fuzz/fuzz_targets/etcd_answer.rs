//! `ledger::etcd::parse_txn` never panics, and never says "claimed" or
//! "taken" for anything but a 200 answer of exactly the expected shape: the
//! first byte picks the status and the claim count, the rest is the body.
#![no_main]

use custody_core::ledger::etcd::parse_txn;
use custody_core::ledger::Answer;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let status = match first & 3 {
        0 => None,
        1 => Some(200),
        2 => Some(404),
        _ => Some(503),
    };
    let claims = usize::from(first >> 2) % 8;
    let answer = parse_txn(status, body, claims);
    if let Answer::Claimed | Answer::Taken(_) = answer {
        assert_eq!(status, Some(200), "a decision from a non-200 answer");
        let doc: Value = serde_json::from_slice(body).expect("decided on a body serde_json refuses");
        assert!(doc["header"].is_object(), "decided without etcd's header");
        let responses = doc["responses"].as_array().expect("decided without responses");
        assert_eq!(responses.len(), claims, "decided on the wrong number of responses");
    }
    if let Answer::Taken(taken) = &answer {
        assert!(!taken.is_empty() && taken.iter().all(|&i| i < claims));
        assert!(taken.windows(2).all(|w| w[0] < w[1]));
    }
    if answer == Answer::LeaseMissing {
        assert_eq!(status, Some(404));
    }
});
