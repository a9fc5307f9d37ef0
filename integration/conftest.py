"""Fixtures: one trust domain, one MCP tool server and the compiled demo
policy per test session; Envoy instances per test module or test."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from custody_testkit.envoy import REPO, Envoy, envoy_description, free_port, wait_for_port
from custody_testkit.pki import TrustDomain

CUSTODY = REPO / "dist" / "custody"
AGENT = "spiffe://example.org/ns/demo/sa/agent"
INTRUDER = "spiffe://example.org/ns/other/sa/intruder"
SERVER = "spiffe://example.org/ns/tools/sa/mcp-server"


def pytest_report_header(config):
    return envoy_description()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    td = TrustDomain(root / "example.org")
    foreign = TrustDomain(root / "foreign", name="example.org")
    return {
        "bundle": td.bundle,
        "server": td.issue("server", SERVER, dns=("localhost",)),
        "agent": td.issue("agent", AGENT),
        "intruder": td.issue("intruder", INTRUDER),
        "two_uris": td.issue("two-uris", AGENT, INTRUDER),
        "foreign_agent": foreign.issue("agent", AGENT),
    }


@pytest.fixture(scope="session")
def tool_server(tmp_path_factory):
    """The example MCP server (official SDK); `seen()` lists what reached it."""
    workdir = tmp_path_factory.mktemp("tool-server")
    record = workdir / "seen.jsonl"
    record.touch()
    port = free_port()
    log = (workdir / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "custody_testkit.tool_server", "--port", str(port), "--record", str(record)],
        cwd=Path(__file__).parent,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port)

        class Server:
            pass

        s = Server()
        s.port = port
        s.seen = lambda: [json.loads(line) for line in record.read_text().splitlines()]
        yield s
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory) -> dict:
    """policies/demo compiled by the real `custody policy compile`."""
    out = tmp_path_factory.mktemp("bundle") / "bundle.json"
    subprocess.run(
        [str(CUSTODY), "policy", "compile", str(REPO / "policies/demo/policy.yaml"), "-o", str(out)], check=True
    )
    return json.loads(out.read_text())


@pytest.fixture
def start_envoy(pki, tool_server, tmp_path):
    """Starts Envoy with a given plugin configuration (dict or raw string)."""

    @contextmanager
    def start(plugin_config, name="envoy", **kwargs):
        with pki_envoy(pki, tmp_path / name, tool_server.port, plugin_config, **kwargs) as envoy:
            yield envoy

    return start


@pytest.fixture(scope="module")
def enforcing_envoy(pki, tool_server, demo_bundle, tmp_path_factory):
    config = {"mode": "enforce", "paths": ["/mcp"], "policy": demo_bundle}
    with pki_envoy(pki, tmp_path_factory.mktemp("enforce"), tool_server.port, config) as envoy:
        yield envoy


def pki_envoy(pki, workdir: Path, upstream_port: int, plugin_config, **kwargs) -> Envoy:
    """Envoy (not started) serving the `pki` fixture's server SVID, trusting its bundle."""
    return Envoy(
        workdir,
        bundle=pki["bundle"],
        server_cert=pki["server"].cert,
        server_key=pki["server"].key,
        upstream_port=upstream_port,
        plugin_config=plugin_config,
        **kwargs,
    )


def tls_context(bundle: Path, svid=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(bundle))
    if svid is not None:
        ctx.load_cert_chain(str(svid.cert), str(svid.key))
    return ctx


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    yield
    os.environ.pop("NO_PROXY", None)


# --- the payments workflow with signed history, shared by the history and client tests ---

PAYMENTS = "/ns/payments/sa/"


@pytest.fixture(scope="module")
def td(tmp_path_factory):
    """A trust domain from `custody ca`: the refund tool (server), the fraud
    agent, the approver, the refund agent, and mallory."""
    from custody_testkit.cli import DevTrustDomain

    d = DevTrustDomain(tmp_path_factory.mktemp("dev-ca"))
    d.server = d.issue("server", "/ns/tools/sa/refund-tool", "--dns", "localhost")
    d.fraud = d.issue("fraud", PAYMENTS + "fraud-agent")
    d.approvals = d.issue("approvals", PAYMENTS + "approvals")
    d.refund = d.issue("refund", PAYMENTS + "refund-agent")
    d.mallory = d.issue("mallory", PAYMENTS + "mallory")
    return d


@pytest.fixture(scope="module")
def policy(td, tmp_path_factory):
    """Refunds need a fraud check and a fresh approval (compiled by `custody policy compile`).
    Mallory may call `refund` too, so that her attempts reach the history checks."""
    from custody_testkit.cli import custody

    yaml = f"""
rules:
- name: lifecycle
  callers: ["spiffe://example.org/**"]
  methods: [server/discover, initialize, ping, "notifications/*", tools/list, jsonrpc:response, "http:GET", "http:DELETE"]
- name: refunds
  callers: ["{td.refund.spiffe_id}", "{td.mallory.spiffe_id}"]
  methods: [tools/call]
  tools: [refund]
  require:
  - step: fraud_check_passed
    by: ["spiffe://example.org{PAYMENTS}fraud-*"]
  - step: human_approval
    by: ["{td.approvals.spiffe_id}"]
    within: 30m
"""
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(yaml)
    return json.loads(custody("policy", "compile", path))


@pytest.fixture(scope="module")
def envoy(td, policy, tool_server, tmp_path_factory):
    """Envoy verifying history for the refund tool."""
    config = {
        "audience": td.server.spiffe_id,
        "trust_domains": {"example.org": {"bundle_pem": td.bundle.read_text()}},
        "paths": ["/mcp"],
        "policy": policy,
    }
    with Envoy(
        tmp_path_factory.mktemp("envoy-history"),
        bundle=td.bundle,
        server_cert=td.server.cert,
        server_key=td.server.key,
        upstream_port=tool_server.port,
        plugin_config=config,
    ) as e:
        yield e
