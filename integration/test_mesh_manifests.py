"""The Istio manifests (envoy/istio/) and the gateway bootstrap (envoy/gateway/)
are checked for the fields Istio and Envoy need, and every plugin configuration
in them is run through the filter's own parser (`custody config check`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from custody_testkit.envoy import REPO, validate

ISTIO = REPO / "envoy" / "istio"
GATEWAY = REPO / "envoy" / "gateway" / "envoy.yaml"
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
    assert spec["failStrategy"] == "FAIL_CLOSE"
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
    assert doc["apiVersion"] == "networking.istio.io/v1alpha3"
    assert doc["spec"]["workloadSelector"]["labels"] == SELECTOR
    patches = doc["spec"]["configPatches"]
    assert patches
    for patch in patches:
        assert patch["applyTo"] == "HTTP_FILTER"
        assert patch["match"]["context"] == "SIDECAR_INBOUND"
        hcm = patch["match"]["listener"]["filterChain"]["filter"]
        assert hcm["name"] == "envoy.filters.network.http_connection_manager"
        assert hcm["subFilter"]["name"] == "envoy.filters.http.router"
        assert patch["patch"]["operation"] == "INSERT_BEFORE"
    wasms = _envoyfilter_wasm(doc)
    assert len(wasms) == 1
    wasm = wasms[0]
    assert wasm["allow_on_headers_stop_iteration"] is True
    assert wasm["failure_policy"] in ("FAIL_RELOAD", "FAIL_CLOSED")
    assert wasm.get("fail_open") in (None, False)
    assert wasm["vm_config"]["code"]["local"]["filename"].startswith("/")
    assert json.loads(wasm["configuration"]["value"])["identity"] == "istio_peer_principal"


@pytest.mark.parametrize("doc", _of_kind("EnvoyFilter"))
def test_envoyfilter_patch_is_a_filter_envoy_accepts(doc, tmp_path):
    """The patched-in HttpFilter, in a minimal bootstrap, passes `envoy --mode
    validate` (which also runs the plugin's on_configure)."""
    if not WASM.exists():
        pytest.skip(f"{WASM} not built")
    for patch in doc["spec"]["configPatches"]:
        http_filter = json.loads(json.dumps(patch["patch"]["value"]))
        http_filter["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = str(WASM)
        bootstrap = {
            "static_resources": {
                "listeners": [
                    {
                        "name": "inbound",
                        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 15006}},
                        "filter_chains": [
                            {
                                "filters": [
                                    {
                                        "name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": {
                                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                            "stat_prefix": "inbound",
                                            "route_config": {"virtual_hosts": []},
                                            "http_filters": [
                                                http_filter,
                                                {
                                                    "name": "envoy.filters.http.router",
                                                    "typed_config": {
                                                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                                    },
                                                },
                                            ],
                                        },
                                    }
                                ]
                            }
                        ],
                    }
                ]
            }
        }
        path = tmp_path / "bootstrap.yaml"
        path.write_text(yaml.safe_dump(bootstrap))
        result = validate(path, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "configured: version=" in result.stdout + result.stderr
        assert "configuration refused" not in result.stdout + result.stderr


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
