//! Trust bundles that rotate without a configuration push:
//! `trust_domains.<td>.bundle_endpoint` (docs/configuration.md). The filter
//! fetches the trust domain's SPIFFE bundle through an Envoy cluster on a
//! timer; this module is everything about it that is not a host call:
//! the endpoint's settings and what an answer must be ([`crate::bundle_fetch`]), when to
//! ask and how long a bundle may be used ([`schedule`]), the record all
//! VMs of one Envoy share ([`Record`], [`merge`]), what one VM holds
//! ([`Watch`]) and the trust bundle in effect ([`trust_in_effect`]).
//!
//! A bundle is replaced only by one with a higher `spiffe_sequence`; an equal
//! one confirms it, a lower one is ignored, and an answer that is not a good
//! bundle changes nothing. A bundle not confirmed within `max_age_seconds`
//! stops being used. So no answer, and no failure to answer, makes Custody
//! trust more than the newest bundle the endpoint served.

pub mod schedule;

use crate::bundle_fetch::{self, BundleEndpoint, Sequence};
use crate::config::{Config, TrustSource};
use custody_history::TrustBundle;

/// A trust domain's bundle as a VM holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub source: Source,
    /// `spiffe_sequence`; `None` (a PEM bundle) is older than any sequence.
    pub sequence: Option<u64>,
    /// `spiffe_refresh_hint`, seconds.
    pub refresh_hint: Option<u64>,
    /// Unix ms: when the endpoint (or the configuration) last vouched for it.
    pub confirmed_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Pem(String),
    /// A SPIFFE bundle's JSON text.
    Spiffe(String),
}

impl Held {
    /// A configured `bundle_pem` or `spiffe_bundle` (already checked by
    /// [`Config::from_json`]), vouched for at `now`; `None` without one.
    pub fn configured(
        trust_domain: &str,
        source: &TrustSource,
        now: u64,
    ) -> Result<Option<Held>, String> {
        if let Some(pem) = &source.bundle_pem {
            return Ok(Some(Held {
                source: Source::Pem(pem.clone()),
                sequence: None,
                refresh_hint: None,
                confirmed_at: now,
            }));
        }
        let Some(json) = &source.spiffe_bundle else {
            return Ok(None);
        };
        let b = bundle_fetch::read(trust_domain, &json.to_string(), Sequence::Optional)?;
        Ok(Some(Held {
            source: Source::Spiffe(b.json),
            sequence: b.sequence,
            refresh_hint: b.refresh_hint,
            confirmed_at: now,
        }))
    }

    /// A bundle the endpoint served at `now`.
    pub fn fetched(bundle: bundle_fetch::Bundle, now: u64) -> Held {
        Held {
            source: Source::Spiffe(bundle.json),
            sequence: bundle.sequence,
            refresh_hint: bundle.refresh_hint,
            confirmed_at: now,
        }
    }

    /// The record of a SPIFFE bundle with a sequence (others have none).
    pub fn record(&self) -> Option<Record> {
        match (&self.source, self.sequence) {
            (Source::Spiffe(json), Some(sequence)) => Some(Record {
                sequence,
                confirmed_at: self.confirmed_at,
                json: json.clone(),
            }),
            _ => None,
        }
    }

    /// The bundle of a record, checked again like a fetched one.
    pub fn from_record(trust_domain: &str, record: &Record) -> Result<Held, String> {
        let b = bundle_fetch::read(trust_domain, &record.json, Sequence::Required)?;
        if b.sequence != Some(record.sequence) {
            return Err("the record's sequence is not its bundle's".into());
        }
        Ok(Held::fetched(b, record.confirmed_at))
    }

    /// Adds this bundle's authorities to `trust`.
    fn load_into(&self, trust_domain: &str, trust: &mut TrustBundle) -> Result<(), String> {
        match &self.source {
            Source::Pem(pem) => trust.add_pem(trust_domain, pem).map(|_| ()),
            Source::Spiffe(json) => trust.load_spiffe_bundle(trust_domain, json).map(|_| ()),
        }
        .map_err(|e| {
            format!(
                "trust_domains.{trust_domain}: {}: {}",
                e.reason(),
                e.detail()
            )
        })
    }
}

