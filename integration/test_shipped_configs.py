"""Every Envoy config and plugin configuration the project ships is checked
by the real parsers: `envoy --mode validate` (which also runs the filter's
on_configure) and `custody config check`, the pre-ship gate (the filter's own
config parser, and what its guarantees rest on in Envoy)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from custody_testkit.envoy import REPO, WASM, plugin_config_of, plugin_configs_of, validate

BOOTSTRAPS = sorted(
    p
    for p in (REPO / "envoy").rglob("*.yaml")
    if any(isinstance(d, dict) and "static_resources" in d for d in yaml.safe_load_all(p.read_text()))
)


def test_there_are_bootstraps_to_check():
    assert REPO / "envoy" / "local" / "envoy.yaml" in BOOTSTRAPS
    assert REPO / "envoy" / "etcd" / "envoy.yaml" in BOOTSTRAPS


def test_the_etcd_bootstrap_carries_the_shipped_cluster_and_uses_it():
    """envoy/etcd/envoy.yaml is envoy/local/envoy.yaml plus envoy/etcd/cluster.yaml
    and the etcd ledger; keep the three in step."""
    cluster = yaml.safe_load((REPO / "envoy" / "etcd" / "cluster.yaml").read_text())
    local = yaml.safe_load((REPO / "envoy" / "local" / "envoy.yaml").read_text())
    etcd = yaml.safe_load((REPO / "envoy" / "etcd" / "envoy.yaml").read_text())
    assert etcd["static_resources"]["clusters"] == local["static_resources"]["clusters"] + [cluster]
    config = json.loads(plugin_config_of(etcd)["configuration"]["value"])
    assert config.pop("ledger") == {
        "backend": "etcd",
        "etcd": {"cluster": cluster["name"], "prefix": "custody/", "timeout_ms": 250},
    }
    assert config == json.loads(plugin_config_of(local)["configuration"]["value"])
    etcd_wasm, local_wasm = plugin_config_of(etcd), plugin_config_of(local)
    etcd_wasm.pop("configuration"), local_wasm.pop("configuration")
    assert etcd_wasm == local_wasm
    assert etcd["static_resources"]["listeners"] == local["static_resources"]["listeners"]


def test_the_etcd_cluster_speaks_http2_over_mutual_tls():
    cluster = yaml.safe_load((REPO / "envoy" / "etcd" / "cluster.yaml").read_text())
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options["explicit_http_config"]
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["@type"].endswith("UpstreamTlsContext")
    common = tls["common_tls_context"]
    assert common["alpn_protocols"] == ["h2"]
    assert common["tls_certificates"], "Custody presents a client certificate to etcd"
    validation = common["validation_context"]
    assert validation["trusted_ca"] and validation["match_typed_subject_alt_names"]
    assert cluster["health_checks"][0]["http_health_check"]["codec_client_type"] == "HTTP2"


@pytest.fixture
def envoy_cwd(tmp_path, pki) -> Path:
    """A working directory laid out as the shipped configs expect (certs/, dist/)."""
    (tmp_path / "certs" / "server").mkdir(parents=True)
    shutil.copy(pki["bundle"], tmp_path / "certs" / "bundle.pem")
    shutil.copy(pki["server"].cert, tmp_path / "certs" / "server" / "svid.pem")
    shutil.copy(pki["server"].key, tmp_path / "certs" / "server" / "svid.key")
    (tmp_path / "dist").mkdir()
    shutil.copy(WASM, tmp_path / "dist" / "custody.wasm")
    # envoy/etcd/envoy.yaml: etcd's CA and Custody's client certificate for etcd.
    (tmp_path / "certs" / "etcd").mkdir()
    shutil.copy(pki["bundle"], tmp_path / "certs" / "etcd" / "ca.pem")
    shutil.copy(pki["agent"].cert, tmp_path / "certs" / "etcd" / "client.pem")
    shutil.copy(pki["agent"].key, tmp_path / "certs" / "etcd" / "client.key")
    return tmp_path


@pytest.mark.parametrize("bootstrap", BOOTSTRAPS, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_bootstrap_validates_and_the_filter_accepts_its_configuration(bootstrap, envoy_cwd):
    result = validate(bootstrap, envoy_cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout
    assert "configured: plugin=" in result.stdout + result.stderr
    assert "configuration refused" not in result.stdout + result.stderr


SHIPPED = sorted((REPO / "envoy").rglob("*.yaml"))
CUSTODY = REPO / "dist" / "custody"


def holds_a_filter(text: str) -> bool:
    """Files that carry Custody's wasm filter or a WasmPlugin; the others
    (PeerAuthentication, the etcd cluster and its Istio/Gateway manifests)
    hold none."""
    return "filters.http.wasm.v3.Wasm" in text or "kind: WasmPlugin" in text


def config_check(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(CUSTODY), "config", "check", *args], capture_output=True, text=True, input=stdin)


@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_file_passes_the_pre_ship_gate(shipped):
    """`custody config check --strict` on the file as shipped: every Custody filter
    it holds is accepted by the filter's parser, and no guarantee check warns."""
    result = config_check("--strict", "--format", "json", str(shipped))
    report = json.loads(result.stdout) if result.stdout else None
    if not holds_a_filter(shipped.read_text()):
        # Holds no filter: the gate says so rather than passing silently.
        assert result.returncode == 1 and "no Custody filter found" in result.stderr
        return
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["ok"] is True and report["findings"] == []
    assert report["filters"] and all(f["ok"] for f in report["filters"])


