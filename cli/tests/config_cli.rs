//! `custody config check`, the pre-ship gate, through the built binary: each
//! file kind, a misspelt key in each, and the listener checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check(args: &[&str], stdin: Option<&str>) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(["config", "check"])
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out: Output = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

const FIXTURES: &str = "cli/tests/fixtures/config";

#[test]
fn a_misspelt_key_is_caught_in_each_file_kind() {
    for (file, location) in [
        ("plugin-mdoe.json", ""),
        (
            "bootstrap-mdoe.yaml",
            ": static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0]",
        ),
        ("wasmplugin-mdoe.yaml", ": WasmPlugin tools/custody"),
    ] {
        let path = format!("{FIXTURES}/{file}");
        let (code, stdout, stderr) = check(&[&path], None);
        assert_eq!(code, Some(1), "{file}: {stdout}{stderr}");
        let want = format!("custody: error: {path}{location}: refused: unknown field `mdoe`");
        assert!(stderr.starts_with(&want), "{file}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn every_shipped_envoy_file_with_a_filter_passes() {
    for file in [
        "envoy/local/envoy.yaml",
        "envoy/gateway/envoy.yaml",
        "envoy/istio/wasmplugin.yaml",
        "envoy/istio/envoyfilter.yaml",
    ] {
        let (code, stdout, stderr) = check(&["--strict", file], None);
        assert_eq!(code, Some(0), "{file}: {stdout}{stderr}");
        assert!(stderr.is_empty(), "{file}: {stderr}");
        assert!(stdout.contains(": ok (mode enforce, identity "), "{stdout}");
    }
    // The gateway has two filters; each is reported with its place.
    let (_, stdout, _) = check(&["envoy/gateway/envoy.yaml"], None);
    assert!(
        stdout.contains("http_filters[0]: ok") && stdout.contains("http_filters[1]: ok"),
        "{stdout}"
    );
}

#[test]
fn ecds_resources_and_standard_input() {
    let ecds = std::fs::read_to_string(root().join(FIXTURES).join("ecds.json")).unwrap();
    let (code, stdout, stderr) = check(&["-"], Some(&ecds));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "-: resources[0]: ok (mode audit, identity peer_certificate, headers hold, 1 rules)\n"
    );
    let (code, stdout, _) = check(&["--format", "json", "-"], Some(&ecds));
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["filters"][0]["mode"], "audit");
    assert_eq!(v["filters"][0]["identity"], "peer_certificate");
}

#[test]
fn a_listener_that_undoes_the_guarantees_is_refused() {
    let path = format!("{FIXTURES}/lds-weak.yaml");
    let (code, _, stderr) = check(&[&path], None);
    assert_eq!(code, Some(1), "{stderr}");
    let chain = format!("{path}: resources[0].filter_chains[0]: ");
    let filter =
        format!("{path}: resources[0].filter_chains[0].filters[0].typed_config.http_filters[0]: ");
    for want in [
        format!("custody: error: {filter}failure_policy: FAIL_OPEN"),
        format!("custody: error: {filter}headers: hold holds the request headers, which needs allow_on_headers_stop_iteration"),
        format!("custody: error: {chain}require_client_certificate is not true"),
        format!("custody: error: {chain}no validation_context"),
        format!("custody: error: {chain}TLS session resumption is enabled"),
        format!("custody: warning: {path}: resources[0]: per_connection_buffer_limit_bytes (1048576, Envoy's default)"),
    ] {
        assert!(stderr.lines().any(|l| l.starts_with(&want)), "{want}\n{stderr}");
    }
    let (_, stdout, _) = check(&["--format", "json", &path], None);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["findings"].as_array().unwrap().len(), 6);
}