/// The newest bundle one Envoy has seen for a trust domain, and when it was
/// last vouched for: kept in Envoy's shared data (every VM reads it, so all
/// workers switch together and a new VM starts from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub sequence: u64,
    /// Unix ms.
    pub confirmed_at: u64,
    pub json: String,
}

const RECORD_TAG: &str = "custody-bundle/1";

impl Record {
    /// `custody-bundle/1 <sequence> <confirmed_at>\n<json>`.
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{RECORD_TAG} {} {}\n{}",
            self.sequence, self.confirmed_at, self.json
        )
        .into_bytes()
    }

    /// `None` for anything [`Record::encode`] did not write.
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (head, json) = text.split_once('\n')?;
        let mut words = head.split(' ');
        if words.next()? != RECORD_TAG {
            return None;
        }
        let sequence = words.next()?.parse().ok()?;
        let confirmed_at = words.next()?.parse().ok()?;
        if words.next().is_some() {
            return None;
        }
        Some(Record {
            sequence,
            confirmed_at,
            json: json.to_owned(),
        })
    }
}

/// What a shared record becomes when a bundle is offered to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// The offer has a higher sequence (or there was no record): write it.
    Replace(Record),
    /// The same sequence, vouched for later: write the record's own bundle
    /// with the later time (an equal sequence never changes the bundle, even
    /// if the offer's text differs).
    Confirm(Record),
    /// Nothing to change.
    Keep,
    /// The offer is older than the record: ignored (or, for a configured
    /// bundle of a trust domain without an endpoint, refused).
    Older { recorded: u64, offered: u64 },
}

/// A higher sequence replaces the record, an equal one moves its
/// confirmation forward, a lower one is older.
pub fn merge(recorded: Option<&Record>, offered: &Record) -> Merge {
    let Some(r) = recorded else {
        return Merge::Replace(offered.clone());
    };
    match offered.sequence.cmp(&r.sequence) {
        std::cmp::Ordering::Greater => Merge::Replace(offered.clone()),
        std::cmp::Ordering::Equal if offered.confirmed_at > r.confirmed_at => {
            Merge::Confirm(Record {
                confirmed_at: offered.confirmed_at,
                ..r.clone()
            })
        }
        std::cmp::Ordering::Equal => Merge::Keep,
        std::cmp::Ordering::Less => Merge::Older {
            recorded: r.sequence,
            offered: offered.sequence,
        },
    }
}

/// The record of a configured `spiffe_bundle` that has a sequence (loaded
/// into [`Config::trust`] by [`Config::from_json`]), vouched for at `now`.
pub fn configured_record(config: &Config, trust_domain: &str, now: u64) -> Option<Record> {
    let json = config
        .trust_domains
        .get(trust_domain)?
        .spiffe_bundle
        .as_ref()?;
    Some(Record {
        sequence: config.trust.sequence(trust_domain)?,
        confirmed_at: now,
        json: json.to_string(),
    })
}

/// The bundle a VM starts from: the newer of the configured one and the
/// shared record (a PEM bundle is older than any sequence); of two with the
/// same sequence, the record's bundle, vouched for at the later time.
pub fn newest(configured: Option<Held>, recorded: Option<Held>) -> Option<Held> {
    match (configured, recorded) {
        (Some(c), Some(r)) => Some(match c.sequence.cmp(&r.sequence) {
            std::cmp::Ordering::Greater => c,
            std::cmp::Ordering::Less => r,
            std::cmp::Ordering::Equal => Held {
                confirmed_at: c.confirmed_at.max(r.confirmed_at),
                ..r
            },
        }),
        (c, r) => c.or(r),
    }
}

/// What adopting a record did to a VM's bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adopted {
    /// A newer bundle is held now (`from`: the sequence before, if any).
    Replaced {
        from: Option<u64>,
        to: u64,
    },
    /// The same bundle, vouched for later.
    Confirmed,
    Unchanged,
}

/// One trust domain with a bundle endpoint, as one VM sees it: the bundle
/// it holds and when to fetch next.
#[derive(Debug, Clone)]
pub struct Watch {
    pub trust_domain: String,
    pub endpoint: BundleEndpoint,
    held: Option<Held>,
    /// Failed fetches in a row.
    failures: u32,
    /// Unix ms.
    next_fetch: u64,
    /// A fetch is in flight until then (Unix ms).
    in_flight_until: Option<u64>,
    /// Whether the held bundle was fresh when last asked.
    was_fresh: bool,
    /// The sequence of a record that did not check out: not read again
    /// (a record's bundle changes only with a higher sequence).
    refused: Option<u64>,
}

