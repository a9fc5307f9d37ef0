"""A configuration the filter refuses, through real Envoy (docs/configuration.md,
"A configuration that does not load"): `on_configure` returns false, so Envoy
refuses it in its first VM, before any worker runs it.

- at boot (static listener): Envoy exits 1 and says why; nothing listens;
- `envoy --mode validate`: exit 1;
- an LDS or ECDS update: rejected (`update_rejected`), the previous
  configuration keeps deciding, and a good update after it still applies;
- ECDS whose very first configuration is refused: the listener answers 500
  (no filter configuration, `NFCF`) until a good one arrives, never forwards.
"""

from __future__ import annotations

import json
import socket
import time
import uuid

import httpx2
import pytest

from conftest import AGENT, tls_context
from custody_testkit.envoy import Envoy, validate

MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
INIT = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}

# Each is refused by the filter's parser: the same bytes, the same verdict on every VM.
REFUSED = {
    "not-json": ("{not json", "key must be a string"),
    "no-policy": (json.dumps({"mode": "enforce"}), "missing field `policy`"),
    "misspelt-key": (json.dumps({"mdoe": "enforce", "policy": {"rules": []}}), "unknown field `mdoe`"),
    "bad-caller-pattern": (
        json.dumps({"policy": {"rules": [{"name": "x", "callers": ["*"], "methods": ["ping"]}]}}),
        "is not a SPIFFE ID pattern",
    ),
    "require-without-trust": (
        json.dumps({"policy": {"rules": [{"name": "x", "callers": [AGENT], "methods": ["ping"],
                                          "require": [{"step": "s", "by": [AGENT]}]}]}}),
        "audience and trust_domains must be configured",
    ),
}


def policy(rule_name: str) -> dict:
    return {"paths": ["/mcp"], "policy": {"rules": [{"name": rule_name, "callers": [AGENT], "methods": ["initialize"]}]}}


def initialize(envoy, pki, marker: str = "") -> httpx2.Response:
    body = dict(INIT, params=dict(INIT["params"], clientInfo={"name": marker or "t", "version": "1"}))
    with httpx2.Client(verify=tls_context(pki["bundle"], pki["agent"]), timeout=15) as http:
        return http.post(envoy.url, content=json.dumps(body), headers=MCP_HEADERS)


@pytest.fixture
def deciding_rule(tool_server):
    def rule(envoy, pki) -> str:
        """Sends one allowed request; the rule its decision log line names."""
        marker = f"m-{uuid.uuid4().hex}"
        resp = initialize(envoy, pki, marker)
        assert resp.status_code == 200, resp.text
        (seen,) = [r for r in tool_server.seen() if marker in r["body"]]
        return envoy.wait_for_decision(seen["headers"]["x-custody-decision-id"])["rule"]

    return rule


def wait_for_stat(envoy, name: str, at_least: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while (value := envoy.stat(name)) < at_least:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} is {value}, wanted at least {at_least}:\n{envoy.log()[-3000:]}")
        time.sleep(0.1)
    return value


@pytest.fixture
def wait_for_rule(deciding_rule):
    def wait(envoy, pki, rule: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = deciding_rule(envoy, pki)
            except AssertionError as e:  # not configured yet (ECDS: 500)
                got = str(e)
            if got == rule:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"still {got!r}, wanted rule {rule!r}")
            time.sleep(0.2)

    return wait


@pytest.fixture
def make_envoy(pki, tool_server, tmp_path):
    def make(plugin_config, name="envoy", **kwargs) -> Envoy:
        return Envoy(
            tmp_path / name, bundle=pki["bundle"], server_cert=pki["server"].cert, server_key=pki["server"].key,
            upstream_port=tool_server.port, plugin_config=plugin_config, **kwargs,
        )

    return make


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_envoy_does_not_start_with_a_configuration_the_filter_refuses(make_envoy, case):
    config, why = REFUSED[case]
    envoy = make_envoy(config)
    with pytest.raises(RuntimeError, match="envoy exited with 1"):
        with envoy:
            pass
    log = envoy.log()
    assert "configuration refused" in log and why in log, log[-3000:]
    assert "Unable to create Wasm plugin custody" in log, log[-3000:]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", envoy.port), timeout=1).close()


@pytest.mark.parametrize("case", ["misspelt-key", "require-without-trust"])
def test_validate_fails_on_a_configuration_the_filter_refuses(make_envoy, case):
    config, why = REFUSED[case]
    envoy = make_envoy(config)
    result = validate(envoy.config_path, envoy.workdir)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-3000:]
    assert "configuration refused" in out and why in out, out[-3000:]
    # The same bootstrap with a good configuration validates.
    good = make_envoy(policy("ok"), name="good")
    result = validate(good.config_path, good.workdir)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "configured: plugin=" in result.stdout + result.stderr


@pytest.mark.parametrize("via", ["lds", "ecds"])
def test_a_refused_update_is_rejected_and_the_previous_policy_keeps_deciding(
    make_envoy, pki, deciding_rule, wait_for_rule, via
):
    rejected = "listener_manager.lds.update_rejected" if via == "lds" else \
        "extension_config_discovery.http_filter.custody.update_rejected"
    with make_envoy(policy("blue"), dynamic=via == "lds", ecds=via == "ecds") as envoy:
        assert deciding_rule(envoy, pki) == "blue"
        before = envoy.stat(rejected)
        for n, case in enumerate(["misspelt-key", "bad-caller-pattern"], start=1):
            envoy.update(REFUSED[case][0])
            wait_for_stat(envoy, rejected, before + n)
            assert "configuration refused" in envoy.log()
            # The previous configuration is still the one deciding, on every worker.
            for _ in range(6):
                assert deciding_rule(envoy, pki) == "blue"
        # A good update after the refused ones applies (the vm_id is not poisoned).
        envoy.update(policy("green"))
        wait_for_rule(envoy, pki, "green")
        for _ in range(6):
            assert deciding_rule(envoy, pki) == "green"
        assert envoy.stat(rejected) == before + 2
        assert "config_invalid" not in json.dumps(envoy.decisions())


def test_an_ecds_filter_whose_first_configuration_is_refused_answers_500_until_a_good_one(
    make_envoy, pki, tool_server, wait_for_rule
):
    """Envoy starts (the listener exists), but has no filter configuration:
    every request gets a 500 from Envoy itself (`NFCF`), none is forwarded."""
    config, _ = REFUSED["misspelt-key"]
    with make_envoy(config, ecds=True) as envoy:
        wait_for_stat(envoy, "extension_config_discovery.http_filter.custody.update_rejected", 1)
        seen = len(tool_server.seen())
        for _ in range(4):
            resp = initialize(envoy, pki)
            assert resp.status_code == 500, resp.text
            assert "x-custody-decision-id" not in resp.headers
        assert len(tool_server.seen()) == seen, "nothing reached the upstream"
        assert envoy.decisions() == []
        envoy.update(policy("first-good"))
        wait_for_rule(envoy, pki, "first-good", timeout=30)
