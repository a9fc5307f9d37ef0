//! Where the Custody filters of a file are: a bare plugin configuration, an
//! Envoy bootstrap, LDS or ECDS resources (every `envoy.extensions.filters.
//! http.wasm.v3.Wasm` typed config, also inside an ECDS
//! `TypedExtensionConfig`), an Istio WasmPlugin (its `pluginConfig`) or
//! EnvoyFilter. YAML or JSON, several documents allowed.

use serde_json::Value;

pub const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// The listener a filter sits in: what its guarantees rest on.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Where the filter chain is (`static_resources.listeners[0].filter_chains[0]`).
    pub chain_path: String,
    /// The filter chain's `transport_socket.typed_config`, if any.
    pub tls: Option<Value>,
    pub buffer_limit: Option<u64>,
}

/// The clusters of the bootstrap a filter is in: what the clusters Custody
/// calls (bundle endpoints) are checked against.
#[derive(Debug, Clone)]
pub struct Clusters {
    /// `static_resources.clusters[i]` and its definition.
    pub defined: Vec<(String, Value)>,
    /// Whether CDS may bring others.
    pub dynamic: bool,
}

impl Clusters {
    /// A bootstrap's clusters; `None` for a document that is not one.
    fn of(doc: &Value) -> Option<Clusters> {
        let statics = doc.get("static_resources")?;
        let defined = items(statics, "static_resources", "clusters")
            .map(|(at, c)| (at, c.clone()))
            .collect();
        let dynamic = doc.pointer("/dynamic_resources/cds_config").is_some()
            || doc.pointer("/dynamic_resources/ads_config").is_some();
        Some(Clusters { defined, dynamic })
    }

    /// The cluster named `name`, with its place.
    pub fn named(&self, name: &str) -> Option<&(String, Value)> {
        self.defined
            .iter()
            .find(|(_, c)| c.get("name").and_then(Value::as_str) == Some(name))
    }
}

/// Where a Custody filter's plugin configuration comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Envoy's wasm filter: its `config` (PluginConfig).
    Envoy { plugin: Value, under_istio: bool },
    /// An Istio WasmPlugin's `spec`.
    WasmPlugin { spec: Value },
    /// The whole document is the plugin configuration.
    Bare,
}

/// One Custody filter found.
#[derive(Debug, Clone)]
pub struct Filter {
    /// `static_resources.listeners[0]…http_filters[1]`, `WasmPlugin tools/custody`, or empty.
    pub location: String,
    /// The plugin configuration's text (JSON), or why there is none.
    pub config: Result<String, String>,
    pub source: Source,
    pub listener: Option<Listener>,
    /// The bootstrap's clusters, when the file is a bootstrap.
    pub clusters: Option<Clusters>,
}

/// Every Custody filter of the documents, and the wasm filters that are not Custody's.
pub fn filters(docs: &[Value], bare_text: Option<&str>) -> (Vec<Filter>, Vec<String>) {
    let mut found = Vec::new();
    let mut others = Vec::new();
    let many = docs.len() > 1;
    for (i, doc) in docs.iter().enumerate() {
        let prefix = match doc.get("kind").and_then(Value::as_str) {
            Some(kind) => format!("{kind} {}: ", metadata_name(doc)),
            None if many => format!("documents[{i}]."),
            None => String::new(),
        };
        if doc.get("kind").and_then(Value::as_str) == Some("WasmPlugin") {
            let spec = doc.get("spec").cloned().unwrap_or(Value::Null);
            let config = match spec.get("pluginConfig") {
                Some(c) => Ok(c.to_string()),
                None => Err("the WasmPlugin has no spec.pluginConfig".to_owned()),
            };
            found.push(Filter {
                location: format!("WasmPlugin {}", metadata_name(doc)),
                config,
                source: Source::WasmPlugin { spec },
                listener: None,
                clusters: None,
            });
            continue;
        }
        if doc.get("policy").is_some() && doc.get("kind").is_none() {
            // A bare plugin configuration: the exact bytes when it is one JSON document.
            let text = match bare_text {
                Some(t) if !many => t.to_owned(),
                _ => doc.to_string(),
            };
            found.push(Filter {
                location: prefix.trim_end_matches(['.', ':', ' ']).to_owned(),
                config: Ok(text),
                source: Source::Bare,
                listener: None,
                clusters: None,
            });
            continue;
        }
        let under_istio = doc.pointer("/node/metadata/ISTIO_VERSION").is_some()
            || doc.get("kind").and_then(Value::as_str) == Some("EnvoyFilter");
        let mut walker = Walker {
            found: &mut found,
            others: &mut others,
            under_istio,
            clusters: Clusters::of(doc),
        };
        walker.walk(doc, &prefix, None);
    }
    (found, others)
}

