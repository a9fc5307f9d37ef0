"""The TypeScript client library (clients/typescript, `@custody/client`)
through real Envoy running dist/custody.wasm: the official MCP TypeScript
SDK's `StreamableHTTPClientTransport` with `custodyFetch(...)` as its fetch,
a two-step history signed by the library, and a tampered one refused.

The client side runs in Node (clients/typescript/test/mcp-call.mjs), which
prints one JSON line for these tests to read."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from custody_testkit.envoy import REPO, Envoy

TS = REPO / "clients" / "typescript"
SCRIPT = TS / "test" / "mcp-call.mjs"


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=TS, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def ts_client():
    """node_modules (`npm ci` when missing) and dist/ (`tsc`, always: it is quick)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        pytest.skip("node is not installed")
    if not (TS / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        if npm is None:
            pytest.skip("clients/typescript/node_modules is missing and npm is not installed")
        r = _run(npm, "ci", "--no-audit", "--no-fund")
        if r.returncode != 0:
            pytest.skip(f"clients/typescript/node_modules is missing and `npm ci` failed: {r.stderr.strip()[-500:]}")
    r = _run(node, str(TS / "node_modules" / "typescript" / "bin" / "tsc"), "-p", "tsconfig.json")
    assert r.returncode == 0, f"tsc failed:\n{r.stdout}{r.stderr}"
    return node


def call_refund(ts_client, envoy: Envoy, td, tmp_path, *, tamper: bool = False, amount: int = 12000) -> dict:
    """fraud-agent → approvals → refund-agent, each step signed by the TS library,
    then the refund-agent calls `refund` with the TS MCP SDK."""
    config = {
        "url": envoy.url,
        "audience": td.server.spiffe_id,
        "caBundle": str(td.bundle),
        "caller": {"cert": str(td.refund.cert), "key": str(td.refund.key)},
        "steps": [
            {"cert": str(td.fraud.cert), "key": str(td.fraud.key), "step": "fraud_check_passed",
             "next": td.approvals.spiffe_id, "claims": {"order": "o-1"}},
            {"cert": str(td.approvals.cert), "key": str(td.approvals.key), "step": "human_approval",
             "next": td.refund.spiffe_id, "claims": {"amount": amount}},
        ],
        "tamper": tamper,
        "tool": "refund",
        "arguments": {"order_id": "o-1", "amount": amount},
    }
    path = tmp_path / "call.json"
    path.write_text(json.dumps(config))
    r = subprocess.run(
        [ts_client, str(SCRIPT), str(path)], cwd=TS, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, f"node exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_the_ts_sdk_client_with_a_library_history_is_allowed(ts_client, envoy, td, tmp_path):
    out = call_refund(ts_client, envoy, td, tmp_path)
    assert out["ok"] is True, out
    assert out["text"] == "refunded 12000 USD on order o-1"
    allowed = [d for d in envoy.decisions() if d["method"] == "tools/call" and d["decision"] == "allow"]
    assert allowed[-1]["rule"] == "refunds"
    assert allowed[-1]["history_len"] == 2
    assert allowed[-1]["workflow"]
    assert allowed[-1]["caller"] == td.refund.spiffe_id


def test_a_tampered_entry_is_refused(ts_client, envoy, td, tmp_path):
    out = call_refund(ts_client, envoy, td, tmp_path, tamper=True)
    assert out["ok"] is False, out
    assert (out.get("data") or {}).get("reason") == "signature_invalid", out
    assert out["status"] == 403, out
    denied = [d for d in envoy.decisions() if d["decision"] == "deny"]
    assert denied[-1]["reason"] == "signature_invalid"
