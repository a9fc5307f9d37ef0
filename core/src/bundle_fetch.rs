//! What Custody asks a bundle endpoint, and what the answer must be to be
//! used: HTTP 200 and a SPIFFE bundle (SPIFFE Trust Domain and Bundle §4)
//! of at most [`MAX_BUNDLE_BYTES`] and [`MAX_KEYS`] keys, with a
//! `spiffe_sequence`, an integer `spiffe_refresh_hint` if any, at least one
//! `x509-svid` authority (each by the rules of docs/history-format.md §6.3),
//! and no authority naming another trust domain in its SPIFFE ID. Anything
//! else is refused whole: nothing of it is used.

use custody_history::TrustBundle;
use serde::Deserialize;
use serde_json::Value;

/// The largest bundle answer read (more is refused unread).
pub const MAX_BUNDLE_BYTES: usize = 128 << 10;
/// The most JWKs (of any `use`) a bundle may have.
pub const MAX_KEYS: usize = 64;
/// Deepest JSON nesting in a bundle (object, keys, key, x5c is 4).
const MAX_DEPTH: usize = 8;

/// `trust_domains.<td>.bundle_endpoint`: where the trust domain's SPIFFE
/// bundle is fetched, through an Envoy cluster whose TLS settings
/// authenticate the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEndpoint {
    /// The Envoy cluster that reaches the endpoint (with TLS).
    pub cluster: String,
    /// The request path (default `/`, where SPIRE serves its bundle).
    #[serde(default = "default_path")]
    pub path: String,
    /// The `:authority` (Host) sent; default: the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    /// The longest time between fetches, seconds (1 to 3600; default 300).
    #[serde(default = "default_refresh")]
    pub refresh_seconds: u64,
    /// How long one fetch may take, ms (10 to 30000; default 1000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// How long a bundle is used after the endpoint last served it, seconds
    /// (2 × `refresh_seconds` to 2592000; default 86400).
    #[serde(default = "default_max_age")]
    pub max_age_seconds: u64,
}

fn default_path() -> String {
    "/".to_owned()
}
fn default_refresh() -> u64 {
    300
}
fn default_timeout() -> u64 {
    1000
}
fn default_max_age() -> u64 {
    86_400
}

impl BundleEndpoint {
    /// The `:authority` sent with the request.
    pub fn authority(&self) -> &str {
        self.authority.as_deref().unwrap_or(&self.cluster)
    }

    /// Checks every value; `at` names the key in errors.
    pub fn check(&self, at: &str) -> Result<(), String> {
        let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if self.cluster.is_empty() || self.cluster.len() > 255 || !visible(&self.cluster) {
            return Err(format!(
                "{at}.cluster must be 1-255 printable ASCII characters"
            ));
        }
        if !self.path.starts_with('/')
            || self.path.len() > 1024
            || !visible(&self.path)
            || self.path.contains('#')
        {
            return Err(format!(
                "{at}.path must start with '/' and be at most 1024 printable ASCII characters, without '#'"
            ));
        }
        if let Some(a) = &self.authority {
            if a.is_empty() || a.len() > 255 || !visible(a) || a.contains('/') {
                return Err(format!(
                    "{at}.authority must be 1-255 printable ASCII characters, without '/'"
                ));
            }
        }
        if !(1..=3600).contains(&self.refresh_seconds) {
            return Err(format!("{at}.refresh_seconds must be between 1 and 3600"));
        }
        if !(10..=30_000).contains(&self.timeout_ms) {
            return Err(format!("{at}.timeout_ms must be between 10 and 30000"));
        }
        let least = 2 * self.refresh_seconds;
        if !(least..=2_592_000).contains(&self.max_age_seconds) {
            return Err(format!(
                "{at}.max_age_seconds must be between 2 × refresh_seconds ({least}) and 2592000"
            ));
        }
        Ok(())
    }
}

/// A SPIFFE bundle that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The exact JSON text.
    pub json: String,
    pub sequence: Option<u64>,
    /// `spiffe_refresh_hint`, seconds.
    pub refresh_hint: Option<u64>,
    /// How many `x509-svid` authorities it has (at least one).
    pub authorities: usize,
}

