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

BOOTSTRAPS = sorted(p for p in (REPO / "envoy").rglob("*.yaml") if "static_resources" in p.read_text())


def test_there_are_bootstraps_to_check():
    assert REPO / "envoy" / "local" / "envoy.yaml" in BOOTSTRAPS


@pytest.fixture
def envoy_cwd(tmp_path, pki) -> Path:
    """A working directory laid out as the shipped configs expect (certs/, dist/)."""
    (tmp_path / "certs" / "server").mkdir(parents=True)
    shutil.copy(pki["bundle"], tmp_path / "certs" / "bundle.pem")
    shutil.copy(pki["server"].cert, tmp_path / "certs" / "server" / "svid.pem")
    shutil.copy(pki["server"].key, tmp_path / "certs" / "server" / "svid.key")
    (tmp_path / "dist").mkdir()
    shutil.copy(WASM, tmp_path / "dist" / "custody.wasm")
    return tmp_path


@pytest.mark.parametrize("bootstrap", BOOTSTRAPS, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_bootstrap_validates_and_the_filter_accepts_its_configuration(bootstrap, envoy_cwd):
    result = validate(bootstrap, envoy_cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout
    assert "configured: version=" in result.stdout + result.stderr
    assert "configuration refused" not in result.stdout + result.stderr


SHIPPED = sorted((REPO / "envoy").rglob("*.yaml"))
CUSTODY = REPO / "dist" / "custody"


def config_check(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(CUSTODY), "config", "check", *args], capture_output=True, text=True, input=stdin)


@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_file_passes_the_pre_ship_gate(shipped):
    """`custody config check --strict` on the file as shipped: every Custody filter
    it holds is accepted by the filter's parser, and no guarantee check warns."""
    result = config_check("--strict", "--format", "json", str(shipped))
    report = json.loads(result.stdout) if result.stdout else None
    if "PeerAuthentication" in shipped.read_text():
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
    if "PeerAuthentication" in text:
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
