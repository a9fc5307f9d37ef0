"""`./build.sh demo`: the refund story, end to end on loopback.

Envoy runs the Custody filter with the payments policy in front of a real MCP
tool server offering `refund`. Workloads get X.509-SVIDs from `custody ca`,
sign workflow history with `custody history`, and call the tool through the
official MCP Python client and the Custody client library (clients/python),
which signs every request over mTLS. Nine attempts, one table; exits
non-zero if any outcome differs from the expected one. The last two use
`wire_refund`, whose approvals are bound to the exact call (`binds: call`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from contextlib import ExitStack

from mcp.shared.exceptions import MCPError

from custody_testkit.agent import call_tool, proving_anyway
from custody_testkit.cli import DevTrustDomain, History, custody
from custody_testkit.envoy import REPO, Envoy, envoy_description, free_port, wait_for_port

WORK = REPO / ".work" / "demo"
POLICY = REPO / "policies" / "payments" / "policy.yaml"
NS = "/ns/payments/sa/"


def step(message: str) -> None:
    print(f"  {message}", flush=True)


def tamper_claims(history: History, index: int, **changes) -> None:
    """Rewrites entry `index`'s claims without re-signing it."""
    import base64

    headers = history.headers()
    entries = headers["workflow-history"].split("~")
    head, payload, sig = entries[index].split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded["claims"].update(changes)
    payload = base64.urlsafe_b64encode(json.dumps(decoded, separators=(",", ":")).encode()).decode().rstrip("=")
    entries[index] = ".".join([head, payload, sig])
    headers["workflow-history"] = "~".join(entries)
    history.path.write_text(json.dumps(headers))


