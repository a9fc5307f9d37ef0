//! What Custody's guarantees rest on outside the plugin configuration, as
//! `istioctl analyze` checks a mesh: the wasm filter's own settings and the
//! listener's TLS. Errors where a guarantee fails (a request could pass
//! unchecked or be refused for the wrong reason); warnings where it only
//! degrades (docs/configuration.md "Envoy settings").

use super::find::{Clusters, Filter, Listener, Source};
use crate::finding::Finding;
use custody_core::config::{Config, HeaderMode, IdentitySource};
use serde_json::Value;
use std::collections::BTreeSet;

const SPIFFE_VALIDATOR: &str = "envoy.tls.cert_validator.spiffe";
const UPSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

/// The findings about one filter whose configuration the filter accepts.
pub fn check(file: &str, filter: &Filter, config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut error = |path: &str, m: String| out.push(Finding::error(file, None, path, m));
    match &filter.source {
        Source::Bare => {}
        Source::WasmPlugin { spec } => {
            let at = &filter.location;
            if spec.get("failStrategy").and_then(Value::as_str) == Some("FAIL_OPEN") {
                error(at, "failStrategy: FAIL_OPEN lets every request through when the module fails to load; use FAIL_RELOAD (Istio 1.27+) or FAIL_CLOSE".into());
            }
            if config.headers == HeaderMode::Hold {
                error(at, "headers: hold needs the wasm filter's allow_on_headers_stop_iteration, which a WasmPlugin cannot set: use headers: stream (or auto), or envoy/istio/envoyfilter.yaml".into());
            }
        }
        Source::Envoy {
            plugin,
            under_istio,
        } => {
            let at = &filter.location;
            let policy = plugin.get("failure_policy").and_then(Value::as_str);
            if policy == Some("FAIL_OPEN") || plugin.get("fail_open") == Some(&Value::Bool(true)) {
                error(at, "failure_policy: FAIL_OPEN forwards every request unchecked when the VM fails; use FAIL_RELOAD or FAIL_CLOSED".into());
            }
            let holds = match config.headers {
                HeaderMode::Hold => true,
                HeaderMode::Stream => false,
                HeaderMode::Auto => !under_istio,
            };
            let flag = plugin.get("allow_on_headers_stop_iteration") == Some(&Value::Bool(true));
            if holds && !flag {
                error(at, format!(
                    "headers: {} holds the request headers, which needs allow_on_headers_stop_iteration: true on the wasm filter (without it the upstream sees the headers of refused requests)",
                    match config.headers { HeaderMode::Hold => "hold", _ => "auto (outside Istio)" }
                ));
            }
        }
    }
    if let Some(listener) = &filter.listener {
        out.extend(listener_checks(file, listener, config));
    }
    if let Some(clusters) = &filter.clusters {
        out.extend(bundle_endpoint_checks(
            file,
            &filter.location,
            clusters,
            config,
        ));
    }
    out
}

/// Custody takes a fetched bundle as the trust domain's only because the
/// cluster authenticated the endpoint (docs/configuration.md, "Bundle
/// endpoints"): the cluster must exist, speak TLS and verify the server.
fn bundle_endpoint_checks(
    file: &str,
    at: &str,
    clusters: &Clusters,
    config: &Config,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (domain, endpoint) in config.bundle_endpoints() {
        let name = &endpoint.cluster;
        let Some((path, cluster)) = clusters.named(name) else {
            let why = format!("trust_domains.{domain}.bundle_endpoint.cluster '{name}' is not among the bootstrap's static clusters: the bundle is never fetched, and the trust domain's SVIDs are refused once a configured bundle is max_age_seconds old (or at once without one)");
            out.push(if clusters.dynamic {
                Finding::warning(file, None, at, format!("{why}, unless CDS brings it"))
            } else {
                Finding::error(file, None, at, why)
            });
            continue;
        };
        let tls = cluster
            .pointer("/transport_socket/typed_config")
            .filter(|t| t.get("@type").and_then(Value::as_str) == Some(UPSTREAM_TLS));
        let Some(tls) = tls else {
            out.push(Finding::error(file, None, path, format!("cluster '{name}' (the bundle endpoint of {domain}) has no TLS transport socket: whoever answers in its place chooses the trust domain's authorities (SPIFFE Trust Domain and Bundle §5.2, §6.1)")));
            continue;
        };
        let (validation, from_sds) = validation_of(tls);
        let validation = validation.as_ref();
        let trusts = validation.is_some_and(|v| {
            v.get("trusted_ca").is_some()
                || v.get("custom_validator_config").is_some()
                || v.get("ca_certificate_provider_instance").is_some()
        });
        if !trusts && !from_sds {
            out.push(Finding::error(file, None, path, format!("cluster '{name}' (the bundle endpoint of {domain}) does not verify the server's certificate (no validation_context with trusted_ca): any server can answer for the endpoint")));
            continue;
        }
        let pinned = validation.is_some_and(|v| {
            v.get("match_typed_subject_alt_names").is_some()
                || v.get("match_subject_alt_names").is_some()
        });
        if !pinned && !from_sds {
            out.push(Finding::warning(file, None, path, format!("cluster '{name}' (the bundle endpoint of {domain}) accepts any certificate its CA issued: pin the endpoint's DNS name (https_web) or SPIFFE ID (https_spiffe) with match_typed_subject_alt_names")));
        }
    }
    out
}

