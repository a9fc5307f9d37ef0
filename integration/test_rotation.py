"""Trust bundle rotation through real Envoy, without a restart: the plugin
configuration is replaced through LDS while requests are in flight. Old-CA
SVIDs are refused once their authority is removed, new-CA SVIDs are accepted
once theirs is added, both work during the overlap, and a SPIFFE bundle with a
lower sequence than one already loaded is refused. `trust_domains` governs
callers too: a caller whose certificate does not chain to a listed authority
of its trust domain has no identity (`no_identity`), even where the
listener's own TLS trust (both CAs here, throughout) accepted it."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from mcp.shared.exceptions import MCPError

from custody_testkit.agent import call_tool, svid, tls_context
from custody_testkit.cli import DevTrustDomain, History, custody
from custody_testkit.envoy import Envoy
from custody_testkit.policies import NS, REFUNDS_NEED_APPROVAL as POLICY

import custody_client


class Side:
    """One CA of example.org with its approver and refund agent."""

    def __init__(self, root, name):
        self.td = DevTrustDomain(root / name)
        self.approvals = self.td.issue("approvals", NS + "approvals")
        self.refund = self.td.issue("refund", NS + "refund-agent")
        self.history = History(root / f"{name}-history.json")
        self.history.append(self.approvals, "human_approval", self.refund, claims={"amount": 10})

    @property
    def pem(self) -> str:
        return self.td.bundle.read_text()


@pytest.fixture(scope="module")
def world(tmp_path_factory, tool_server):
    root = tmp_path_factory.mktemp("rotation")
    old, new = Side(root, "old-ca"), Side(root, "new-ca")
    server = old.td.issue("server", "/ns/payments/sa/refund-tool", "--dns", "localhost")
    both = root / "both.pem"  # Envoy's own TLS trust covers both CAs throughout
    both.write_text(old.pem + new.pem)
    policy_file = root / "policy.yaml"
    policy_file.write_text(POLICY)
    policy = json.loads(custody("policy", "compile", policy_file))

    def config(*pems: str, spiffe_bundle=None) -> dict:
        source = {"spiffe_bundle": spiffe_bundle} if spiffe_bundle else {"bundle_pem": "".join(pems)}
        return {"audience": server.spiffe_id, "trust_domains": {"example.org": source}, "policy": policy}

    envoy = Envoy(
        root / "envoy", bundle=both, server_cert=server.cert, server_key=server.key,
        upstream_port=tool_server.port, plugin_config=config(old.pem), dynamic=True,
    )
    with envoy:
        yield {"envoy": envoy, "old": old, "new": new, "both": both, "server": server, "config": config}


def refund(world, side: Side) -> str:
    """'allow' or the reason code of the refusal."""
    try:
        call_tool(world["envoy"].url, world["both"], side.refund, "refund", {"order_id": "o", "amount": 10},
                  history=side.history, audience=world["server"].spiffe_id)
        return "allow"
    except MCPError as err:
        return err.error.data["reason"]


def eventually(world, side: Side, want: str, timeout: float = 20.0) -> None:
    """Waits until the new listener configuration decides as `want`."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = refund(world, side)
        if got == want:
            return
        time.sleep(0.3)
    raise AssertionError(f"still {got!r}, wanted {want!r} after the configuration update")


def slow_request(world, side: Side, release: threading.Event, result: dict) -> None:
    """An initialize request proved with `side`'s history whose body is held back
    until `release`: it is in flight while the configuration changes."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "slow", "version": "1"}}}).encode()
    headers = custody_client.prove(custody_client.History.parse(side.history.headers()), svid(side.refund),
                                   audience=world["server"].spiffe_id, body=body)
    head = (
        f"POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
        f"accept: application/json, text/event-stream\r\ncontent-length: {len(body)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    ).encode()
    ctx = tls_context(world["both"], side.refund)
    with socket.create_connection(("127.0.0.1", world["envoy"].port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(head + body[: len(body) // 2])
            result["sent_half"] = True
            release.wait(40)
            tls.sendall(body[len(body) // 2 :])
            response = b""
            while b"\r\n\r\n" not in response:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                response += chunk
            result["status"] = int(response.split(b" ", 2)[1]) if response else None


def test_rotation_without_restart(world):
    old, new, envoy = world["old"], world["new"], world["envoy"]
    # 1. Only the old CA is trusted (for callers and history alike).
    assert refund(world, old) == "allow"
    assert refund(world, new) == "no_identity"

    # 2. Overlap: both CAs, pushed while a request is in flight.
    release, result = threading.Event(), {}
    worker = threading.Thread(target=slow_request, args=(world, old, release, result))
    worker.start()
    deadline = time.monotonic() + 10
    while "sent_half" not in result and time.monotonic() < deadline:
        time.sleep(0.05)
    envoy.update(world["config"](old.pem, new.pem))
    eventually(world, new, "allow")
    assert refund(world, old) == "allow"
    release.set()
    worker.join(45)
    assert result.get("status") == 200, f"the in-flight request was not completed: {result}"

    # 3. Only the new CA: old SVIDs are refused from now on.
    envoy.update(world["config"](new.pem))
    eventually(world, old, "no_identity")
    assert refund(world, new) == "allow"
    assert "configuration refused" not in envoy.log()


def test_a_lower_spiffe_bundle_sequence_is_refused(world, tmp_path):
    old, envoy = world["old"], world["envoy"]
    bundle = json.loads((old.td.root / "ca" / "bundle.spiffe.json").read_text())
    bundle["spiffe_sequence"] = 7
    envoy.update(world["config"](spiffe_bundle=bundle))
    eventually(world, old, "allow")
    bundle["spiffe_sequence"] = 6
    envoy.update(world["config"](spiffe_bundle=bundle))
    eventually(world, old, "config_invalid")
    assert "spiffe_sequence 6 is lower than 7" in envoy.log()
