"""Signed workflow history through real Envoy: histories built with the
`custody` command, carried by the official MCP Python client, verified by the
filter. Every attack is refused with its reason, surfaced to the SDK client."""

from __future__ import annotations

import json
import uuid

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from conftest import tls_context
from custody_testkit.agent import call_tool, proving_anyway
from custody_testkit.cli import History
from custody_testkit.envoy import Envoy


def approved_history(td, path) -> History:
    """fraud-agent → approvals → refund-agent, as the workflow would build it."""
    h = History(path)
    h.append(td.fraud, "fraud_check_passed", td.approvals, claims={"order": "o-1"})
    h.append(td.approvals, "human_approval", td.refund, claims={"amount": 12000})
    return h


def call_refund(envoy, td, caller, history: History | None, headers_for=None, amount=12000):
    """The official MCP client; every POST signed with a fresh proof over its exact body."""
    return call_tool(
        envoy.url, td.bundle, caller, "refund", {"order_id": "o-1", "amount": amount},
        history=history, audience=td.server.spiffe_id, prover=headers_for,
    )


def refused_reason(envoy, td, caller, history, **kw) -> str:
    with pytest.raises(MCPError) as err:
        call_refund(envoy, td, caller, history, **kw)
    return err.value.error.data["reason"]


def tamper_signature(history: History, index: int) -> None:
    """Changes one character of entry `index`'s signature (still canonical base64url)."""
    headers = history.headers()
    entries = headers["workflow-history"].split("~")
    head, payload, sig = entries[index].split(".")
    mid = len(sig) // 2
    sig = sig[:mid] + ("A" if sig[mid] != "A" else "B") + sig[mid + 1 :]
    entries[index] = ".".join([head, payload, sig])
    headers["workflow-history"] = "~".join(entries)
    history.path.write_text(json.dumps(headers))


def test_a_valid_chain_is_allowed_and_the_tool_runs(envoy, td, tmp_path):
    h = approved_history(td, tmp_path / "h.json")
    assert call_refund(envoy, td, td.refund, h) == "refunded 12000 USD on order o-1"
    allowed = [d for d in envoy.decisions() if d["method"] == "tools/call" and d["decision"] == "allow"]
    assert allowed[-1]["rule"] == "refunds"
    assert allowed[-1]["history_len"] == 2
    assert allowed[-1]["workflow"]


def test_a_forged_signature_is_refused(envoy, td, tmp_path):
    h = approved_history(td, tmp_path / "h.json")
    tamper_signature(h, 1)
    assert refused_reason(envoy, td, td.refund, h) == "signature_invalid"


def test_a_truncated_chain_is_refused(envoy, td, tmp_path):
    h = approved_history(td, tmp_path / "h.json")
    headers = h.headers()
    entries = headers["workflow-history"].split("~")
    # Without its root the chain no longer starts at seq 0.
    headers["workflow-history"] = entries[1]
    h.path.write_text(json.dumps(headers))
    assert refused_reason(envoy, td, td.refund, h) == "chain_seq"


def test_a_chain_cut_before_its_holder_cannot_be_presented(envoy, td, tmp_path):
    h = approved_history(td, tmp_path / "h.json")
    headers = h.headers()
    headers["workflow-history"] = headers["workflow-history"].split("~")[0]
    h.path.write_text(json.dumps(headers))
    # The remaining chain was handed to approvals, not to refund-agent.
    assert refused_reason(envoy, td, td.refund, h, headers_for=proving_anyway(h, td.refund)) == "proof_holder"


def test_a_replayed_proof_is_refused(envoy, td, tmp_path, tool_server):
    h = approved_history(td, tmp_path / "h.json")
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "refund", "arguments": {"order_id": "o-1", "amount": 1}}}
    ).encode()
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        **h.prove(td.refund, td.server.spiffe_id, body),
    }
    with httpx2.Client(verify=tls_context(td.bundle, td.refund), timeout=20) as http:
        first = http.post(envoy.url, content=body, headers=headers)
        second = http.post(envoy.url, content=body, headers=headers)
    # The first passes Custody (the server itself then wants a session).
    assert first.status_code != 403, first.text
    assert second.status_code == 403
    assert second.json()["error"]["data"]["reason"] == "proof_replayed"


