"""`./build.sh demo`: Envoy with the Custody filter in front of the example
MCP tool server, on loopback, with a fresh trust domain. Plays a few calls
through the official MCP Python client and prints what Custody decided.
Exits non-zero if any outcome differs from the expected one."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
from contextlib import ExitStack

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from custody_testkit.envoy import REPO, Envoy, free_port, wait_for_port
from custody_testkit.pki import TrustDomain

WORK = REPO / ".work" / "demo"
CALLS = [
    # (who, tool, arguments, expected decision, expected reason)
    ("agent", "add", {"a": 2, "b": 3}, "allow", None),
    ("intruder", "add", {"a": 2, "b": 3}, "deny", "no_rule"),
    ("agent", "delete_records", {"table": "orders"}, "deny", "no_rule"),
]
IDS = {
    "agent": "spiffe://example.org/ns/demo/sa/agent",
    "intruder": "spiffe://example.org/ns/other/sa/intruder",
}


async def call(url, ctx, tool, arguments):
    async with httpx2.AsyncClient(verify=ctx, timeout=15) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            result = await client.call_tool(tool, arguments)
            return result.content[0].text


def leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    print(f"trust domain example.org: CA and X.509-SVIDs in {WORK.relative_to(REPO)}/pki")
    td = TrustDomain(WORK / "pki")
    server = td.issue("server", "spiffe://example.org/ns/tools/sa/mcp-server", dns=("localhost",))
    svids = {name: td.issue(name, spiffe_id) for name, spiffe_id in IDS.items()}

    bundle_path = WORK / "bundle.json"
    policy = REPO / "policies" / "demo" / "policy.yaml"
    subprocess.run([str(REPO / "dist" / "custody"), "policy", "compile", str(policy), "-o", str(bundle_path)], check=True)
    print(f"policy: {policy.relative_to(REPO)} compiled by `custody policy compile`")

    with ExitStack() as stack:
        port = free_port()
        log = (WORK / "tool-server.log").open("w")
        server_proc = subprocess.Popen(
            [sys.executable, "-m", "custody_testkit.tool_server", "--port", str(port), "--record", str(WORK / "seen.jsonl")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        stack.callback(server_proc.wait, 10)
        stack.callback(server_proc.terminate)
        wait_for_port(port)
        print(f"MCP tool server (official Python SDK) on 127.0.0.1:{port}")
        envoy = stack.enter_context(
            Envoy(
                WORK / "envoy",
                bundle=td.bundle,
                server_cert=server.cert,
                server_key=server.key,
                upstream_port=port,
                plugin_config={"mode": "enforce", "paths": ["/mcp"], "policy": json.loads(bundle_path.read_text())},
            )
        )
        print(f"Envoy with dist/custody.wasm on {envoy.url} (mTLS), admin on 127.0.0.1:{envoy.admin_port}\n")

        rows, failures = [], 0
        for who, tool, arguments, want, want_reason in CALLS:
            ctx = ssl.create_default_context(cafile=str(td.bundle))
            ctx.load_cert_chain(str(svids[who].cert), str(svids[who].key))
            try:
                outcome = anyio.run(call, envoy.url, ctx, tool, arguments)
                decision, reason, decision_id = "allow", None, None
            except BaseException as group:  # noqa: BLE001 - the SDK raises inside a task group
                err = leaf(group)
                if not isinstance(err, MCPError):
                    raise
                decision, reason = "deny", err.error.data["reason"]
                decision_id, outcome = err.error.data["decision_id"], err.error.message
            logged = [d for d in envoy.decisions() if d["method"] == "tools/call"][-1]
            if decision_id is not None:
                logged = envoy.wait_for_decision(decision_id)
            ok = (decision, reason) == (want, want_reason)
            failures += not ok
            rows.append((IDS[who].rsplit("/", 1)[-1], f"{tool}({json.dumps(arguments)})", decision, reason or "-",
                         f"{logged['latency_us']} µs", outcome, "ok" if ok else f"EXPECTED {want}/{want_reason}"))

        header = ("caller", "call", "decision", "reason", "filter time", "agent saw", "")
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        for r in [header, *rows]:
            print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
        counters = envoy.counters()
        print("\ncounters:", ", ".join(f"{k.split('.')[-1]}={v}" for k, v in sorted(counters.items()) if v))
        print(f"decision log: {envoy.log_path.relative_to(REPO)} (lines starting with {{\"custody\":\"decision\"}})")
    if failures:
        print(f"\n{failures} outcome(s) differ from the expected ones")
        return 1
    print("\nall outcomes as expected; Envoy and the MCP server are stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
