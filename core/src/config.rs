//! The plugin configuration: one JSON document, passed to Envoy as a
//! `google.protobuf.StringValue` (what Istio's `pluginConfig` becomes).
//! Parsed once per VM; anything unknown or invalid is an error, and the
//! filter then refuses every request.

use crate::bundle_fetch::{self, BundleEndpoint};
use crate::policy::Policy;
use crate::SpiffeId;
use custody_history::TrustBundle;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `enforce` (default) refuses denied requests; `audit` logs and forwards them.
    #[serde(default)]
    pub mode: Mode,
    /// Where the caller's SPIFFE ID comes from.
    #[serde(default)]
    pub identity: IdentitySource,
    /// If not empty, the only request paths accepted (exact, query ignored).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Whether request headers are held until the decision (see [`HeaderMode`]).
    #[serde(default)]
    pub headers: HeaderMode,
    #[serde(default)]
    pub limits: Limits,
    /// Whether list results are filtered per caller (see [`Lists`]).
    #[serde(default)]
    pub lists: Lists,
    /// This tool server's SPIFFE ID: the `aud` every history proof must name.
    #[serde(default)]
    pub audience: Option<String>,
    /// X.509 authorities per trust domain, for verifying workflow history.
    #[serde(default)]
    pub trust_domains: BTreeMap<String, TrustSource>,
    #[serde(default)]
    pub history: HistoryLimits,
    /// Where proof ids and consumed `single_use` entries are remembered.
    #[serde(default)]
    pub ledger: Ledger,
    /// The compiled policy bundle (`custody policy compile` output).
    pub policy: Policy,
    /// What the filter writes to Envoy's log.
    #[serde(default)]
    pub log: LogOptions,
    /// Diagnostics, all off by default.
    #[serde(default)]
    pub debug: DebugOptions,
    /// `trust_domains` as configured, checked once at configuration time.
    /// A trust domain with a `bundle_endpoint` has only its starting bundle
    /// here, if any: the filter checks requests against the bundle in effect
    /// ([`crate::bundles::trust_in_effect`]).
    #[serde(skip)]
    pub trust: TrustBundle,
}

/// Where a trust domain's X.509 authorities come from: exactly one of
/// `bundle_pem` and `spiffe_bundle`, or a `bundle_endpoint` with at most one
/// of them as the bundle to start from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSource {
    /// One or more PEM certificates.
    #[serde(default)]
    pub bundle_pem: Option<String>,
    /// A SPIFFE bundle (JWKS with `x509-svid` keys and `spiffe_sequence`).
    #[serde(default)]
    pub spiffe_bundle: Option<serde_json::Value>,
    /// Where newer SPIFFE bundles are fetched from ([`crate::bundles`]).
    #[serde(default)]
    pub bundle_endpoint: Option<BundleEndpoint>,
}

impl TrustSource {
    /// Adds the configured authorities (`bundle_pem` or `spiffe_bundle`) to
    /// `trust`; how many.
    pub fn load_into(&self, domain: &str, trust: &mut TrustBundle) -> Result<usize, String> {
        let loaded = match (&self.bundle_pem, &self.spiffe_bundle) {
            (Some(pem), None) => trust.add_pem(domain, pem),
            (None, Some(jwks)) => trust.load_spiffe_bundle(domain, &jwks.to_string()),
            (None, None) => return Ok(0),
            (Some(_), Some(_)) => {
                return Err(format!(
                    "trust_domains.{domain}: give exactly one of bundle_pem and spiffe_bundle"
                ))
            }
        };
        loaded.map_err(|e| format!("trust_domains.{domain}: {}: {}", e.reason(), e.detail()))
    }
}

/// Caps and clock skew for the signed workflow history.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryLimits {
    /// Most entries in a history (1 to 256; default 32).
    pub max_entries: usize,
    /// Most bytes in each history header (1 KiB to 256 KiB; default 48 KiB).
    pub max_header_bytes: usize,
    /// Most bytes of one entry's `claims` (default 2 KiB, at most 16 KiB).
    pub max_claims_bytes: usize,
    /// Most certificates in `workflow-history-certs` (and in a caller's
    /// forwarded chain): 1 to 64, default 32. A request may verify at most
    /// twice as many certificate signatures while building paths.
    pub max_certs: usize,
    /// Clock skew tolerated by every time check, in seconds (0 to 300; default 30).
    pub skew_seconds: u64,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        let d = custody_history::Limits::default();
        HistoryLimits {
            max_entries: d.max_entries,
            max_header_bytes: d.max_header_bytes,
            max_claims_bytes: d.max_claims_bytes,
            max_certs: d.max_certs,
            skew_seconds: d.skew_secs,
        }
    }
}