impl Watch {
    /// Starts from `held` (the configured bundle or the shared record); the
    /// first fetch is due at once.
    pub fn new(
        trust_domain: &str,
        endpoint: &BundleEndpoint,
        held: Option<Held>,
        now: u64,
    ) -> Self {
        let was_fresh = held
            .as_ref()
            .is_some_and(|h| schedule::fresh(endpoint, h.confirmed_at, now));
        Watch {
            trust_domain: trust_domain.to_owned(),
            endpoint: endpoint.clone(),
            held,
            failures: 0,
            next_fetch: now,
            in_flight_until: None,
            was_fresh,
            refused: None,
        }
    }

    pub fn held(&self) -> Option<&Held> {
        self.held.as_ref()
    }

    /// The held bundle while it is fresh: what requests may trust.
    pub fn usable(&self, now: u64) -> Option<&Held> {
        self.held
            .as_ref()
            .filter(|h| schedule::fresh(&self.endpoint, h.confirmed_at, now))
    }

    /// Takes the shared record's bundle if it is newer than the held one,
    /// its confirmation if it is the same. A record written by another VM's
    /// fetch also counts as this VM's: the next fetch is one interval after it.
    pub fn adopt(&mut self, record: &Record) -> Result<Adopted, String> {
        let held_sequence = self.held.as_ref().and_then(|h| h.sequence);
        let adopted = match (&mut self.held, held_sequence) {
            (Some(h), Some(s)) if s == record.sequence => {
                if record.confirmed_at <= h.confirmed_at {
                    return Ok(Adopted::Unchanged);
                }
                h.confirmed_at = record.confirmed_at;
                Adopted::Confirmed
            }
            (Some(_), Some(s)) if s > record.sequence => return Ok(Adopted::Unchanged),
            _ if self.refused == Some(record.sequence) => return Ok(Adopted::Unchanged),
            _ => {
                let held = Held::from_record(&self.trust_domain, record).inspect_err(|_| {
                    self.refused = Some(record.sequence);
                })?;
                self.held = Some(held);
                Adopted::Replaced {
                    from: held_sequence,
                    to: record.sequence,
                }
            }
        };
        let hint = self.held.as_ref().and_then(|h| h.refresh_hint);
        let next = record
            .confirmed_at
            .saturating_add(schedule::interval_ms(&self.endpoint, hint));
        self.next_fetch = self.next_fetch.max(next);
        self.failures = 0;
        Ok(adopted)
    }

    /// Whether a fetch should be sent now.
    pub fn due(&self, now: u64) -> bool {
        now >= self.next_fetch && self.in_flight_until.is_none_or(|until| now >= until)
    }

    /// A fetch was sent at `now`.
    pub fn sent(&mut self, now: u64) {
        // Envoy answers every call within its timeout; past it (and a
        // second), the call is taken as lost and may be sent again.
        let until = now
            .saturating_add(self.endpoint.timeout_ms)
            .saturating_add(1000);
        self.in_flight_until = Some(until);
    }

    /// The fetch answered with a bundle that was kept (newer or the same):
    /// the next one in an interval.
    pub fn succeeded(&mut self, now: u64) {
        let hint = self.held.as_ref().and_then(|h| h.refresh_hint);
        self.in_flight_until = None;
        self.failures = 0;
        self.next_fetch = now.saturating_add(schedule::interval_ms(&self.endpoint, hint));
    }

    /// The fetch failed, or answered with nothing usable; returns how many
    /// failed in a row.
    pub fn failed(&mut self, now: u64) -> u32 {
        let hint = self.held.as_ref().and_then(|h| h.refresh_hint);
        self.in_flight_until = None;
        self.failures = self.failures.saturating_add(1);
        self.next_fetch =
            now.saturating_add(schedule::retry_ms(&self.endpoint, hint, self.failures));
        self.failures
    }

    /// `Some(fresh)` when the held bundle became fresh or stale since last asked.
    pub fn freshness_changed(&mut self, now: u64) -> Option<bool> {
        let fresh = self.usable(now).is_some();
        (fresh != self.was_fresh).then(|| {
            self.was_fresh = fresh;
            fresh
        })
    }
}

