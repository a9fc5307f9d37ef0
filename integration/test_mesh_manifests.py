"""The Istio manifests (envoy/istio/) and the gateway bootstrap (envoy/gateway/)
are checked for the fields Istio and Envoy need, and every plugin configuration
in them is run through the filter's own parser (`custody config check`). Their
trust bundles come from SPIRE's bundle endpoint: the gateway with the cluster
of envoy/bundle-endpoint/envoy.yaml, Istio through the cluster Istio builds
for envoy/istio/spire-bundle.yaml (run here in a real Envoy)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from custody_testkit.envoy import REPO, plugin_config_of, validate

ISTIO = REPO / "envoy" / "istio"
GATEWAY = REPO / "envoy" / "gateway" / "envoy.yaml"
BUNDLE_ENDPOINT = REPO / "envoy" / "bundle-endpoint" / "envoy.yaml"
SPIRE_BUNDLE = ISTIO / "spire-bundle.yaml"
ETCD = REPO / "envoy" / "etcd"
CUSTODY = REPO / "dist" / "custody"
WASM = REPO / "dist" / "custody.wasm"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
SELECTOR = {"custody.dev/mcp-server": "true"}

DOCS = [
    pytest.param(doc, id=f"{path.name}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}")
    for path in sorted(ISTIO.rglob("*.yaml"))
    for doc in yaml.safe_load_all(path.read_text())
    if doc is not None
]


def _of_kind(kind: str) -> list[dict]:
    return [p.values[0] for p in DOCS if p.values[0]["kind"] == kind]


def config_check(tmp_path: Path, config: str) -> subprocess.CompletedProcess:
    """`custody config check`: the exact parser the filter runs in on_configure."""
    if not CUSTODY.exists():
        pytest.skip(f"{CUSTODY} not built: run ./build.sh build to check plugin configurations")
    path = tmp_path / "plugin.json"
    path.write_text(config)
    return subprocess.run([str(CUSTODY), "config", "check", str(path)], capture_output=True, text=True)


def _envoyfilter_wasm(doc: dict) -> list[dict]:
    """The wasm PluginConfigs an EnvoyFilter patches in."""
    found = []
    for patch in doc["spec"]["configPatches"]:
        typed = patch["patch"]["value"].get("typed_config", {})
        if typed.get("@type") == WASM_TYPE:
            found.append(typed["config"])
    return found


def _plugin_configs() -> list:
    """(id, JSON text) of every plugin configuration in envoy/istio/."""
    out = []
    for doc in _of_kind("WasmPlugin"):
        out.append(pytest.param(json.dumps(doc["spec"]["pluginConfig"]), id=f"WasmPlugin/{doc['metadata']['name']}"))
    for doc in _of_kind("EnvoyFilter"):
        for wasm in _envoyfilter_wasm(doc):
            assert wasm["configuration"]["@type"] == STRING_VALUE
            out.append(pytest.param(wasm["configuration"]["value"], id=f"EnvoyFilter/{doc['metadata']['name']}"))
    return out


# --- Istio manifests ---


def test_istio_manifests_exist():
    kinds = {p.values[0]["kind"] for p in DOCS}
    assert {"WasmPlugin", "PeerAuthentication", "EnvoyFilter"} <= kinds


@pytest.mark.parametrize("doc", DOCS)
def test_every_manifest_has_what_kubernetes_requires(doc):
    assert isinstance(doc.get("apiVersion"), str) and "/" in doc["apiVersion"]
    assert doc.get("kind")
    assert doc["metadata"].get("name")
    assert doc["metadata"].get("namespace"), "namespaced Istio resources must name their namespace"
    assert isinstance(doc.get("spec"), dict)


@pytest.mark.parametrize("doc", _of_kind("WasmPlugin"))
def test_wasmplugin(doc):
    assert doc["apiVersion"] == "extensions.istio.io/v1alpha1"
    spec = doc["spec"]
    assert spec["url"].startswith(("oci://", "https://", "http://", "file://"))
    assert spec["phase"] == "AUTHZ"
    assert spec["failStrategy"] == "FAIL_RELOAD"  # Istio 1.27+; never FAIL_OPEN
    assert spec["selector"]["matchLabels"] == SELECTOR
    assert isinstance(spec["pluginConfig"], dict)
    assert spec["pluginConfig"]["identity"] == "istio_peer_principal"
    assert all(m.get("mode") == "SERVER" for m in spec.get("match", [{"mode": "SERVER"}]))


@pytest.mark.parametrize("doc", _of_kind("PeerAuthentication"))
def test_peerauthentication_is_strict_for_the_same_workloads(doc):
    assert doc["apiVersion"] in ("security.istio.io/v1", "security.istio.io/v1beta1")
    assert doc["spec"]["mtls"]["mode"] == "STRICT"
    assert doc["spec"]["selector"]["matchLabels"] == SELECTOR
    assert "portLevelMtls" not in doc["spec"], "no port may be exempted from STRICT"


@pytest.mark.parametrize("doc", _of_kind("EnvoyFilter"))
def test_envoyfilter(doc):
    """An extension configuration (ECDS) whose module is a `remote` data source with
    its SHA-256, and an HTTP filter before the router that waits for it."""
    assert doc["apiVersion"] == "networking.istio.io/v1alpha3"
    assert doc["spec"]["workloadSelector"]["labels"] == SELECTOR
    extension, http_filter = doc["spec"]["configPatches"]
    assert extension["applyTo"] == "EXTENSION_CONFIG"
    assert extension["patch"]["operation"] == "ADD"
    assert http_filter["applyTo"] == "HTTP_FILTER"
    assert http_filter["match"]["context"] == "SIDECAR_INBOUND"
    hcm = http_filter["match"]["listener"]["filterChain"]["filter"]
    assert hcm["name"] == "envoy.filters.network.http_connection_manager"
    assert hcm["subFilter"]["name"] == "envoy.filters.http.router"
    assert http_filter["patch"]["operation"] == "INSERT_BEFORE"
    discovery = http_filter["patch"]["value"]
    assert discovery["name"] == extension["patch"]["value"]["name"]
    assert discovery["config_discovery"]["type_urls"] == [WASM_TYPE]
    # The listener waits for the filter: no request is served without it.
    assert discovery["config_discovery"]["config_source"] == {"ads": {}, "initial_fetch_timeout": "0s"}
    assert "typed_config" not in discovery
    (wasm,) = _envoyfilter_wasm(doc)
    assert wasm["allow_on_headers_stop_iteration"] is True
    assert wasm["failure_policy"] in ("FAIL_RELOAD", "FAIL_CLOSED")
    assert wasm.get("fail_open") in (None, False)
    remote = wasm["vm_config"]["code"]["remote"]
    assert set(wasm["vm_config"]["code"]) == {"remote"}, "no ConfigMap or local file route"
    assert remote["http_uri"]["uri"].startswith(("https://", "oci://"))
    assert remote["sha256"], "the module is checked against its SHA-256"
    assert json.loads(wasm["configuration"]["value"])["identity"] == "istio_peer_principal"


def _remote_filter_bootstrap(doc: dict, module_port: int, sha256: str, listen_port: int, admin_port: int) -> dict:
    """The EnvoyFilter's extension configuration as an inline HTTP filter of a
    plain-HTTP listener, its module fetched by Envoy itself from a local server."""
    (wasm,) = _envoyfilter_wasm(doc)
    wasm = json.loads(json.dumps(wasm))
    wasm["vm_config"]["code"]["remote"]["http_uri"] = {
        "uri": f"http://127.0.0.1:{module_port}/custody.wasm", "cluster": "module_server", "timeout": "10s"}
    wasm["vm_config"]["code"]["remote"]["sha256"] = sha256
    cluster = lambda name, port: {  # noqa: E731
        "name": name, "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "inbound",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "inbound",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                            {"match": {"prefix": "/"}, "route": {"cluster": "module_server"}}]}]},
                        "http_filters": [
                            {"name": "custody", "typed_config": {"@type": WASM_TYPE, "config": wasm}},
                            {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
                        ],
                    },
                }]}],
            }],
            "clusters": [cluster("module_server", module_port)],
        },
    }


@pytest.mark.parametrize("doc", _of_kind("EnvoyFilter"))
def test_the_envoyfilter_module_runs_from_its_url_and_a_wrong_sha256_serves_nothing(doc, tmp_path):
    """Envoy's `remote` data source in a real Envoy: the module served over HTTP
    with its SHA-256 loads and decides (a POST without mTLS is Custody's
    no_identity); with another SHA-256 it is not loaded and every request is
    refused by Envoy (503), never forwarded. (In Istio the pod's agent does the
    download and the check, then hands Envoy a local file.)"""
    import hashlib
    import sys
    import time
    import urllib.error
    import urllib.request

    from custody_testkit.envoy import envoy_binary, free_port, wait_for_port

    if not WASM.exists():
        pytest.skip(f"{WASM} not built")
    module_port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(module_port), "--bind", "127.0.0.1", "--directory", str(WASM.parent)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(module_port)
        good = hashlib.sha256(WASM.read_bytes()).hexdigest()
        for sha256, want in [(good, 403), ("0" * 64, 503)]:
            listen, admin = free_port(), free_port()
            path = tmp_path / f"bootstrap-{want}.yaml"
            path.write_text(yaml.safe_dump(_remote_filter_bootstrap(doc, module_port, sha256, listen, admin)))
            log = tmp_path / f"envoy-{want}.log"
            envoy = subprocess.Popen([envoy_binary(), "-c", str(path), "--disable-hot-restart", "--concurrency", "1",
                                      "--component-log-level", "wasm:info"], stdout=log.open("w"), stderr=subprocess.STDOUT)
            try:
                wait_for_port(listen, timeout=60)
                deadline = time.monotonic() + 30
                while True:  # the module is fetched after the listener opens
                    request = urllib.request.Request(f"http://127.0.0.1:{listen}/mcp", data=b"{}",
                                                     headers={"content-type": "application/json"})
                    try:
                        status, body = 200, urllib.request.urlopen(request, timeout=10).read()
                    except urllib.error.HTTPError as e:
                        status, body = e.code, e.read()
                    if status == want or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                assert status == want, (status, body, log.read_text()[-3000:])
                if want == 403:
                    assert json.loads(body)["error"]["data"]["reason"] == "no_identity"
                    assert "configured: plugin=custody" in log.read_text()
                else:
                    assert b"custody" not in body and b"Directory listing" not in body
                    assert "Plugin configured to fail closed failed to load" in log.read_text()
            finally:
                envoy.terminate()
                envoy.wait(timeout=15)
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize("config", _plugin_configs())
def test_istio_plugin_configuration_passes_custody_config_check(config, tmp_path):
    result = config_check(tmp_path, config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_wasmplugin_and_envoyfilter_carry_the_same_plugin_configuration():
    """The same policy; only the header mode differs (a WasmPlugin cannot hold headers)."""
    configs = [json.loads(p.values[0]) for p in _plugin_configs()]
    assert len(configs) >= 2
    modes = sorted(c.pop("headers") for c in configs)
    assert modes == ["hold", "stream"]
    assert all(c == configs[0] for c in configs)


def test_istio_policies_use_the_mesh_trust_domain():
    for p in _plugin_configs():
        for rule in json.loads(p.values[0])["policy"]["rules"]:
            assert all(c.startswith("spiffe://cluster.local/") for c in rule["callers"]), rule


def test_a_plugin_configuration_with_an_unknown_key_is_refused(tmp_path):
    config = json.loads(_plugin_configs()[0].values[0])
    config["mdoe"] = "audit"
    result = config_check(tmp_path, json.dumps(config))
    assert result.returncode != 0
    assert "mdoe" in result.stderr


def test_a_policy_rule_with_an_unknown_key_is_refused(tmp_path):
    config = json.loads(_plugin_configs()[0].values[0])
    config["policy"]["rules"][0]["tool"] = ["add"]
    result = config_check(tmp_path, json.dumps(config))
    assert result.returncode != 0
    assert "tool" in result.stderr


# --- The gateway bootstrap: several wasm filters, one per route ---


def _gateway_hcm() -> dict:
    boot = yaml.safe_load(GATEWAY.read_text())
    (listener,) = boot["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    return hcm["typed_config"]


def _gateway_wasm_filters() -> list[dict]:
    return [f for f in _gateway_hcm()["http_filters"] if f.get("typed_config", {}).get("@type") == WASM_TYPE]


def test_gateway_each_route_enables_exactly_its_own_filter():
    filters = {f["name"]: f for f in _gateway_wasm_filters()}
    assert len(filters) == 2
    assert all(f["disabled"] is True for f in filters.values()), "every Custody instance is off unless its route enables it"
    routes = [r for vh in _gateway_hcm()["route_config"]["virtual_hosts"] for r in vh["routes"]]
    enabled = {}
    for route in routes:
        per_filter = route.get("typed_per_filter_config", {})
        mine = [name for name in per_filter if name in filters]
        assert len(mine) == 1, f"route {route['match']} must enable exactly one Custody instance"
        assert per_filter[mine[0]]["@type"] == "type.googleapis.com/envoy.config.route.v3.FilterConfig"
        assert per_filter[mine[0]].get("disabled") in (None, False)
        assert "path" in route["match"], "exact path match, so nothing else reaches this upstream"
        enabled[mine[0]] = route["match"]["path"]
    assert set(enabled) == set(filters)
    for name, path in enabled.items():
        config = filters[name]["typed_config"]["config"]
        assert json.loads(config["configuration"]["value"])["paths"] == [path]
        assert config["allow_on_headers_stop_iteration"] is True
        assert config["failure_policy"] in ("FAIL_RELOAD", "FAIL_CLOSED")
    vm_ids = [f["typed_config"]["config"]["vm_config"]["vm_id"] for f in filters.values()]
    assert len(set(vm_ids)) == len(vm_ids), "one VM per instance"


@pytest.mark.parametrize("name", [f["name"] for f in _gateway_wasm_filters()])
def test_gateway_plugin_configurations_pass_custody_config_check(name, tmp_path):
    (f,) = [f for f in _gateway_wasm_filters() if f["name"] == name]
    configuration = f["typed_config"]["config"]["configuration"]
    assert configuration["@type"] == STRING_VALUE
    result = config_check(tmp_path, configuration["value"])
    assert result.returncode == 0, result.stdout + result.stderr


# --- Trust bundles that rotate without a push: SPIRE's bundle endpoint ---


def test_the_gateway_takes_its_bundles_as_the_bundle_endpoint_bootstrap_does():
    """Both gateway filters take example.org's authorities from SPIRE's bundle
    endpoint with the `trust_domains` and the `spire_bundle` cluster of
    envoy/bundle-endpoint/envoy.yaml, the setup test_bundle_endpoint.py
    rotates through a real Envoy; nothing inline to go stale."""
    shipped = yaml.safe_load(BUNDLE_ENDPOINT.read_text())
    gateway = yaml.safe_load(GATEWAY.read_text())
    spire = lambda boot: [c for c in boot["static_resources"]["clusters"] if c["name"] == "spire_bundle"]  # noqa: E731
    assert spire(gateway) == spire(shipped) and len(spire(shipped)) == 1
    want = json.loads(plugin_config_of(shipped)["configuration"]["value"])["trust_domains"]
    assert all(set(source) == {"bundle_endpoint"} for source in want.values())
    filters = _gateway_wasm_filters()
    assert len(filters) == 2
    for f in filters:
        assert json.loads(f["typed_config"]["config"]["configuration"]["value"])["trust_domains"] == want


def _spire_bundle_docs() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(SPIRE_BUNDLE.read_text()) if d is not None}


def test_istio_fetches_the_mesh_bundle_through_the_cluster_of_its_service_entry():
    """Both Istio plugin configurations take the mesh's trust domain from
    SPIRE's bundle endpoint only, through the cluster Istio names
    `outbound|<port>||<host>` for spire-bundle.yaml's ServiceEntry; its
    DestinationRule originates TLS that checks the endpoint's certificate
    against a CA file and pins the SPIRE server's SPIFFE ID."""
    docs = _spire_bundle_docs()
    assert set(docs) == {"ServiceEntry", "DestinationRule"}
    for doc in docs.values():
        assert doc["apiVersion"] == "networking.istio.io/v1"
        assert doc["metadata"]["namespace"] == "tools", "beside the WasmPlugin"
        assert doc["spec"]["exportTo"] == ["."]
    entry, rule = docs["ServiceEntry"], docs["DestinationRule"]
    (host,) = entry["spec"]["hosts"]
    assert rule["spec"]["host"] == host
    assert entry["spec"]["location"] == "MESH_EXTERNAL"
    (port,) = entry["spec"]["ports"]
    assert port["protocol"] == "HTTP", "plain as the mesh sees it: the DestinationRule adds the TLS"
    tls = rule["spec"]["trafficPolicy"]["tls"]
    assert tls["mode"] == "SIMPLE"
    assert tls["caCertificates"] and tls["sni"] == host
    cluster = f"outbound|{port['number']}||{host}"
    configs = [json.loads(p.values[0]) for p in _plugin_configs()]
    assert len(configs) == 2
    for config in configs:
        (td,) = config["trust_domains"]
        source = config["trust_domains"][td]
        assert set(source) == {"bundle_endpoint"}, "no inline bundle to go stale"
        endpoint = source["bundle_endpoint"]
        assert (endpoint["cluster"], endpoint["authority"], endpoint.get("path", "/")) == (cluster, host, "/")
        assert tls["subjectAltNames"] == [f"spiffe://{td}/spire/server"], "the SPIRE server's own SVID only"
    assert cluster in SPIRE_BUNDLE.read_text(), "the comment names the cluster the configuration uses"