@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_a_misspelt_key_in_a_shipped_file_is_refused(shipped):
    """Issue 14's first finding: `"mdoe"` passes `envoy --mode validate`; the gate refuses it."""
    text = shipped.read_text()
    if not holds_a_filter(text):
        pytest.skip("holds no plugin configuration")
    broken = text.replace('"mode": "enforce"', '"mdoe": "enforce"').replace("mode: enforce", "mdoe: enforce")
    assert broken != text
    result = config_check("-", stdin=broken)
    assert result.returncode == 1, result.stdout
    assert "refused: unknown field `mdoe`" in result.stderr


@pytest.mark.parametrize("bootstrap", BOOTSTRAPS, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_wasm_filters_hold_headers_and_never_fail_open(bootstrap):
    for wasm in plugin_configs_of(yaml.safe_load(bootstrap.read_text())):
        assert wasm["allow_on_headers_stop_iteration"] is True
        assert wasm["failure_policy"] in ("FAIL_CLOSED", "FAIL_RELOAD")


def test_validate_catches_a_broken_bootstrap(envoy_cwd, tmp_path):
    broken = yaml.safe_load((REPO / "envoy" / "local" / "envoy.yaml").read_text())
    plugin_config_of(broken)["vm_config"]["runtime"] = "envoy.wasm.runtime.nope"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    assert validate(path, envoy_cwd).returncode != 0


def test_the_shipped_policy_matches_the_demo_policy():
    """envoy/local/envoy.yaml inlines policies/demo compiled; keep them in step."""
    wasm = plugin_config_of(yaml.safe_load((REPO / "envoy" / "local" / "envoy.yaml").read_text()))
    inline = json.loads(wasm["configuration"]["value"])["policy"]
    compiled = json.loads(
        subprocess.run(
            [str(CUSTODY), "policy", "compile", str(REPO / "policies" / "demo" / "policy.yaml")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert inline == compiled


LOCAL = REPO / "envoy" / "local" / "envoy.yaml"


def test_the_local_bootstrap_verifies_history_once_its_placeholder_ca_is_replaced(td, tool_server, tmp_path):
    """envoy/local/envoy.yaml's own plugin configuration (audience and
    trust_domains set): as shipped, its placeholder CA (whose key nobody has)
    refuses every caller; with the listener's CA pasted in as the docs say
    (`jq -Rs . certs/bundle.pem`), it verifies signed history."""
    from mcp.shared.exceptions import MCPError

    from custody_testkit.agent import call_tool
    from custody_testkit.cli import History
    from custody_testkit.envoy import Envoy

    shipped = plugin_config_of(yaml.safe_load(LOCAL.read_text()))["configuration"]["value"]
    config = json.loads(shipped)
    audience = config["audience"]
    placeholder = config["trust_domains"]["example.org"]["bundle_pem"]
    assert placeholder.startswith("-----BEGIN CERTIFICATE-----") and placeholder != td.bundle.read_text()
    jq = json.dumps(td.bundle.read_text())  # what `jq -Rs . certs/bundle.pem` prints
    filled = shipped.replace(json.dumps(placeholder), jq)
    assert filled != shipped and json.loads(filled)["trust_domains"]["example.org"]["bundle_pem"] == td.bundle.read_text()

    agent = td.issue("demo-agent", "/ns/demo/sa/agent")
    reviewer = td.issue("reviewer", "/ns/demo/sa/reviewer")
    history = History(tmp_path / "h.json").append(reviewer, "reviewed", agent, claims={"ticket": "t-1"})

    def add(envoy, h=history) -> str:
        try:
            return call_tool(envoy.url, td.bundle, agent, "add", {"a": 20, "b": 22}, history=h, audience=audience)
        except MCPError as err:
            return err.error.data["reason"]

    def start(value: str, name: str) -> Envoy:
        return Envoy(tmp_path / name, bundle=td.bundle, server_cert=td.server.cert, server_key=td.server.key,
                     upstream_port=tool_server.port, plugin_config=value)

    with start(shipped, "as-shipped") as envoy:
        assert add(envoy) == "no_identity"
        denied = envoy.decisions()[-1]
        assert denied["reason"] == "no_identity" and "cert_untrusted" in denied["detail"], denied
    # Allowed requests get decision lines only when asked (`log.decisions`, default "denied").
    with start(json.dumps({**json.loads(filled), "log": {"decisions": "all"}}), "filled-in") as envoy:
        assert add(envoy) == "42"
        call = [d for d in envoy.decisions() if d["method"] == "tools/call"][-1]
        assert (call["decision"], call["rule"], call["history_len"]) == ("allow", "calculator", 1)
        assert call["workflow"]
        # A history signed by a CA the configuration does not list is refused.
        from custody_testkit.cli import DevTrustDomain

        other = DevTrustDomain(tmp_path / "other-ca")
        stranger = other.issue("reviewer", "/ns/demo/sa/reviewer")
        forged = History(tmp_path / "forged.json").append(stranger, "reviewed", agent)
        assert add(envoy, forged) == "cert_untrusted"