impl HistoryLimits {
    /// The verifier's limits.
    pub fn verifier_limits(&self) -> custody_history::Limits {
        custody_history::Limits {
            max_entries: self.max_entries,
            max_header_bytes: self.max_header_bytes,
            max_claims_bytes: self.max_claims_bytes,
            max_certs: self.max_certs,
            skew_secs: self.skew_seconds,
            ..Default::default()
        }
    }
}

/// `ledger`: which store admits each proof `jti` and consumed `single_use`
/// entry once (see docs/configuration.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    #[serde(default)]
    pub backend: Backend,
    /// Required with `backend: etcd`, refused otherwise.
    #[serde(default)]
    pub etcd: Option<Etcd>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// This Envoy's shared data: once per Envoy.
    #[default]
    Local,
    /// An etcd cluster shared by every replica: once per etcd cluster.
    Etcd,
}

/// The most `single_use` clauses one rule may have with the etcd ledger
/// (one transaction takes every claim; etcd's default cap is 128 operations).
pub const MAX_STEP_CLAIMS: usize = 63;

/// The etcd cluster, reached through an Envoy cluster (etcd's JSON gateway).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Etcd {
    /// The Envoy cluster that reaches etcd's client port.
    pub cluster: String,
    /// Every key and lease of Custody lives under it (ends with `/`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How long a request waits for etcd in all (10 to 5000 ms).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_prefix() -> String {
    "custody/".to_owned()
}

fn default_timeout_ms() -> u64 {
    250
}

impl Ledger {
    /// The etcd settings when the backend is etcd.
    pub fn etcd(&self) -> Option<&Etcd> {
        match self.backend {
            Backend::Etcd => self.etcd.as_ref(),
            Backend::Local => None,
        }
    }

    fn check(&self) -> Result<(), String> {
        let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        match (self.backend, &self.etcd) {
            (Backend::Local, None) => Ok(()),
            (Backend::Local, Some(_)) => {
                Err("ledger.etcd is set, but ledger.backend is not \"etcd\"".into())
            }
            (Backend::Etcd, None) => Err("ledger.backend \"etcd\" needs ledger.etcd".into()),
            (Backend::Etcd, Some(e)) => {
                if e.cluster.is_empty() || e.cluster.len() > 255 || !visible(&e.cluster) {
                    return Err(
                        "ledger.etcd.cluster must be 1-255 printable ASCII characters".into(),
                    );
                }
                if e.prefix.len() > 128 || !visible(&e.prefix) || !e.prefix.ends_with('/') {
                    return Err(
                        "ledger.etcd.prefix must be 1-128 printable ASCII characters ending with '/'"
                            .into(),
                    );
                }
                if !(10..=5000).contains(&e.timeout_ms) {
                    return Err("ledger.etcd.timeout_ms must be between 10 and 5000".into());
                }
                Ok(())
            }
        }
    }
}

/// What the filter writes to Envoy's log (component `wasm`, level info).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogOptions {
    /// Which decisions get a decision line.
    pub decisions: DecisionLines,
}

/// Which decisions get a decision line. Every decision is in the access log's
/// filter state and the counters whatever this says; the line costs a host
/// call, Envoy's logger and a write on the worker thread per request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionLines {
    All,
    /// Refusals, and in audit mode the denials forwarded anyway.
    #[default]
    Denied,
    None,
}

impl DecisionLines {
    /// Whether a decision that `allowed` (or not) gets a line.
    pub fn wants(self, allowed: bool) -> bool {
        match self {
            DecisionLines::All => true,
            DecisionLines::Denied => !allowed,
            DecisionLines::None => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DecisionLines::All => "all",
            DecisionLines::Denied => "denied",
            DecisionLines::None => "none",
        }
    }
}