def test_the_istio_configuration_takes_its_bundle_through_the_cluster_istio_builds(tmp_path, tool_server):
    """The Istio plugin configuration as shipped, in a real Envoy, with the
    cluster Istio builds from spire-bundle.yaml: its name, and the
    DestinationRule's SNI, CA file and subjectAltNames as Istio's SIMPLE mode
    turns them into Envoy's (the CA, which Istio's agent serves over SDS, as
    a file here; an exact match against any SAN). Aimed at a bundle endpoint
    on loopback that presents the SPIRE server's SVID, it fetches the mesh's
    bundle and puts it in effect. (Without Istio, identity
    istio_peer_principal lets no request through: the bundle is what is
    checked.)"""
    from custody_testkit.bundle_endpoint import BundleEndpoint, spiffe_bundle
    from custody_testkit.cli import DevTrustDomain
    from custody_testkit.envoy import Envoy
    from custody_testkit.etcd import add_cluster

    if not WASM.exists():
        pytest.skip(f"{WASM} not built")
    docs = _spire_bundle_docs()
    (host,) = docs["ServiceEntry"]["spec"]["hosts"]
    (port,) = docs["ServiceEntry"]["spec"]["ports"]
    tls = docs["DestinationRule"]["spec"]["trafficPolicy"]["tls"]
    config = json.loads(_plugin_configs()[0].values[0])
    (td,) = config["trust_domains"]
    wanted = config["trust_domains"][td]["bundle_endpoint"]
    mesh = DevTrustDomain(tmp_path / "mesh", trust_domain=td)
    (spire_id,) = tls["subjectAltNames"]
    spire = mesh.issue("spire-server", spire_id.removeprefix(f"spiffe://{td}"), "--dns", "localhost")
    server = mesh.issue("server", "/ns/tools/sa/mcp-server", "--dns", "localhost")
    with BundleEndpoint(spire.cert, spire.key, path=wanted.get("path", "/")) as endpoint:
        cluster = {
            "name": f"outbound|{port['number']}||{host}",
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": host, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": endpoint.port}}}}]}]},
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": tls["sni"],
                "common_tls_context": {"validation_context": {
                    "trusted_ca": {"filename": str(mesh.bundle)},
                    "match_subject_alt_names": [{"exact": san} for san in tls["subjectAltNames"]],
                }},
            }},
        }
        assert cluster["name"] == wanted["cluster"]
        endpoint.serve(spiffe_bundle(1, mesh.root / "ca"))
        with Envoy(tmp_path / "envoy", bundle=mesh.bundle, server_cert=server.cert, server_key=server.key,
                   upstream_port=tool_server.port, plugin_config=config, mutate=add_cluster(cluster)) as envoy:
            envoy.wait_for_text(f"custody: bundle: {td}: spiffe_sequence 1 in effect (was none)", timeout=20)
            assert envoy.counters().get("wasmcustom.custody_bundle_fetched", 0) >= 1
            assert envoy.counters().get("wasmcustom.custody_bundle_fetch_failed", 0) == 0
            assert "configuration refused" not in envoy.log()