/// A TLS context's certificate validation settings (plain or combined), and
/// whether they come from SDS (then not in this file to check).
fn validation_of(tls: &Value) -> (Option<Value>, bool) {
    let Some(common) = tls.get("common_tls_context") else {
        return (None, false);
    };
    let validation = common
        .get("validation_context")
        .or_else(|| common.pointer("/combined_validation_context/default_validation_context"))
        .cloned();
    let from_sds = common.get("validation_context_sds_secret_config").is_some()
        || common
            .pointer("/combined_validation_context/validation_context_sds_secret_config")
            .is_some();
    (validation, from_sds)
}

fn listener_checks(file: &str, l: &Listener, config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let at = l.chain_path.as_str();
    if config.identity == IdentitySource::PeerCertificate {
        let Some(tls) = &l.tls else {
            out.push(Finding::error(file, None, at, "the filter chain has no TLS transport socket: identity peer_certificate refuses every request (no_identity)".into()));
            return out;
        };
        if tls.get("require_client_certificate") != Some(&Value::Bool(true)) {
            out.push(Finding::error(file, None, at, "require_client_certificate is not true: callers without a client certificate are refused (no_identity) instead of failing the handshake, and Envoy does not ask for one".into()));
        }
        let (validation, from_sds) = validation_of(tls);
        if validation.is_none() && !from_sds {
            out.push(Finding::error(file, None, at, "no validation_context: client certificates are not validated, so the caller's SPIFFE ID is not proven".into()));
        }
        if config.trust_domains.len() > 1 && !from_sds {
            let validator = validation
                .as_ref()
                .and_then(|v| v.pointer("/custom_validator_config/name"))
                .and_then(Value::as_str);
            if validator != Some(SPIFFE_VALIDATOR) {
                out.push(Finding::error(file, None, at, format!(
                    "trust_domains names {} trust domains (federation), but the validation_context does not use Envoy's SPIFFE validator ({SPIFFE_VALIDATOR}): with one trusted_ca list, any trusted CA can issue SVIDs of another trust domain",
                    config.trust_domains.len()
                )));
            }
        }
        let resumes = tls.get("disable_stateless_session_resumption") != Some(&Value::Bool(true))
            && tls.get("disable_stateful_session_resumption") != Some(&Value::Bool(true));
        if resumes && !covers_callers(config) {
            out.push(Finding::error(file, None, at, "TLS session resumption is enabled (set disable_stateless_session_resumption and disable_stateful_session_resumption), and trust_domains does not cover every caller of the policy: a resumed session is not re-validated by Envoy and is refused (no_identity); clients that resume (undici, the TypeScript MCP SDK) see sporadic refusals".into()));
        }
    }
    // Envoy's default per-connection buffer limit is 1 MiB.
    let limit = l.buffer_limit.unwrap_or(1 << 20);
    if limit <= config.limits.max_body_bytes as u64 {
        out.push(Finding::warning(file, None, at.rsplit_once(".filter_chains").map_or(at, |(l, _)| l), format!(
            "per_connection_buffer_limit_bytes ({limit}{}) is not above limits.max_body_bytes ({}): an oversized body gets Envoy's plain 413, not Custody's JSON-RPC body_too_large",
            if l.buffer_limit.is_none() { ", Envoy's default" } else { "" },
            config.limits.max_body_bytes
        )));
    }
    out
}

/// Whether the configuration's `trust_domains` hold every trust domain the
/// policy's callers can come from, so Custody can check a resumed session's
/// chain itself.
fn covers_callers(config: &Config) -> bool {
    let domains: BTreeSet<String> = config
        .policy
        .rules
        .iter()
        .flat_map(|r| r.callers.iter())
        .map(|c| {
            let s = String::from(c.clone());
            s.trim_start_matches("spiffe://")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    !config.trust_domains.is_empty() && domains.iter().all(|d| config.trust_domains.contains_key(d))
}