def o1(amount: int) -> dict:
    """refund's arguments for order o-1."""
    return {"order_id": "o-1", "amount": amount}


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    print("Setting up (everything on 127.0.0.1, files under .work/demo):")
    # Backdated so that the stale approval of attempt 6 was signed while the SVIDs were valid.
    td = DevTrustDomain(WORK / "pki", backdate="2h")
    server = td.issue("refund-tool", "/ns/payments/sa/refund-tool", "--dns", "localhost")
    fraud = td.issue("fraud-agent", NS + "fraud-agent")
    approvals = td.issue("approvals", NS + "approvals")
    refund = td.issue("refund-agent", NS + "refund-agent")
    reporting = td.issue("reporting-agent", NS + "reporting-agent")
    step("trust domain example.org: CA and five X.509-SVIDs from `custody ca`")
    bundle = json.loads(custody("policy", "compile", POLICY))
    step(f"policy {POLICY.relative_to(REPO)} compiled by `custody policy compile` ({len(bundle['rules'])} rules, Rego modules: {', '.join(bundle.get('modules', {})) or 'none'})")

    with ExitStack() as stack:
        port = free_port()
        log = (WORK / "tool-server.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "custody_testkit.tool_server", "--port", str(port), "--record", str(WORK / "seen.jsonl")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        stack.callback(proc.wait, 10)
        stack.callback(proc.terminate)
        wait_for_port(port)
        step(f"MCP tool server (official Python SDK, tools `refund` and `wire_refund`) on 127.0.0.1:{port}")
        envoy = stack.enter_context(
            Envoy(
                WORK / "envoy",
                bundle=td.bundle,
                server_cert=server.cert,
                server_key=server.key,
                upstream_port=port,
                plugin_config={
                    "mode": "enforce",
                    "paths": ["/mcp"],
                    "audience": server.spiffe_id,
                    "trust_domains": {"example.org": {"bundle_pem": td.bundle.read_text()}},
                    "policy": bundle,
                },
            )
        )
        step(f"{envoy_description()} with dist/custody.wasm on {envoy.url} (mTLS), admin 127.0.0.1:{envoy.admin_port}")
        print()

        def history(name: str) -> History:
            return History(WORK / "histories" / f"{name}.json")

        (WORK / "histories").mkdir()
        fraud_only = history("fraud-only").append(fraud, "fraud_check_passed", refund, claims={"order": "o-1"})
        approved = history("approved").append(fraud, "fraud_check_passed", approvals, claims={"order": "o-1"})
        approved.append(approvals, "human_approval", refund, claims={"amount": 12000})
        stale = history("stale").append(fraud, "fraud_check_passed", approvals, age="40m")
        stale.append(approvals, "human_approval", refund, claims={"amount": 12000}, age="31m")
        tampered = history("tampered").append(fraud, "fraud_check_passed", approvals)
        tampered.append(approvals, "human_approval", refund, claims={"amount": 12000})
        tamper_claims(tampered, 1, amount=90000)
        # `custody history append --bind-call`: this approval names one call, wire_refund(o-1, 12000).
        wire_o1 = {"order_id": "o-1", "amount": 12000}
        bound = history("bound").append(fraud, "fraud_check_passed", approvals)
        bound.append(approvals, "human_approval", refund, claims={"amount": 12000},
                     bind_call={"name": "wire_refund", "arguments": wire_o1})

        attempts = [
            # (what, caller, history, tool, arguments, expected decision, expected reason)
            ("refund with no history", refund, None, "refund", o1(12000), "deny", "missing_step"),
            ("fraud check only", refund, fraud_only, "refund", o1(12000), "deny", "missing_step"),
            ("fraud check + approval of 12000", refund, approved, "refund", o1(12000), "allow", None),
            ("amount above the approved 12000", refund, approved, "refund", o1(15000), "deny", "rego_denied"),
            ("approval presented by another agent", reporting, approved, "refund", o1(12000), "deny", "proof_holder",
             proving_anyway(approved, reporting)),
            ("approval signed 31 minutes ago", refund, stale, "refund", o1(12000), "deny", "stale_step"),
            ("approval amount edited after signing", refund, tampered, "refund", o1(90000), "deny", "signature_invalid"),
            ("wire refund approved for o-1 (bound), o-1", refund, bound, "wire_refund", wire_o1, "allow", None),
            ("same approval, order o-2, same amount", refund, bound, "wire_refund", {**wire_o1, "order_id": "o-2"},
             "deny", "step_call_mismatch"),
        ]
        rows, failures = [], 0
        for i, (what, caller, hist, tool, arguments, want, want_reason, *prover) in enumerate(attempts, 1):
            before = len(envoy.decisions())
            try:
                outcome = call_tool(
                    envoy.url, td.bundle, caller, tool, arguments,
                    history=hist, audience=server.spiffe_id, prover=prover[0] if prover else None,
                )
                decision, reason = "allow", None
            except MCPError as err:
                decision, reason = "deny", err.error.data["reason"]
                outcome = err.error.message
            # The decision on the tool call, or on the request the client stopped at.
            mine = envoy.decisions()[before:]
            calls = [d for d in mine if d["method"] == "tools/call"] or [d for d in mine if d["decision"] == "deny"]
            latency = f"{calls[-1]['latency_us']} µs" if calls else "-"
            ok = (decision, reason) == (want, want_reason)
            failures += not ok
            rows.append((str(i), what, caller.spiffe_id.rsplit("/", 1)[-1], decision, reason or "-", latency, outcome,
                         "ok" if ok else f"EXPECTED {want} {want_reason or ''}"))

        header = ("#", "attempt", "caller", "decision", "reason", "filter", "the agent saw", "")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for r in [header, *rows]:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        counters = {k.split(".", 1)[-1]: v for k, v in envoy.counters().items() if v}
        print("\ncounters:", ", ".join(f"{k}={v}" for k, v in sorted(counters.items())))
        print(f"decision log: {envoy.log_path.relative_to(REPO)} (lines with {{\"custody\":\"decision\"}})")
    if failures:
        print(f"\n{failures} outcome(s) differ from the expected ones")
        return 1
    print(f"\nAll {len(rows)} outcomes as expected. Envoy and the MCP server are stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