# --- etcd for the shared ledger: Istio and Envoy Gateway ---


def _etcd_docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((ETCD / name).read_text()) if d is not None]


def test_istio_reaches_etcd_with_http2_and_custodys_own_client_certificate():
    docs = {d["kind"]: d for d in _etcd_docs("istio.yaml")}
    assert set(docs) == {"ServiceEntry", "DestinationRule"}
    for doc in docs.values():
        assert doc["apiVersion"] == "networking.istio.io/v1"
        assert doc["metadata"]["namespace"] == "tools", "beside the WasmPlugin"
    entry, rule = docs["ServiceEntry"], docs["DestinationRule"]
    (host,) = entry["spec"]["hosts"]
    assert rule["spec"]["host"] == host
    (port,) = entry["spec"]["ports"]
    assert (port["number"], port["protocol"]) == (2379, "HTTP2")
    tls = rule["spec"]["trafficPolicy"]["tls"]
    assert tls["mode"] == "MUTUAL"
    assert tls["clientCertificate"] and tls["privateKey"] and tls["caCertificates"]
    assert tls["subjectAltNames"] == [host]
    # The comment tells users the cluster name the plugin configuration names.
    assert f"outbound|{port['number']}||{host}" in (ETCD / "istio.yaml").read_text()


def test_envoy_gateway_adds_the_shipped_etcd_cluster():
    (doc,) = _etcd_docs("envoy-gateway.yaml")
    assert doc["apiVersion"] == "gateway.envoyproxy.io/v1alpha1"
    assert doc["kind"] == "EnvoyPatchPolicy"
    assert doc["metadata"]["namespace"]
    assert doc["spec"]["type"] == "JSONPatch"
    (patch,) = doc["spec"]["jsonPatches"]
    assert patch["type"] == "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    assert patch["operation"]["op"] == "add" and patch["operation"]["path"] == ""
    shipped = yaml.safe_load((ETCD / "cluster.yaml").read_text())
    # The same cluster; only the certificate files live elsewhere in the pod.
    added = json.loads(json.dumps(patch["operation"]["value"]).replace("/etc/custody/etcd/", "certs/etcd/"))
    assert added == shipped
    assert patch["name"] == shipped["name"]


def test_envoy_gateway_etcd_cluster_is_one_envoy_accepts(tmp_path, pki):
    """The patched-in cluster, its certificate paths pointed at real files, in a
    minimal bootstrap: `envoy --mode validate`."""
    (doc,) = _etcd_docs("envoy-gateway.yaml")
    cluster = doc["spec"]["jsonPatches"][0]["operation"]["value"]
    text = json.dumps(cluster)
    for name, src in (("ca.pem", pki["bundle"]), ("client.pem", pki["agent"].cert), ("client.key", pki["agent"].key)):
        (tmp_path / name).write_bytes(Path(src).read_bytes())
        text = text.replace(f"/etc/custody/etcd/{name}", str(tmp_path / name))
    path = tmp_path / "bootstrap.yaml"
    path.write_text(yaml.safe_dump({"static_resources": {"clusters": [json.loads(text)]}}))
    result = validate(path, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