/// Whether a bundle without `spiffe_sequence` is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequence {
    /// A configured bundle (`spiffe_bundle`): the operator orders them.
    Optional,
    /// A fetched bundle: without a sequence, an older bundle (a stale
    /// replica, a replayed answer) could not be told from a newer one.
    Required,
}

/// The endpoint's answer: HTTP `status` (none when the call failed) and
/// `body` (none when it was larger than [`MAX_BUNDLE_BYTES`]).
pub fn answer(
    trust_domain: &str,
    status: Option<u32>,
    body: Option<&[u8]>,
) -> Result<Bundle, String> {
    match status {
        Some(200) => {}
        Some(s) => return Err(format!("HTTP status {s}")),
        None => return Err("no answer (connection failure, timeout or unknown cluster)".into()),
    }
    let body = body.ok_or(format!("a body over {MAX_BUNDLE_BYTES} bytes"))?;
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
    let (bundle, loaded) = load(trust_domain, text, Sequence::Required)?;
    // The bundle format does not name its trust domain (the endpoint's
    // configuration does, SPIFFE Trust Domain and Bundle §5), but an
    // authority may: one whose SPIFFE ID names another trust domain shows
    // that the endpoint serves another trust domain's bundle.
    let elsewhere = loaded
        .authorities(trust_domain)
        .unwrap_or_default()
        .iter()
        .flat_map(|a| a.uri_sans())
        .filter_map(|uri| crate::SpiffeId::parse(uri).ok())
        .find(|id| id.trust_domain() != trust_domain);
    match elsewhere {
        Some(id) => Err(format!(
            "an authority's SPIFFE ID is {id}, of another trust domain than {trust_domain}"
        )),
        None => Ok(bundle),
    }
}

/// Reads a SPIFFE bundle for `trust_domain`: the JWK Set's members, then
/// every `x509-svid` authority through the history verifier's own loader.
pub fn read(trust_domain: &str, json: &str, sequence: Sequence) -> Result<Bundle, String> {
    load(trust_domain, json, sequence).map(|(bundle, _)| bundle)
}