/// A listener in front of two federated trust domains, with the plugin
/// configuration given (trust_domains from two development CAs).
fn federated(validator: bool, resumption: bool, callers: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut trust = serde_json::Map::new();
    for td in ["example.org", "partner.org"] {
        let out = Command::new(env!("CARGO_BIN_EXE_custody"))
            .args(["ca", "init", "--trust-domain", td, "--out"])
            .arg(dir.path().join(td))
            .output()
            .unwrap();
        assert!(out.status.success());
        let pem = std::fs::read_to_string(dir.path().join(td).join("bundle.pem")).unwrap();
        trust.insert(td.into(), serde_json::json!({"bundle_pem": pem}));
    }
    let config = serde_json::json!({
        "audience": "spiffe://example.org/tool", "trust_domains": trust,
        "policy": {"rules": [{"name": "r", "callers": [callers], "methods": ["ping"]}]}
    });
    let validation = if validator {
        serde_json::json!({"custom_validator_config": {"name": "envoy.tls.cert_validator.spiffe",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig"}}})
    } else {
        serde_json::json!({"trusted_ca": {"filename": "bundle.pem"}})
    };
    let listener = serde_json::json!({"static_resources": {"listeners": [{
        "name": "mcp", "per_connection_buffer_limit_bytes": 2_097_152,
        "filter_chains": [{
            "transport_socket": {"name": "tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": true,
                "disable_stateless_session_resumption": !resumption,
                "disable_stateful_session_resumption": !resumption,
                "common_tls_context": {"validation_context": validation}}},
            "filters": [{"name": "hcm", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "http_filters": [{"name": "custody", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "config": {"root_id": "custody", "allow_on_headers_stop_iteration": true,
                        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                          "value": config.to_string()}}}}]}}]}]}]}});
    listener.to_string()
}

#[test]
fn federation_needs_the_spiffe_validator() {
    let (code, stdout, stderr) = check(
        &["-"],
        Some(&federated(false, false, "spiffe://example.org/**")),
    );
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stderr.contains("trust_domains names 2 trust domains (federation)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("envoy.tls.cert_validator.spiffe"),
        "{stderr}"
    );
    let (code, stdout, stderr) = check(
        &["-"],
        Some(&federated(true, false, "spiffe://example.org/**")),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("verifies history"), "{stdout}");
}

#[test]
fn session_resumption_is_allowed_when_trust_domains_cover_the_callers() {
    let (code, _, stderr) = check(
        &["-"],
        Some(&federated(true, true, "spiffe://partner.org/**")),
    );
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = check(
        &["-"],
        Some(&federated(true, true, "spiffe://other.org/**")),
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("TLS session resumption is enabled"),
        "{stderr}"
    );
}

#[test]
fn strict_warnings_missing_files_and_files_without_a_filter() {
    // The only finding of this listener is a warning: exit 0, or 1 with --strict.
    let weak = std::fs::read_to_string(root().join("envoy/local/envoy.yaml"))
        .unwrap()
        .replace(
            "per_connection_buffer_limit_bytes: 2097152",
            "per_connection_buffer_limit_bytes: 65536",
        );
    let (code, _, stderr) = check(&["-"], Some(&weak));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.starts_with("custody: warning: -: static_resources.listeners[0]: per_connection_buffer_limit_bytes (65536)"), "{stderr}");
    let (code, _, _) = check(&["--strict", "-"], Some(&weak));
    assert_eq!(code, Some(1));
    let (code, _, stderr) = check(&["no/such/file.yaml"], None);
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("custody: error: no/such/file.yaml: "),
        "{stderr}"
    );
    let (code, _, stderr) = check(&["envoy/istio/peerauthentication.yaml"], None);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no Custody filter found"), "{stderr}");
    let (code, _, stderr) = check(&["-"], Some("a: [1\n"));
    assert_eq!(code, Some(2), "{stderr}");
}