fn metadata_name(doc: &Value) -> String {
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    match doc.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

struct Walker<'a> {
    found: &'a mut Vec<Filter>,
    others: &'a mut Vec<String>,
    under_istio: bool,
    clusters: Option<Clusters>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() || path.ends_with(": ") || path.ends_with('.') {
        format!("{path}{key}")
    } else {
        format!("{path}.{key}")
    }
}

/// The items of the list `key` of `v` (at `path`), each with its own path
/// (`path.key[i]`); none where `key` is missing or not a list.
fn items<'a>(v: &'a Value, path: &str, key: &str) -> impl Iterator<Item = (String, &'a Value)> {
    let list = join(path, key);
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(move |(i, item)| (format!("{list}[{i}]"), item))
}

impl Walker<'_> {
    fn walk(&mut self, v: &Value, path: &str, listener: Option<&Listener>) {
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk(item, &format!("{path}[{i}]"), listener);
                }
            }
            Value::Object(obj) => {
                if obj.get("@type").and_then(Value::as_str) == Some(WASM_TYPE) {
                    self.wasm(v, path, listener);
                    return;
                }
                if obj.contains_key("filter_chains") || obj.contains_key("default_filter_chain") {
                    return self.listener(v, path);
                }
                for (k, child) in obj {
                    self.walk(child, &join(path, k), listener);
                }
            }
            _ => {}
        }
    }

    /// A listener: each filter chain is walked with its TLS context.
    fn listener(&mut self, v: &Value, path: &str) {
        let buffer_limit = v.get("per_connection_buffer_limit_bytes").and_then(as_u64);
        let chains = items(v, path, "filter_chains").chain(
            v.get("default_filter_chain")
                .map(|c| (join(path, "default_filter_chain"), c)),
        );
        for (chain_path, chain) in chains {
            let ctx = Listener {
                chain_path: chain_path.clone(),
                tls: chain.pointer("/transport_socket/typed_config").cloned(),
                buffer_limit,
            };
            self.walk(chain, &chain_path, Some(&ctx));
        }
    }

    /// A wasm filter's typed config: Custody's if its root_id, vm_id, name or
    /// module names custody.
    fn wasm(&mut self, typed: &Value, path: &str, listener: Option<&Listener>) {
        let location = path
            .strip_suffix(".typed_config")
            .unwrap_or(path)
            .to_owned();
        let plugin = typed.get("config").cloned().unwrap_or(Value::Null);
        let names = [
            plugin.get("root_id"),
            plugin.get("name"),
            plugin.pointer("/vm_config/vm_id"),
            plugin.pointer("/vm_config/code/local/filename"),
            plugin.pointer("/vm_config/code/remote/http_uri/uri"),
        ];
        let custody = names
            .iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .any(|s| s.to_ascii_lowercase().contains("custody"));
        if !custody {
            self.others.push(location);
            return;
        }
        let config = match plugin.get("configuration") {
            None => Err(
                "the wasm filter has no configuration (Custody needs its plugin configuration)"
                    .to_owned(),
            ),
            Some(c) if c.get("@type").and_then(Value::as_str) == Some(STRING_VALUE) => c
                .get("value")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| "configuration.value must be a string".to_owned()),
            Some(_) => Err(format!(
                "configuration must be a {STRING_VALUE} holding the JSON"
            )),
        };
        self.found.push(Filter {
            location,
            config,
            source: Source::Envoy {
                plugin,
                under_istio: self.under_istio,
            },
            listener: listener.cloned(),
            clusters: self.clusters.clone(),
        });
    }
}

/// A proto uint64: a number, or a string of digits (proto3 JSON).
pub fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}