fn load(
    trust_domain: &str,
    json: &str,
    sequence: Sequence,
) -> Result<(Bundle, TrustBundle), String> {
    if json.len() > MAX_BUNDLE_BYTES {
        return Err(format!("a bundle over {MAX_BUNDLE_BYTES} bytes"));
    }
    let doc = custody_json::parse_strict(json.as_bytes(), MAX_DEPTH).map_err(|e| match e {
        custody_json::JsonError::DuplicateKey(k) => {
            format!("the bundle has the member `{k}` twice")
        }
        custody_json::JsonError::TooDeep => "the bundle is nested too deeply".to_owned(),
        custody_json::JsonError::Malformed => "the bundle is not JSON".to_owned(),
    })?;
    let obj = doc.as_object().ok_or("the bundle is not a JSON object")?;
    let integer = |name: &str| -> Result<Option<u64>, String> {
        match obj.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or(format!("{name} is not an integer of 0 to 2^64-1")),
        }
    };
    let seq = integer("spiffe_sequence")?;
    if seq.is_none() && sequence == Sequence::Required {
        return Err("the bundle has no spiffe_sequence".into());
    }
    let refresh_hint = integer("spiffe_refresh_hint")?;
    let keys = obj
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the bundle's keys is not an array")?;
    if keys.len() > MAX_KEYS {
        return Err(format!(
            "the bundle has {} keys, more than {MAX_KEYS}",
            keys.len()
        ));
    }
    let mut loaded = TrustBundle::new();
    let authorities = loaded
        .load_spiffe_bundle(trust_domain, json)
        .map_err(|e| format!("{}: {}", e.reason(), e.detail()))?;
    let bundle = Bundle {
        json: json.to_owned(),
        sequence: seq,
        refresh_hint,
        authorities,
    };
    Ok((bundle, loaded))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use custody_testkit::{ca_spiffe_bundle, cert_der};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A fixture CA's bundle (`example`, `other`, …) with these members
    /// set, and no `spiffe_sequence` unless among them.
    fn bundle(ca: &str, members: Value) -> String {
        let mut b: Value = serde_json::from_str(&ca_spiffe_bundle(ca)).unwrap();
        b.as_object_mut().unwrap().remove("spiffe_sequence");
        for (k, v) in members.as_object().unwrap() {
            b[k] = v.clone();
        }
        b.to_string()
    }

    fn example(sequence: u64) -> String {
        bundle("example", serde_json::json!({"spiffe_sequence": sequence}))
    }

    fn fetched(body: &str) -> Result<Bundle, String> {
        answer("example.org", Some(200), Some(body.as_bytes()))
    }

    #[test]
    fn a_good_answer_is_a_bundle_with_its_sequence_and_hint() {
        let body = bundle(
            "example",
            serde_json::json!({"spiffe_sequence": 7, "spiffe_refresh_hint": 60}),
        );
        let b = fetched(&body).unwrap();
        assert_eq!(
            (b.sequence, b.refresh_hint, b.authorities),
            (Some(7), Some(60), 1)
        );
        assert_eq!(b.json, body);
        // jwt-svid and unknown keys are skipped (SPIFFE Trust Domain and Bundle §4.2.2).
        let mut doc: Value = serde_json::from_str(&example(8)).unwrap();
        let keys = doc["keys"].as_array_mut().unwrap();
        keys.push(serde_json::json!({"use": "jwt-svid", "kty": "EC", "kid": "k"}));
        keys.push(serde_json::json!({"use": "x509-svid-2", "kty": "EC"}));
        assert_eq!(fetched(&doc.to_string()).unwrap().authorities, 1);
        assert_eq!(
            fetched(&example(u64::MAX)).unwrap().sequence,
            Some(u64::MAX)
        );
    }

    #[test]
    fn anything_but_http_200_is_no_bundle() {
        let body = example(1);
        for (status, want) in [
            (None, "no answer"),
            (Some(500), "HTTP status 500"),
            (Some(404), "HTTP status 404"),
            (Some(302), "HTTP status 302"),
            (Some(204), "HTTP status 204"),
        ] {
            let err = answer("example.org", status, Some(body.as_bytes())).unwrap_err();
            assert!(err.contains(want), "{status:?}: {err}");
        }
        let err = answer("example.org", Some(200), None).unwrap_err();
        assert!(err.contains("over 131072 bytes"), "{err}");
    }

    #[test]
    fn a_body_that_is_not_a_good_bundle_is_refused_whole() {
        let not_ca = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            cert_der("refund-agent"),
        );
        let deep = format!("{}{}", "[".repeat(9), "]".repeat(9));
        let many_keys = serde_json::json!({
            "spiffe_sequence": 1,
            "keys": vec![serde_json::json!({"use": "jwt-svid", "kty": "EC"}); MAX_KEYS + 1],
        })
        .to_string();
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "not JSON"),
            ("<html>oops</html>".into(), "not JSON"),
            (example(1) + "x", "not JSON"),
            (deep, "nested too deeply"),
            ("[]".into(), "not a JSON object"),
            (r#"{"spiffe_sequence":1}"#.into(), "keys is not an array"),
            (r#"{"spiffe_sequence":1,"keys":{}}"#.into(), "keys is not an array"),
            (
                r#"{"spiffe_sequence":1,"spiffe_sequence":2,"keys":[]}"#.into(),
                "member `spiffe_sequence` twice",
            ),
            (bundle("example", serde_json::json!({})), "no spiffe_sequence"),
            (bundle("example", serde_json::json!({"spiffe_sequence": -1})), "spiffe_sequence is not an integer"),
            (bundle("example", serde_json::json!({"spiffe_sequence": 1.5})), "spiffe_sequence is not an integer"),
            (bundle("example", serde_json::json!({"spiffe_sequence": "2"})), "spiffe_sequence is not an integer"),
            (
                r#"{"spiffe_sequence":18446744073709551616,"keys":[]}"#.into(),
                "spiffe_sequence is not an integer",
            ),
            (
                bundle("example", serde_json::json!({"spiffe_sequence": 1, "spiffe_refresh_hint": "300"})),
                "spiffe_refresh_hint is not an integer",
            ),
            (many_keys, "65 keys, more than 64"),
            (
                r#"{"spiffe_sequence":1,"keys":[{"use":"jwt-svid","kty":"EC"}]}"#.into(),
                "no x509-svid authority",
            ),
            (
                serde_json::json!({"spiffe_sequence": 1, "keys": [{"use": "x509-svid", "kty": "EC", "x5c": [not_ca]}]})
                    .to_string(),
                "not a CA",
            ),
            (
                r#"{"spiffe_sequence":1,"keys":[{"use":"x509-svid","kty":"EC","x5c":["not base64!"]}]}"#.into(),
                "not base64",
            ),
            // other.org's authority served as example.org's bundle.
            (
                bundle("other", serde_json::json!({"spiffe_sequence": 9})),
                "spiffe://other.org, of another trust domain than example.org",
            ),
        ];
        for (body, want) in cases {
            let err = fetched(&body).unwrap_err();
            assert!(err.contains(want), "{body}: {err}");
        }
        let err = answer("example.org", Some(200), Some(&[0xff, 0xfe])).unwrap_err();
        assert!(err.contains("not UTF-8"), "{err}");
    }

    #[test]
    fn the_size_cap_is_exact() {
        let body = example(1);
        let pad = MAX_BUNDLE_BYTES - body.len();
        let at_cap = format!("{}{}", " ".repeat(pad), body);
        assert_eq!(at_cap.len(), MAX_BUNDLE_BYTES);
        assert!(fetched(&at_cap).is_ok());
        let over = format!(" {at_cap}");
        assert!(fetched(&over).unwrap_err().contains("over 131072 bytes"));
    }

    #[test]
    fn a_configured_bundle_may_lack_a_sequence() {
        let body = bundle("example", serde_json::json!({}));
        let b = read("example.org", &body, Sequence::Optional).unwrap();
        assert_eq!((b.sequence, b.authorities), (None, 1));
        assert!(read("example.org", &body, Sequence::Required).is_err());
    }

    #[test]
    fn endpoint_settings_are_checked() {
        let good = BundleEndpoint {
            cluster: "spire_bundle".into(),
            path: "/".into(),
            authority: None,
            refresh_seconds: 300,
            timeout_ms: 1000,
            max_age_seconds: 86_400,
        };
        assert!(good.check("e").is_ok());
        assert_eq!(good.authority(), "spire_bundle");
        let with = |f: &dyn Fn(&mut BundleEndpoint)| {
            let mut e = good.clone();
            f(&mut e);
            e.check("e").unwrap_err()
        };
        assert!(with(&|e| e.cluster = String::new()).contains("cluster"));
        assert!(with(&|e| e.cluster = "a b".into()).contains("cluster"));
        assert!(with(&|e| e.cluster = "c".repeat(256)).contains("cluster"));
        assert!(with(&|e| e.path = "bundle".into()).contains("path"));
        assert!(with(&|e| e.path = "/a b".into()).contains("path"));
        assert!(with(&|e| e.path = "/a#b".into()).contains("path"));
        assert!(with(&|e| e.path = format!("/{}", "p".repeat(1024))).contains("path"));
        assert!(with(&|e| e.authority = Some(String::new())).contains("authority"));
        assert!(with(&|e| e.authority = Some("h/x".into())).contains("authority"));
        assert!(with(&|e| e.refresh_seconds = 0).contains("refresh_seconds"));
        assert!(with(&|e| e.refresh_seconds = 3601).contains("refresh_seconds"));
        assert!(with(&|e| e.timeout_ms = 9).contains("timeout_ms"));
        assert!(with(&|e| e.timeout_ms = 30_001).contains("timeout_ms"));
        assert!(with(&|e| e.max_age_seconds = 599).contains("max_age_seconds"));
        assert!(with(&|e| e.max_age_seconds = 2_592_001).contains("max_age_seconds"));
        let mut short = good.clone();
        (
            short.refresh_seconds,
            short.max_age_seconds,
            short.timeout_ms,
        ) = (1, 2, 10);
        assert!(short.check("e").is_ok());
    }
}
