//! The plugin configuration: one JSON document, passed to Envoy as a
//! `google.protobuf.StringValue` (what Istio's `pluginConfig` becomes).
//! Parsed once per VM; anything unknown or invalid is an error, and the
//! filter then refuses every request.

use crate::policy::Policy;
use serde::Deserialize;

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
    #[serde(default)]
    pub limits: Limits,
    /// The compiled policy bundle (`custody policy compile` output).
    pub policy: Policy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
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
    /// Deepest JSON nesting accepted (1 to 128; default 64).
    pub max_json_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_json_depth: 64,
        }
    }
}

impl Config {
    /// Parses and checks a plugin configuration. The error names the field
    /// and position, for the log line that says why traffic is refused.
    pub fn from_json(bytes: &[u8]) -> Result<Config, String> {
        let config: Config = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if !(1024..=64 << 20).contains(&self.limits.max_body_bytes) {
            return Err("limits.max_body_bytes must be between 1024 and 67108864".into());
        }
        if !(1..=128).contains(&self.limits.max_json_depth) {
            return Err("limits.max_json_depth must be between 1 and 128".into());
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
        assert_eq!(c.limits.max_body_bytes, 1 << 20);
        assert_eq!(c.limits.max_json_depth, 64);
        assert!(c.paths.is_empty());
    }

    #[test]
    fn reads_every_key() {
        let c = Config::from_json(
            br#"{"mode":"audit","identity":"istio_peer_principal","paths":["/mcp"],
                 "limits":{"max_body_bytes":4096,"max_json_depth":8},"policy":{"version":1,"default":"deny","rules":[]}}"#,
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Audit);
        assert_eq!(c.identity, IdentitySource::IstioPeerPrincipal);
        assert_eq!(c.paths, vec!["/mcp".to_owned()]);
        assert_eq!(
            (c.limits.max_body_bytes, c.limits.max_json_depth),
            (4096, 8)
        );
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
            (br#"{"policy":{"rules":[]},"paths":["mcp"]}"#, "paths"),
            (br#"{"policy":{"rules":[{"name":"x","callers":["spiffe://A/x"],"methods":["ping"]}]}}"#, "trust domain"),
        ] {
            let err = Config::from_json(input).unwrap_err();
            assert!(err.contains(want), "{}: {err}", String::from_utf8_lossy(input));
        }
    }
}