/// Diagnostics for finding out why requests are decided as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugOptions {
    /// Write the Rego input document of each decision into its log line
    /// (`input`), whether or not the policy uses Rego.
    pub log_input: bool,
    /// With `log_input`: keep history entries' `claims`, `mcp.arguments` and
    /// credential headers; otherwise they are replaced by `"<redacted>"`.
    pub log_claims: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

/// Envoy can hold the request headers while the body is checked only when
/// the wasm filter's `allow_on_headers_stop_iteration` is set, which Istio's
/// WasmPlugin cannot do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderMode {
    /// `stream` under Istio (node metadata `ISTIO_VERSION` present), else `hold`.
    #[default]
    Auto,
    /// Hold the headers: a refused request never reaches the upstream at all.
    Hold,
    /// Forward the headers at once and decide at the end of the body: the
    /// upstream may see the headers of a refused request, never its body.
    Stream,
}

/// What happens to the results of `tools/list`, `prompts/list`,
/// `resources/list` and `resources/templates/list`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lists {
    /// Each caller sees only the items some rule lets it use.
    #[default]
    Filter,
    /// Responses pass untouched.
    Pass,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// The validated downstream certificate's single SPIFFE URI SAN.
    #[default]
    PeerCertificate,
    /// Istio's `io.istio.peer_principal` filter state.
    IstioPeerPrincipal,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body accepted, in bytes (1 KiB to 64 MiB; default 1 MiB).
    pub max_body_bytes: usize,
    /// Deepest JSON nesting accepted (1 to 128; default 64), in requests and list responses.
    pub max_json_depth: usize,
    /// Largest list response filtered: a JSON body, or one SSE event
    /// (1 KiB to 64 MiB; default 1 MiB). A larger one is refused.
    pub max_list_bytes: usize,
}

impl Mode {
    /// The configuration's own word for it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

impl IdentitySource {
    pub fn name(self) -> &'static str {
        match self {
            IdentitySource::PeerCertificate => "peer_certificate",
            IdentitySource::IstioPeerPrincipal => "istio_peer_principal",
        }
    }
}

impl HeaderMode {
    pub fn name(self) -> &'static str {
        match self {
            HeaderMode::Auto => "auto",
            HeaderMode::Hold => "hold",
            HeaderMode::Stream => "stream",
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_json_depth: 64,
            max_list_bytes: 1 << 20,
        }
    }
}

impl Config {
    /// Parses and checks a plugin configuration. The error names the field
    /// and position, for the log line that says why traffic is refused.
    pub fn from_json(bytes: &[u8]) -> Result<Config, String> {
        // Duplicate members would make two readers of one file disagree.
        if let Err(custody_json::JsonError::DuplicateKey(key)) =
            custody_json::parse_strict(bytes, 64)
        {
            return Err(format!("duplicate member `{key}`"));
        }
        let mut config: Config = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        config.check()?;
        config.trust = config.load_trust()?;
        config.policy.prepare_rego();
        Ok(config)
    }

    fn load_trust(&self) -> Result<TrustBundle, String> {
        let mut trust = TrustBundle::new();
        for (domain, source) in &self.trust_domains {
            let n = source.load_into(domain, &mut trust)?;
            match &source.bundle_endpoint {
                None if n == 0 => {
                    if source.bundle_pem.is_none() && source.spiffe_bundle.is_none() {
                        return Err(format!(
                            "trust_domains.{domain}: give one of bundle_pem, spiffe_bundle and bundle_endpoint"
                        ));
                    }
                    return Err(format!("trust_domains.{domain}: no X.509 authority"));
                }
                None => {}
                Some(endpoint) => {
                    endpoint.check(&format!("trust_domains.{domain}.bundle_endpoint"))?;
                    // The bundle to start from is read as a fetched one is.
                    if let Some(json) = &source.spiffe_bundle {
                        bundle_fetch::read(
                            domain,
                            &json.to_string(),
                            bundle_fetch::Sequence::Optional,
                        )
                        .map_err(|e| format!("trust_domains.{domain}.spiffe_bundle: {e}"))?;
                    }
                }
            }
        }
        Ok(trust)
    }