def test_a_stolen_history_cannot_be_used_by_another_workload(envoy, td, tmp_path):
    h = approved_history(td, tmp_path / "h.json")
    # Mallory proves it with her own key: the chain was handed to refund-agent.
    assert refused_reason(envoy, td, td.mallory, h, headers_for=proving_anyway(h, td.mallory)) == "proof_holder"
    # Mallory replays refund-agent's own proof: the proof's signer is not the mTLS peer.
    assert refused_reason(envoy, td, td.mallory, h, headers_for=lambda _c, aud, body: h.prove(td.refund, aud, body)) == "proof_signer"


def test_a_missing_required_step_is_refused(envoy, td, tmp_path, tool_server):
    h = History(tmp_path / "h.json")
    marker = uuid.uuid4().hex
    h.append(td.fraud, "fraud_check_passed", td.refund, claims={"order": marker})
    assert refused_reason(envoy, td, td.refund, h) == "missing_step"
    assert not any(marker in r["body"] for r in tool_server.seen())
    # The decision log names the closest rule and the step it lacks.
    denied = [d for d in envoy.decisions() if d["reason"] == "missing_step"][-1]
    assert (denied["rule"], denied["detail"]) == ("refunds", "human_approval is not in the verified history")


def test_an_approval_by_the_wrong_workload_is_refused(envoy, td, tmp_path):
    h = History(tmp_path / "h.json")
    h.append(td.fraud, "fraud_check_passed", td.mallory)
    h.append(td.mallory, "human_approval", td.refund)
    assert refused_reason(envoy, td, td.refund, h) == "step_signer"
    denied = [d for d in envoy.decisions() if d["reason"] == "step_signer"][-1]
    assert denied["rule"] == "refunds"
    assert denied["detail"] == f"human_approval is signed only by {td.mallory.spiffe_id}, none of which its `by` accepts"


def test_the_input_document_of_live_decisions_is_logged_only_when_asked(td, policy, tool_server, tmp_path):
    """`debug.log_input`: the decision line carries the Rego input document;
    claims, tool arguments and credentials redacted unless `log_claims`."""
    base = {"audience": td.server.spiffe_id, "trust_domains": {"example.org": {"bundle_pem": td.bundle.read_text()}},
            "policy": policy}
    h = approved_history(td, tmp_path / "h.json")
    for debug, claims_shown in [({"log_input": True}, False), ({"log_input": True, "log_claims": True}, True), (None, None)]:
        config = dict(base, **({"debug": debug} if debug else {}))
        with Envoy(tmp_path / f"envoy-{claims_shown}", bundle=td.bundle, server_cert=td.server.cert,
                   server_key=td.server.key, upstream_port=tool_server.port, plugin_config=config) as envoy:
            assert call_refund(envoy, td, td.refund, h, amount=11) == "refunded 11 USD on order o-1"
            (decision,) = [d for d in envoy.decisions() if d["method"] == "tools/call"]
            if debug is None:
                assert "input" not in decision
                continue
            doc = decision["input"]
            assert doc["calling_agent"] == td.refund.spiffe_id and doc["target"] == td.server.spiffe_id
            assert doc["mcp"]["tool"] == "refund"
            assert [e["step"] for e in doc["history"]] == ["fraud_check_passed", "human_approval"]
            assert "workflow-history" not in doc["request"]["headers"]
            if claims_shown:
                assert doc["history"][1]["claims"] == {"amount": 12000}
                assert doc["mcp"]["arguments"] == {"order_id": "o-1", "amount": 11}
            else:
                assert [e["claims"] for e in doc["history"]] == ["<redacted>", "<redacted>"]
                assert doc["mcp"]["arguments"] == "<redacted>"
                assert "12000" not in json.dumps(decision)


def test_three_steps_built_from_the_shell_are_accepted(envoy, td, tmp_path):
    """The README path: custody history append three times, then prove and send."""
    h = History(tmp_path / "h.json")
    h.append(td.fraud, "order_received", td.fraud)
    h.append(td.fraud, "fraud_check_passed", td.approvals)
    h.append(td.approvals, "human_approval", td.refund, claims={"amount": 500})
    assert call_refund(envoy, td, td.refund, h, amount=500) == "refunded 500 USD on order o-1"
    decision = [d for d in envoy.decisions() if d["decision"] == "allow" and d["method"] == "tools/call"][-1]
    assert decision["history_len"] == 3


def test_history_verification_is_counted(envoy):
    counters = envoy.counters()
    assert counters["wasmcustom.custody_denied_proof_replayed"] >= 1
    assert counters["wasmcustom.custody_denied_signature_invalid"] >= 1
    assert counters["wasmcustom.custody_denied_missing_step"] >= 1