/// The trust bundle requests are checked against at `now`: every trust
/// domain without an endpoint as configured, and each one with an endpoint
/// with its watch's bundle while that is fresh (none otherwise: its SVIDs
/// are then refused). Built from scratch, so nothing of a replaced bundle
/// survives. The errors (a domain left out, so trusting less) cannot happen
/// for sources that passed [`Config::from_json`] and [`bundle_fetch::read`]; they
/// are returned to be logged.
pub fn trust_in_effect(config: &Config, watches: &[Watch], now: u64) -> (TrustBundle, Vec<String>) {
    let mut trust = TrustBundle::new();
    let mut errors = Vec::new();
    for (domain, source) in &config.trust_domains {
        let loaded = match &source.bundle_endpoint {
            None => source.load_into(domain, &mut trust).map(|_| ()),
            Some(_) => watches
                .iter()
                .find(|w| &w.trust_domain == domain)
                .and_then(|w| w.usable(now))
                .map_or(Ok(()), |h| h.load_into(domain, &mut trust)),
        };
        if let Err(e) = loaded {
            errors.push(e);
        }
    }
    (trust, errors)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use custody_testkit::{ca_pem, ca_spiffe_bundle};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const TD: &str = "example.org";

    /// example.org's fixture CA as a bundle with this sequence.
    fn example(sequence: u64) -> String {
        let mut b: serde_json::Value = serde_json::from_str(&ca_spiffe_bundle("example")).unwrap();
        b["spiffe_sequence"] = sequence.into();
        b.to_string()
    }

    /// Another authority for example.org (core/testdata/peer/example-ca.pem):
    /// it signed none of the fixture SVIDs.
    fn rotated(sequence: u64) -> String {
        let pem = include_str!("../testdata/peer/example-ca.pem");
        let der = der::pem::decode_vec(pem.as_bytes()).unwrap().1;
        let x5c = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
        serde_json::json!({"spiffe_sequence": sequence, "keys": [{"use": "x509-svid", "kty": "EC", "x5c": [x5c]}]})
            .to_string()
    }

    fn record(sequence: u64, confirmed_at: u64, json: String) -> Record {
        Record {
            sequence,
            confirmed_at,
            json,
        }
    }

    fn endpoint(refresh_seconds: u64, max_age_seconds: u64) -> BundleEndpoint {
        BundleEndpoint {
            cluster: "bundles".into(),
            path: "/bundle".into(),
            authority: None,
            refresh_seconds,
            timeout_ms: 500,
            max_age_seconds,
        }
    }

    #[test]
    fn a_record_reads_back_exactly_and_nothing_else_reads() {
        let r = record(7, 1_700_000_000_123, example(7));
        assert_eq!(Record::decode(&r.encode()), Some(r.clone()));
        let json = r.json.clone();
        for bad in [
            String::new(),
            json.clone(),
            format!("custody-bundle/2 7 1\n{json}"),
            format!("custody-bundle/1 7\n{json}"),
            format!("custody-bundle/1 7 1 9\n{json}"),
            format!("custody-bundle/1 -7 1\n{json}"),
            format!("custody-bundle/1 seven 1\n{json}"),
            format!("custody-bundle/1 7 1 {json}"),
        ] {
            assert_eq!(Record::decode(bad.as_bytes()), None, "{bad:.40}");
        }
        assert_eq!(Record::decode(&[0xff, b'\n']), None);
        // A record's bundle is checked again as a fetched one, sequence included.
        assert_eq!(Held::from_record(TD, &r).unwrap().sequence, Some(7));
        let lying = record(8, 1, example(7));
        assert!(Held::from_record(TD, &lying)
            .unwrap_err()
            .contains("sequence"));
        assert!(Held::from_record(TD, &record(1, 1, "{}".into())).is_err());
    }

    #[test]
    fn only_a_higher_sequence_replaces_the_record() {
        let recorded = record(5, 1000, example(5));
        assert_eq!(merge(None, &recorded), Merge::Replace(recorded.clone()));
        let higher = record(6, 900, rotated(6));
        assert_eq!(
            merge(Some(&recorded), &higher),
            Merge::Replace(higher.clone())
        );
        // The same sequence with other contents: only the confirmation moves.
        let same = record(5, 2000, rotated(5));
        assert_eq!(
            merge(Some(&recorded), &same),
            Merge::Confirm(record(5, 2000, example(5)))
        );
        assert_eq!(
            merge(Some(&recorded), &record(5, 1000, example(5))),
            Merge::Keep
        );
        assert_eq!(
            merge(Some(&recorded), &record(5, 10, example(5))),
            Merge::Keep
        );
        assert_eq!(
            merge(Some(&recorded), &record(4, 5000, rotated(4))),
            Merge::Older {
                recorded: 5,
                offered: 4
            }
        );
    }

    #[test]
    fn a_vm_starts_from_the_newest_of_its_configuration_and_the_record() {
        let held = |sequence: Option<u64>, at: u64| Held {
            source: match sequence {
                Some(s) => Source::Spiffe(example(s)),
                None => Source::Pem(ca_pem("example")),
            },
            sequence,
            refresh_hint: None,
            confirmed_at: at,
        };
        assert_eq!(newest(None, None), None);
        assert_eq!(newest(Some(held(Some(1), 5)), None), Some(held(Some(1), 5)));
        assert_eq!(newest(None, Some(held(Some(1), 5))), Some(held(Some(1), 5)));
        // A configured bundle older than the record is superseded, not used.
        assert_eq!(
            newest(Some(held(Some(1), 9)), Some(held(Some(3), 5))),
            Some(held(Some(3), 5))
        );
        assert_eq!(
            newest(Some(held(Some(4), 9)), Some(held(Some(3), 5))),
            Some(held(Some(4), 9))
        );
        // PEM has no sequence: any recorded bundle is newer.
        assert_eq!(
            newest(Some(held(None, 9)), Some(held(Some(0), 5))),
            Some(held(Some(0), 5))
        );
        // The same sequence: the record's bundle, vouched for at the later time.
        assert_eq!(
            newest(Some(held(Some(3), 9)), Some(held(Some(3), 5))),
            Some(held(Some(3), 9))
        );
    }

    fn watch(held: Option<Held>, now: u64) -> Watch {
        Watch::new(TD, &endpoint(60, 600), held, now)
    }

    #[test]
    fn a_watch_takes_newer_bundles_and_confirmations_and_nothing_older() {
        let mut w = watch(None, 0);
        assert!(w.held().is_none());
        assert_eq!(
            w.adopt(&record(2, 1000, example(2))),
            Ok(Adopted::Replaced { from: None, to: 2 })
        );
        assert_eq!(
            w.adopt(&record(2, 1000, example(2))),
            Ok(Adopted::Unchanged)
        );
        assert_eq!(
            w.adopt(&record(2, 3000, example(2))),
            Ok(Adopted::Confirmed)
        );
        assert_eq!(w.held().unwrap().confirmed_at, 3000);
        // Older: nothing changes, not even the confirmation.
        assert_eq!(
            w.adopt(&record(1, 9000, rotated(1))),
            Ok(Adopted::Unchanged)
        );
        assert_eq!(w.held().unwrap().source, Source::Spiffe(example(2)));
        assert_eq!(w.held().unwrap().confirmed_at, 3000);
        // A record that does not check out leaves the held bundle in place.
        let err = w
            .adopt(&record(3, 9000, "{\"keys\":[]}".into()))
            .unwrap_err();
        assert!(err.contains("spiffe_sequence"), "{err}");
        assert_eq!(w.held().unwrap().sequence, Some(2));
        assert_eq!(
            w.adopt(&record(4, 9000, rotated(4))),
            Ok(Adopted::Replaced {
                from: Some(2),
                to: 4
            })
        );
        assert_eq!(w.held().unwrap().source, Source::Spiffe(rotated(4)));
    }

    #[test]
    fn fetches_are_due_at_start_then_per_interval_with_backoff_on_failure() {
        let mut w = watch(None, 10_000);
        assert!(w.due(10_000));
        w.sent(10_000);
        assert!(!w.due(10_100), "one fetch in flight at a time");
        // A call Envoy never answers is lost after its timeout and a second.
        assert!(w.due(11_500));
        w.sent(11_500);
        assert_eq!(w.failed(11_600), 1);
        assert!(!w.due(12_599));
        assert!(w.due(12_600));
        assert_eq!(w.failed(12_600), 2);
        assert!(!w.due(14_599) && w.due(14_600));
        w.adopt(&record(1, 14_700, example(1))).unwrap();
        w.succeeded(14_700);
        assert!(!w.due(74_699) && w.due(74_700));
        // Another VM's fetch counts as this VM's: the next one is an interval after it.
        w.adopt(&record(1, 70_000, example(1))).unwrap();
        assert!(!w.due(129_999) && w.due(130_000));
        // A bundle's refresh hint shortens the interval.
        let mut b: serde_json::Value = serde_json::from_str(&example(2)).unwrap();
        b["spiffe_refresh_hint"] = 10.into();
        w.adopt(&record(2, 130_000, b.to_string())).unwrap();
        w.succeeded(130_000);
        assert!(!w.due(139_999) && w.due(140_000));
    }

    #[test]
    fn a_bundle_is_usable_until_max_age_after_its_last_confirmation() {
        let held = Held::from_record(TD, &record(1, 0, example(1))).unwrap();
        let mut w = watch(Some(held), 0);
        assert!(w.usable(600_000).is_some());
        assert_eq!(w.freshness_changed(600_000), None);
        assert!(w.usable(600_001).is_none());
        assert_eq!(w.freshness_changed(600_001), Some(false));
        assert_eq!(w.freshness_changed(700_000), None, "reported once");
        // Failures never make it fresh again; a confirmation does.
        w.failed(700_000);
        assert!(w.usable(700_000).is_none());
        w.adopt(&record(1, 700_000, example(1))).unwrap();
        assert_eq!(w.freshness_changed(700_001), Some(true));
        // A start from a stale record is stale at once.
        let stale = Held::from_record(TD, &record(1, 0, example(1))).unwrap();
        assert!(watch(Some(stale), 600_001).usable(600_001).is_none());
    }

    fn config(domains: serde_json::Value) -> Config {
        let c = serde_json::json!({"trust_domains": domains, "policy": {"rules": []}});
        Config::from_json(c.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn the_trust_in_effect_has_each_endpoints_fresh_bundle_and_nothing_else() {
        let c = config(serde_json::json!({
            "other.org": {"bundle_pem": ca_pem("other")},
            "example.org": {"bundle_endpoint": {"cluster": "bundles", "refresh_seconds": 60, "max_age_seconds": 600}},
        }));
        let e = c.trust_domains[TD].bundle_endpoint.clone().unwrap();
        let mut w = Watch::new(TD, &e, None, 0);
        let (trust, errors) = trust_in_effect(&c, std::slice::from_ref(&w), 0);
        assert!(errors.is_empty());
        assert!(trust.authorities("other.org").is_some());
        assert!(
            trust.authorities(TD).is_none(),
            "nothing before the first fetch"
        );
        w.adopt(&record(1, 0, example(1))).unwrap();
        let (before, _) = trust_in_effect(&c, std::slice::from_ref(&w), 0);
        assert_eq!(before.authorities(TD).unwrap().len(), 1);
        w.adopt(&record(2, 0, rotated(2))).unwrap();
        let (after, _) = trust_in_effect(&c, std::slice::from_ref(&w), 0);
        let was = before.authorities(TD).unwrap()[0].sha256();
        let now = after.authorities(TD).unwrap();
        assert!(
            now.len() == 1 && now[0].sha256() != was,
            "the old authority is gone"
        );
        assert_ne!(before.fingerprint(), after.fingerprint());
        let (stale, _) = trust_in_effect(&c, std::slice::from_ref(&w), 600_001);
        assert!(stale.authorities(TD).is_none());
        assert!(stale.authorities("other.org").is_some());
    }

    #[test]
    fn configured_bundles_are_recorded_with_their_sequence() {
        let mut b: serde_json::Value = serde_json::from_str(&example(4)).unwrap();
        let c = config(serde_json::json!({
            "example.org": {"spiffe_bundle": b.clone()},
            "other.org": {"bundle_pem": ca_pem("other")},
        }));
        let r = configured_record(&c, TD, 77).unwrap();
        assert_eq!((r.sequence, r.confirmed_at), (4, 77));
        assert_eq!(Held::from_record(TD, &r).unwrap().sequence, Some(4));
        assert_eq!(
            configured_record(&c, "other.org", 77),
            None,
            "PEM has no sequence"
        );
        b.as_object_mut().unwrap().remove("spiffe_sequence");
        let c = config(serde_json::json!({"example.org": {"spiffe_bundle": b}}));
        assert_eq!(configured_record(&c, TD, 77), None);
    }
}