    /// The trust domains whose bundles come from an endpoint.
    pub fn bundle_endpoints(&self) -> impl Iterator<Item = (&str, &BundleEndpoint)> {
        self.trust_domains
            .iter()
            .filter_map(|(d, s)| Some((d.as_str(), s.bundle_endpoint.as_ref()?)))
    }

    /// The authorities of `trust` (the bundle in effect) the caller's
    /// certificate must chain to (its own trust domain's), when any trust
    /// domains are configured.
    pub fn caller_authorities<'a>(
        &self,
        trust: &'a TrustBundle,
        limits: &'a custody_history::Limits,
        ecdsa: &'a dyn custody_history::EcdsaP256Verifier,
        now: u64,
    ) -> Option<crate::identity::Authorities<'a>> {
        (!self.trust_domains.is_empty()).then_some(crate::identity::Authorities {
            bundle: trust,
            limits,
            ecdsa,
            now,
        })
    }

    /// Whether signed workflow history can be verified at all.
    pub fn verifies_history(&self) -> bool {
        self.audience.is_some() && !self.trust_domains.is_empty()
    }

    fn check(&self) -> Result<(), String> {
        if !(1024..=64 << 20).contains(&self.limits.max_body_bytes) {
            return Err("limits.max_body_bytes must be between 1024 and 67108864".into());
        }
        if !(1..=128).contains(&self.limits.max_json_depth) {
            return Err("limits.max_json_depth must be between 1 and 128".into());
        }
        if !(1024..=64 << 20).contains(&self.limits.max_list_bytes) {
            return Err("limits.max_list_bytes must be between 1024 and 67108864".into());
        }
        if let Some(p) = self
            .paths
            .iter()
            .find(|p| !p.starts_with('/') || p.contains('?'))
        {
            return Err(format!(
                "paths: '{p}' must start with '/' and have no query"
            ));
        }
        if let Some(aud) = &self.audience {
            SpiffeId::parse(aud).map_err(|e| format!("audience '{aud}': {e}"))?;
        }
        for domain in self.trust_domains.keys() {
            custody_spiffe::check_trust_domain(domain)
                .map_err(|e| format!("trust_domains: '{domain}': {e}"))?;
        }
        let h = &self.history;
        if !(1..=256).contains(&h.max_entries)
            || !(1024..=256 << 10).contains(&h.max_header_bytes)
            || !(1..=16 << 10).contains(&h.max_claims_bytes)
            || !(1..=64).contains(&h.max_certs)
            || h.skew_seconds > 300
        {
            return Err("history: max_entries 1-256, max_header_bytes 1024-262144, max_claims_bytes 1-16384, max_certs 1-64, skew_seconds 0-300".into());
        }
        self.ledger.check()?;
        if self.ledger.etcd().is_some() {
            // One etcd transaction takes every claim of a request.
            let most = MAX_STEP_CLAIMS;
            if let Some(rule) = self
                .policy
                .rules
                .iter()
                .find(|r| r.require.iter().filter(|c| c.single_use).count() > most)
            {
                return Err(format!(
                    "rule '{}' has more than {most} single_use clauses, more than one etcd transaction takes",
                    rule.name
                ));
            }
        }
        self.policy.check_rego()?;
        let needs_history = self.policy.rules.iter().find(|r| !r.require.is_empty());
        if let (Some(rule), false) = (needs_history, self.verifies_history()) {
            return Err(format!(
                "rule '{}' requires workflow steps, so audience and trust_domains must be configured",
                rule.name
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn defaults_are_enforce_peer_certificate_one_mib() {
        let c = Config::from_json(br#"{"policy":{"rules":[]}}"#).unwrap();
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.identity, IdentitySource::PeerCertificate);
        assert_eq!(c.headers, HeaderMode::Auto);
        assert_eq!(c.limits.max_body_bytes, 1 << 20);
        assert_eq!(c.limits.max_json_depth, 64);
        assert_eq!(c.limits.max_list_bytes, 1 << 20);
        assert_eq!(c.lists, Lists::Filter);
        assert!(c.paths.is_empty());
        assert_eq!(c.debug, DebugOptions::default());
        assert!(!c.debug.log_input && !c.debug.log_claims);
        assert_eq!(c.log.decisions, DecisionLines::Denied);
    }

    #[test]
    fn decision_lines_all_denied_or_none() {
        for (value, wanted) in [
            ("all", [true, true]),
            ("denied", [false, true]),
            ("none", [false, false]),
        ] {
            let json = format!(r#"{{"policy":{{"rules":[]}},"log":{{"decisions":"{value}"}}}}"#);
            let lines = Config::from_json(json.as_bytes()).unwrap().log.decisions;
            assert_eq!(lines.name(), value);
            assert_eq!([lines.wants(true), lines.wants(false)], wanted, "{value}");
        }
    }

    #[test]
    fn reads_every_key() {
        let c = Config::from_json(
            br#"{"mode":"audit","identity":"istio_peer_principal","paths":["/mcp"],"headers":"stream","lists":"pass",
                 "debug":{"log_input":true,"log_claims":true},
                 "limits":{"max_body_bytes":4096,"max_json_depth":8,"max_list_bytes":2048},"policy":{"version":1,"default":"deny","rules":[]}}"#,
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Audit);
        assert_eq!(c.identity, IdentitySource::IstioPeerPrincipal);
        assert_eq!(c.paths, vec!["/mcp".to_owned()]);
        assert_eq!(c.headers, HeaderMode::Stream);
        assert_eq!(
            c.debug,
            DebugOptions {
                log_input: true,
                log_claims: true
            }
        );
        assert_eq!(
            (c.limits.max_body_bytes, c.limits.max_json_depth),
            (4096, 8)
        );
        assert_eq!((c.lists, c.limits.max_list_bytes), (Lists::Pass, 2048));
    }

    #[test]
    fn the_ledger_is_local_unless_etcd_is_configured() {
        let c = Config::from_json(br#"{"policy":{"rules":[]}}"#).unwrap();
        assert_eq!(c.ledger.backend, Backend::Local);
        assert_eq!(c.ledger.etcd(), None);
        let c = Config::from_json(
            br#"{"ledger":{"backend":"etcd","etcd":{"cluster":"etcd"}},"policy":{"rules":[]}}"#,
        )
        .unwrap();
        let e = c.ledger.etcd().unwrap();
        assert_eq!(
            (e.cluster.as_str(), e.prefix.as_str(), e.timeout_ms),
            ("etcd", "custody/", 250)
        );
        let c = Config::from_json(
            br#"{"ledger":{"backend":"etcd","etcd":{"cluster":"e","prefix":"t/c/","timeout_ms":10}},"policy":{"rules":[]}}"#,
        )
        .unwrap();
        assert_eq!(c.ledger.etcd().unwrap().timeout_ms, 10);
    }

    #[test]
    fn refuses_a_ledger_it_cannot_use() {
        let with = |ledger: &str| {
            Config::from_json(
                format!(r#"{{"ledger":{ledger},"policy":{{"rules":[]}}}}"#).as_bytes(),
            )
            .unwrap_err()
        };
        for (ledger, want) in [
            (r#"{"backend":"redis"}"#, "unknown variant"),
            (r#"{"backend":"etcd"}"#, "needs ledger.etcd"),
            (r#"{"etcd":{"cluster":"e"}}"#, "ledger.backend is not"),
            (
                r#"{"backend":"local","etcd":{"cluster":"e"}}"#,
                "ledger.backend is not",
            ),
            (r#"{"backend":"etcd","etcd":{}}"#, "missing field `cluster`"),
            (r#"{"backend":"etcd","etcd":{"cluster":""}}"#, "cluster"),
            (r#"{"backend":"etcd","etcd":{"cluster":"a b"}}"#, "cluster"),
            (
                r#"{"backend":"etcd","etcd":{"cluster":"e","prefix":""}}"#,
                "prefix",
            ),
            (
                r#"{"backend":"etcd","etcd":{"cluster":"e","prefix":"custody"}}"#,
                "prefix",
            ),
            (
                r#"{"backend":"etcd","etcd":{"cluster":"e","prefix":"cus tody/"}}"#,
                "prefix",
            ),
            (
                r#"{"backend":"etcd","etcd":{"cluster":"e","timeout_ms":0}}"#,
                "timeout_ms",
            ),
            (
                r#"{"backend":"etcd","etcd":{"cluster":"e","timeout_ms":5001}}"#,
                "timeout_ms",
            ),
            (
                r#"{"backend":"etcd","etcd":{"cluster":"e","timeout":100}}"#,
                "unknown field `timeout`",
            ),
            (
                r#"{"backend":"etcd","etcd":{"cluster":"e"},"ttl":1}"#,
                "unknown field `ttl`",
            ),
        ] {
            let err = with(ledger);
            assert!(err.contains(want), "{ledger}: {err}");
        }
        // One transaction takes every claim of a request.
        let rule = |clauses: usize| {
            let clause = r#"{"step":"s","by":["spiffe://example.org/a"],"single_use":true}"#;
            let require = vec![clause; clauses].join(",");
            format!(
                r#"{{"ledger":{{"backend":"etcd","etcd":{{"cluster":"e"}}}},"policy":{{"rules":[{{"name":"r","callers":["spiffe://example.org/a"],"methods":["ping"],"require":[{require}]}}]}}}}"#
            )
        };
        let err = Config::from_json(rule(64).as_bytes()).unwrap_err();
        assert!(err.contains("more than 63 single_use clauses"), "{err}");
        let err = Config::from_json(rule(63).as_bytes()).unwrap_err();
        assert!(err.contains("audience and trust_domains"), "{err}");
    }

    fn with_domain(source: &str) -> Result<Config, String> {
        Config::from_json(
            format!(r#"{{"trust_domains":{{"example.org":{source}}},"policy":{{"rules":[]}}}}"#)
                .as_bytes(),
        )
    }

    #[test]
    fn a_bundle_endpoint_has_defaults_and_may_start_from_a_configured_bundle() {
        let c = with_domain(r#"{"bundle_endpoint":{"cluster":"spire"}}"#).unwrap();
        let (domain, e) = c.bundle_endpoints().next().unwrap();
        assert_eq!(domain, "example.org");
        assert_eq!(
            (
                e.path.as_str(),
                e.authority(),
                e.refresh_seconds,
                e.timeout_ms,
                e.max_age_seconds
            ),
            ("/", "spire", 300, 1000, 86_400)
        );
        assert!(
            c.trust.authorities("example.org").is_none(),
            "nothing until fetched"
        );
        let pem = serde_json::to_string(&custody_testkit::ca_pem("example")).unwrap();
        let c = with_domain(&format!(
            r#"{{"bundle_pem":{pem},"bundle_endpoint":{{"cluster":"spire","path":"/bundle","authority":"spire.example.org","refresh_seconds":1,"timeout_ms":200,"max_age_seconds":2}}}}"#
        ))
        .unwrap();
        assert!(c.trust.authorities("example.org").is_some());
        let spiffe = custody_testkit::ca_spiffe_bundle("example");
        let c = with_domain(&format!(
            r#"{{"spiffe_bundle":{spiffe},"bundle_endpoint":{{"cluster":"spire"}}}}"#
        ))
        .unwrap();
        assert_eq!(c.trust.sequence("example.org"), Some(1));
        assert_eq!(
            with_domain(&format!(r#"{{"spiffe_bundle":{spiffe}}}"#))
                .unwrap()
                .bundle_endpoints()
                .count(),
            0
        );
    }

    #[test]
    fn refuses_a_trust_source_it_cannot_use() {
        let pem = serde_json::to_string(&custody_testkit::ca_pem("example")).unwrap();
        let spiffe = custody_testkit::ca_spiffe_bundle("example");
        let mut many: serde_json::Value = serde_json::from_str(&spiffe).unwrap();
        let keys = many["keys"].as_array_mut().unwrap();
        keys.extend(vec![
            serde_json::json!({"use": "jwt-svid", "kty": "EC"});
            64
        ]);
        for (source, want) in [
            ("{}".to_owned(), "give one of bundle_pem, spiffe_bundle and bundle_endpoint"),
            (
                format!(r#"{{"bundle_pem":{pem},"spiffe_bundle":{spiffe}}}"#),
                "exactly one of bundle_pem and spiffe_bundle",
            ),
            (
                format!(
                    r#"{{"bundle_pem":{pem},"spiffe_bundle":{spiffe},"bundle_endpoint":{{"cluster":"c"}}}}"#
                ),
                "exactly one of bundle_pem and spiffe_bundle",
            ),
            (r#"{"bundle_endpoint":{}}"#.into(), "missing field `cluster`"),
            (
                r#"{"bundle_endpoint":{"cluster":"c","refresh":5}}"#.into(),
                "unknown field `refresh`",
            ),
            (
                r#"{"bundle_endpoint":{"cluster":"c","path":"bundle"}}"#.into(),
                "trust_domains.example.org.bundle_endpoint.path",
            ),
            (
                r#"{"bundle_endpoint":{"cluster":"c","refresh_seconds":0}}"#.into(),
                "trust_domains.example.org.bundle_endpoint.refresh_seconds",
            ),
            (
                r#"{"bundle_endpoint":{"cluster":"c","refresh_seconds":600,"max_age_seconds":900}}"#
                    .into(),
                "max_age_seconds must be between 2 × refresh_seconds (1200)",
            ),
            (
                r#"{"bundle_endpoint":{"cluster":"c","timeout_ms":"1000"}}"#.into(),
                "invalid type",
            ),
            // The bundle to start from is held to the rules of a fetched one.
            (
                format!(r#"{{"spiffe_bundle":{many},"bundle_endpoint":{{"cluster":"c"}}}}"#),
                "65 keys, more than 64",
            ),
        ] {
            let err = with_domain(&source).unwrap_err();
            assert!(err.contains(want), "{source:.80}: {err}");
        }
    }

    #[test]
    fn names_are_the_configuration_words() {
        for (json, mode, identity, headers) in [
            (
                r#"{"policy":{"rules":[]}}"#,
                "enforce",
                "peer_certificate",
                "auto",
            ),
            (
                r#"{"mode":"audit","identity":"istio_peer_principal","headers":"hold","policy":{"rules":[]}}"#,
                "audit",
                "istio_peer_principal",
                "hold",
            ),
            (
                r#"{"headers":"stream","policy":{"rules":[]}}"#,
                "enforce",
                "peer_certificate",
                "stream",
            ),
        ] {
            let c = Config::from_json(json.as_bytes()).unwrap();
            assert_eq!(
                (c.mode.name(), c.identity.name(), c.headers.name()),
                (mode, identity, headers)
            );
        }
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for (input, want) in [
            (&b""[..], "EOF"),
            (b"not json", "expected"),
            (br#"{}"#, "missing field `policy`"),
            (br#"{"policy":{"rules":[]},"mdoe":"audit"}"#, "unknown field `mdoe`"),
            (br#"{"policy":{"rules":[]},"mode":"permissive"}"#, "unknown variant"),
            (br#"{"policy":{"rules":[]},"identity":"header"}"#, "unknown variant"),
            (br#"{"policy":{"rules":[]},"limits":{"max_body_bytes":10}}"#, "max_body_bytes"),
            (br#"{"policy":{"rules":[]},"limits":{"max_json_depth":0}}"#, "max_json_depth"),
            (br#"{"policy":{"rules":[]},"limits":{"max_body":10}}"#, "unknown field"),
            (br#"{"policy":{"rules":[]},"lists":"hide"}"#, "unknown variant"),
            (br#"{"policy":{"rules":[]},"limits":{"max_list_bytes":1023}}"#, "max_list_bytes"),
            (br#"{"policy":{"rules":[]},"paths":["mcp"]}"#, "paths"),
            (br#"{"policy":{"rules":[]},"debug":{"log_inputs":true}}"#, "unknown field `log_inputs`"),
            (br#"{"policy":{"rules":[]},"log":{"decision":"all"}}"#, "unknown field `decision`"),
            (br#"{"policy":{"rules":[]},"log":{"decisions":"allowed"}}"#, "unknown variant `allowed`"),
            (br#"{"policy":{"rules":[]},"log":{"decisions":true}}"#, "expected value"),
            (br#"{"policy":{"rules":[]},"debug":{"log_input":"yes"}}"#, "invalid type"),
            (br#"{"policy":{"rules":[{"name":"x","callers":["spiffe://A/x"],"methods":["ping"]}]}}"#, "trust domain"),
        ] {
            let err = Config::from_json(input).unwrap_err();
            assert!(err.contains(want), "{}: {err}", String::from_utf8_lossy(input));
        }
    }
}
