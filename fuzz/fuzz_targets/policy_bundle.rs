//! `Config::from_json` never panics; an accepted policy serialises back (as
//! `custody policy compile` writes bundles) to a bundle that loads again and
//! serialises identically.
#![no_main]

use custody_core::config::Config;
use custody_core::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = Config::from_json(data) else {
        return;
    };
    assert!((1024..=64 << 20).contains(&config.limits.max_body_bytes));
    assert!((1..=128).contains(&config.limits.max_json_depth));
    let bundle = serde_json::to_string(&config.policy).expect("policy serialises");
    let again: Policy = serde_json::from_str(&bundle)
        .unwrap_or_else(|e| panic!("serialised policy does not load: {e}\n{bundle}"));
    assert_eq!(serde_json::to_string(&again).expect("serialises"), bundle);
});
