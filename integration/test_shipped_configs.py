"""Every Envoy config and plugin configuration the project ships is checked
by the real parsers: `envoy --mode validate` (which also runs the filter's
on_configure) and `custody config check` (the filter's own config parser)."""

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
    assert "custody: configured" in result.stdout + result.stderr
    assert "configuration refused" not in result.stdout + result.stderr


@pytest.mark.parametrize("bootstrap", BOOTSTRAPS, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_plugin_configuration_passes_custody_config_check(bootstrap, tmp_path):
    configs = plugin_configs_of(yaml.safe_load(bootstrap.read_text()))
    assert configs, "no wasm filter in bootstrap"
    for i, wasm in enumerate(configs):
        assert wasm["allow_on_headers_stop_iteration"] is True
        assert wasm["failure_policy"] in ("FAIL_CLOSED", "FAIL_RELOAD")
        config = tmp_path / f"plugin-{i}.json"
        config.write_text(wasm["configuration"]["value"])
        result = subprocess.run(
            [str(REPO / "dist" / "custody"), "config", "check", str(config)], capture_output=True, text=True
        )
        assert result.returncode == 0, f"{wasm['name']}: {result.stderr}"


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
            [str(REPO / "dist" / "custody"), "policy", "compile", str(REPO / "policies" / "demo" / "policy.yaml")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert inline == compiled
