//! SPIFFE bundle sequence numbers only go up, across configuration updates
//! too: the highest `spiffe_sequence` loaded per trust domain is kept in
//! Envoy's shared data, and a configuration with a lower one is refused
//! (an attacker who can replay an old configuration cannot revive a removed
//! authority).

use custody_history::TrustBundle;
use proxy_wasm::hostcalls;

fn key(trust_domain: &str) -> String {
    format!("custody.bundle_sequence.{trust_domain}")
}

/// Records each trust domain's sequence, or says which went backwards.
pub fn check_and_record(trust: &TrustBundle) -> Result<(), String> {
    for domain in trust.trust_domains() {
        let Some(sequence) = trust.sequence(domain) else {
            continue; // PEM authorities carry no sequence
        };
        let (stored, cas) = hostcalls::get_shared_data(&key(domain)).unwrap_or((None, None));
        let seen = stored
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<u64>().ok());
        match seen {
            Some(seen) if sequence < seen => {
                return Err(format!(
                    "trust_domains.{domain}: spiffe_sequence {sequence} is lower than {seen}, already loaded by this Envoy"
                ))
            }
            Some(seen) if sequence == seen => {}
            _ => {
                // A lost race only means another VM recorded a sequence at the same time.
                let _ = hostcalls::set_shared_data(&key(domain), Some(sequence.to_string().as_bytes()), cas);
            }
        }
    }
    Ok(())
}
