//! `custody policy render`: a compiled policy as what the mesh applies, so
//! policies live in git and CI renders them: an Istio WasmPlugin (with
//! `pluginConfig`), an Envoy HTTP filter entry or ECDS resource, or the plugin
//! JSON. Each carries the bundle's SHA-256 (`custody.dev/policy-sha256`).

use clap::ValueEnum;
use custody_core::policy::Policy;
use serde_json::{json, Map, Value};

/// The annotation (and comment) naming the bundle's SHA-256.
pub const HASH_KEY: &str = "custody.dev/policy-sha256";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// An Istio WasmPlugin manifest (YAML).
    Wasmplugin,
    /// An entry of an HTTP connection manager's `http_filters` (YAML).
    EnvoyFilter,
    /// An ECDS `TypedExtensionConfig` resource (YAML).
    Ecds,
    /// The plugin configuration (JSON).
    PluginJson,
}

/// What to render around the policy.
pub struct Options<'a> {
    pub target: Target,
    /// The plugin configuration the policy goes into (its `policy` replaced).
    pub base: Option<Map<String, Value>>,
    pub name: &'a str,
    pub namespace: &'a str,
    /// The WasmPlugin's `url`.
    pub url: &'a str,
    /// The module file of Envoy outputs.
    pub module: &'a str,
}

/// The rendered text, with the SHA-256 of the bundle exactly as `policy
/// compile` writes it (the hash the filter logs and exports).
pub fn render(policy: &Policy, o: &Options) -> Result<String, String> {
    let hash = custody_core::policy_bundle::sha256_hex(policy);
    let mut config = o.base.clone().unwrap_or_else(|| {
        match o.target {
            // A WasmPlugin cannot hold headers, and Istio names the peer.
            Target::Wasmplugin => {
                json!({"mode": "enforce", "identity": "istio_peer_principal", "headers": "stream"})
            }
            _ => json!({"mode": "enforce"}),
        }
        .as_object()
        .cloned()
        .unwrap_or_default()
    });
    config.insert(
        "policy".into(),
        serde_json::to_value(policy).map_err(|e| e.to_string())?,
    );
    let config = Value::Object(config);
    let yaml = |v: &Value| serde_norway::to_string(v).map_err(|e| e.to_string());
    let comment = format!("# {HASH_KEY}: {hash}\n# Rendered by `custody policy render`; check with `custody config check`.\n");
    Ok(match o.target {
        Target::PluginJson => {
            let mut text = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
            text.push('\n');
            text
        }
        Target::Wasmplugin => {
            let manifest = json!({
                "apiVersion": "extensions.istio.io/v1alpha1",
                "kind": "WasmPlugin",
                "metadata": {"name": o.name, "namespace": o.namespace,
                             "annotations": {HASH_KEY: hash}},
                "spec": {
                    "selector": {"matchLabels": {"custody.dev/mcp-server": "true"}},
                    "match": [{"mode": "SERVER"}],
                    "url": o.url,
                    "pluginName": "custody",
                    "phase": "AUTHZ",
                    "failStrategy": "FAIL_RELOAD",
                    "pluginConfig": config,
                }
            });
            format!("{comment}{}", yaml(&manifest)?)
        }
        Target::EnvoyFilter | Target::Ecds => {
            let wasm = json!({
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": o.name,
                    "root_id": "custody",
                    "allow_on_headers_stop_iteration": true,
                    "failure_policy": "FAIL_RELOAD",
                    "vm_config": {"vm_id": o.name, "runtime": "envoy.wasm.runtime.v8",
                                  "code": {"local": {"filename": o.module}}},
                    "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                      "value": config.to_string()},
                }
            });
            let doc = match o.target {
                Target::Ecds => json!({
                    "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                    "name": o.name, "typed_config": wasm}),
                _ => json!({"name": o.name, "typed_config": wasm}),
            };
            format!("{comment}{}", yaml(&doc)?)
        }
    })
}
