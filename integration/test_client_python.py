"""The Python client library (clients/python, `custody_client`) through real
Envoy running dist/custody.wasm: the official MCP Python SDK's
`streamable_http_client` with `custody_client.client(...)` as its HTTP client,
a two-step history signed by the library, and a tampered one refused."""

from __future__ import annotations

import json
import sys

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from custody_testkit.agent import run_bare
from custody_testkit.envoy import REPO, Envoy

# The library under test, from the tree (no install, no network).
sys.path.insert(0, str(REPO / "clients" / "python" / "src"))

import custody_client  # noqa: E402
from custody_client import History, Svid  # noqa: E402


def svid(workload) -> Svid:
    return Svid.from_files(workload.cert, workload.key)


def approved_history(td) -> History:
    """fraud-agent → approvals → refund-agent, each step signed by the library."""
    h = History().append(svid(td.fraud), step="fraud_check_passed", next=td.approvals.spiffe_id, claims={"order": "o-1"})
    return h.append(svid(td.approvals), step="human_approval", next=td.refund.spiffe_id, claims={"amount": 12000})


def call_refund(envoy: Envoy, td, history: History, amount: int = 12000) -> str:
    caller = svid(td.refund)

    async def run() -> str:
        http = custody_client.client(caller, history=history, audience=td.server.spiffe_id, ca_bundle=td.bundle, timeout=20)
        async with http, Client(streamable_http_client(envoy.url, http_client=http)) as client:
            result = await client.call_tool("refund", {"order_id": "o-1", "amount": amount})
            return result.content[0].text

    return run_bare(run)


def test_the_sdk_client_with_a_library_history_is_allowed(envoy, td):
    h = approved_history(td)
    assert call_refund(envoy, td, h) == "refunded 12000 USD on order o-1"
    allowed = [d for d in envoy.decisions() if d["method"] == "tools/call" and d["decision"] == "allow"]
    assert allowed[-1]["rule"] == "refunds"
    assert allowed[-1]["history_len"] == 2
    assert allowed[-1]["workflow"]


def test_a_tampered_entry_is_refused(envoy, td):
    h = approved_history(td)
    head, payload, sig = h.entries[0].split(".")
    # Entry 0's payload with the claims changed, still canonical base64url: its signature no longer verifies.
    forged = json.loads(custody_client.b64u_decode(payload))
    forged["claims"]["order"] = "o-2"
    forged_payload = custody_client.b64u(custody_client.canonical_json(forged))
    tampered = History((f"{head}.{forged_payload}.{sig}", h.entries[1]), h.certs)
    with pytest.raises(MCPError) as err:
        call_refund(envoy, td, tampered)
    assert err.value.error.data["reason"] == "signature_invalid"