/// `policy render` turns a policy into what the mesh applies, and every
/// rendered kind passes the gate; the annotation is the bundle's SHA-256.
#[test]
fn rendered_policies_pass_the_gate() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_custody"))
            .args(args)
            .current_dir(root())
            .output()
            .unwrap()
    };
    let bundle = run(&["policy", "compile", "policies/demo/policy.yaml"]);
    assert!(bundle.status.success());
    let dir = tempfile::tempdir().unwrap();
    for kind in ["wasmplugin", "envoy-filter", "ecds", "plugin-json"] {
        let out = dir.path().join(kind);
        let r = run(&[
            "policy",
            "render",
            "policies/demo/policy.yaml",
            "--as",
            kind,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(
            r.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let (code, stdout, stderr) = check(&["--strict", out.to_str().unwrap()], None);
        assert_eq!(code, Some(0), "{kind}: {stdout}{stderr}");
        let text = std::fs::read_to_string(&out).unwrap();
        let policy = if kind == "plugin-json" {
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["policy"].clone()
        } else {
            serde_json::Value::Null
        };
        if kind == "plugin-json" {
            let compiled: serde_json::Value = serde_json::from_slice(&bundle.stdout).unwrap();
            assert_eq!(policy, compiled);
        } else {
            let hash = text
                .lines()
                .next()
                .unwrap()
                .strip_prefix("# custody.dev/policy-sha256: ")
                .unwrap();
            let want = Command::new("sha256sum")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .map(|mut c| {
                    c.stdin.take().unwrap().write_all(&bundle.stdout).unwrap();
                    String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
                });
            if let Ok(sum) = want {
                assert_eq!(hash, sum.split_whitespace().next().unwrap(), "{kind}");
            }
            assert_eq!(hash.len(), 64);
        }
    }
    let wasmplugin = std::fs::read_to_string(dir.path().join("wasmplugin")).unwrap();
    assert!(
        wasmplugin.contains("    custody.dev/policy-sha256: "),
        "{wasmplugin}"
    );
    assert!(wasmplugin.contains("failStrategy: FAIL_RELOAD"));
}

#[test]
fn a_bundle_endpoint_cluster_must_exist_speak_tls_and_verify_the_endpoint() {
    let text = std::fs::read_to_string(root().join("envoy/bundle-endpoint/envoy.yaml")).unwrap();
    let shipped: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let with = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut doc = shipped.clone();
        change(&mut doc);
        check(&["-"], Some(&doc.to_string()))
    };
    let cluster = "/static_resources/clusters/1";
    let (code, stdout, stderr) = with(&|_| {});
    assert_eq!((code, stderr.as_str()), (Some(0), ""), "{stdout}");
    for (change, want) in [
        (
            Box::new(|d: &mut serde_json::Value| {
                d.pointer_mut(cluster).unwrap()["name"] = "elsewhere".into();
            }) as Box<dyn Fn(&mut serde_json::Value)>,
            "custody: error: -: static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0]: trust_domains.example.org.bundle_endpoint.cluster 'spire_bundle' is not among the bootstrap's static clusters",
        ),
        (
            Box::new(|d: &mut serde_json::Value| {
                d.pointer_mut(cluster).unwrap().as_object_mut().unwrap().remove("transport_socket");
            }),
            "custody: error: -: static_resources.clusters[1]: cluster 'spire_bundle' (the bundle endpoint of example.org) has no TLS transport socket",
        ),
        (
            Box::new(|d: &mut serde_json::Value| {
                let common = d
                    .pointer_mut(&format!("{cluster}/transport_socket/typed_config/common_tls_context"))
                    .unwrap();
                common.as_object_mut().unwrap().remove("validation_context");
            }),
            "custody: error: -: static_resources.clusters[1]: cluster 'spire_bundle' (the bundle endpoint of example.org) does not verify the server's certificate",
        ),
    ] {
        let (code, stdout, stderr) = with(&*change);
        assert_eq!(code, Some(1), "{stdout}{stderr}");
        assert!(stderr.starts_with(want), "{stderr}");
    }
    // Warnings: a cluster CDS may bring, a CA whose every certificate is accepted.
    for (change, want) in [
        (
            Box::new(|d: &mut serde_json::Value| {
                d.pointer_mut(cluster).unwrap()["name"] = "elsewhere".into();
                d["dynamic_resources"] = serde_json::json!({"cds_config": {"ads": {}}});
            }) as Box<dyn Fn(&mut serde_json::Value)>,
            "unless CDS brings it",
        ),
        (
            Box::new(|d: &mut serde_json::Value| {
                let v = d
                    .pointer_mut(&format!(
                        "{cluster}/transport_socket/typed_config/common_tls_context/validation_context"
                    ))
                    .unwrap();
                v.as_object_mut().unwrap().remove("match_typed_subject_alt_names");
            }),
            "custody: warning: -: static_resources.clusters[1]: cluster 'spire_bundle' (the bundle endpoint of example.org) accepts any certificate its CA issued",
        ),
    ] {
        let (code, stdout, stderr) = with(&*change);
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        assert!(stderr.contains(want), "{stderr}");
        let mut doc = shipped.clone();
        change(&mut doc);
        let (strict, _, _) = check(&["--strict", "-"], Some(&doc.to_string()));
        assert_eq!(strict, Some(1));
    }
}
