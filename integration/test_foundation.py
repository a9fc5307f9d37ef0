"""The foundation through real Envoy: identity from mTLS, strict MCP parsing,
deny-by-default rules, replies the official MCP client surfaces, audit mode,
and the decision log and counters. A configuration the filter refuses:
test_configure.py."""

from __future__ import annotations

import json
import ssl
import time
import uuid

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from conftest import AGENT, INTRUDER, tls_context
from custody_testkit.agent import run_bare
from custody_testkit.envoy import access_log_lines
from custody_testkit.raw_http import raw_post

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def call_tool_body(name: str, arguments: dict, id_=7) -> dict:
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


def post(envoy, pki, who: str, body, headers=None, method="POST", path="/mcp") -> httpx2.Response:
    """One raw HTTP request over mTLS as `who` (an SVID name from the pki fixture)."""
    content = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
    with httpx2.Client(verify=tls_context(pki["bundle"], pki[who]), timeout=15) as http:
        return http.request(
            method, f"https://localhost:{envoy.port}{path}", content=content, headers=headers or MCP_HEADERS
        )


def refusal(resp: httpx2.Response) -> dict:
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["jsonrpc"] == "2.0"
    assert set(body["error"]["data"]) == {"reason", "decision_id"}
    return body


async def _sdk_call(url, pki, who, tool, arguments):
    async with httpx2.AsyncClient(verify=tls_context(pki["bundle"], pki[who]), timeout=15) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            tools = await client.list_tools()
            result = await client.call_tool(tool, arguments)
            return [t.name for t in tools.tools], result


def sdk_call(envoy, pki, who, tool, arguments):
    """The official MCP Python client: connect, list tools, call one tool.
    An MCPError raised inside the client's task group is re-raised bare."""
    return run_bare(_sdk_call, envoy.url, pki, who, tool, arguments)


def marker() -> str:
    return f"m-{uuid.uuid4().hex}"


def upstream_saw(tool_server, text: str) -> bool:
    return any(text in r["body"] or text in json.dumps(r["headers"]) for r in tool_server.seen())


# --- allowed path -----------------------------------------------------------------


def test_allowed_caller_lists_and_calls_a_tool(enforcing_envoy, pki):
    names, result = sdk_call(enforcing_envoy, pki, "agent", "add", {"a": 2, "b": 3})
    # The server offers add, delete_records, refund, wire_refund: the agent sees what it may call.
    assert names == ["add"]
    assert not result.is_error
    assert result.content[0].text == "5"


def test_upstream_learns_the_verified_caller_and_not_a_forged_one(enforcing_envoy, pki, tool_server):
    m = marker()
    headers = {**MCP_HEADERS, "x-custody-caller": "spiffe://example.org/ns/admin/sa/root", "x-custody-decision": "allow"}
    resp = post(enforcing_envoy, pki, "agent", {**INIT, "params": {**INIT["params"], "clientInfo": {"name": m, "version": "1"}}}, headers)
    assert resp.status_code == 200, resp.text
    (seen,) = [r for r in tool_server.seen() if m in r["body"]]
    assert seen["headers"]["x-custody-caller"] == AGENT
    assert seen["headers"]["x-custody-decision"] == "allow"
    assert len(seen["headers"]["x-custody-decision-id"]) == 32


# --- denied by policy ---------------------------------------------------------------


def test_caller_without_a_rule_is_refused_and_the_sdk_surfaces_the_reason(enforcing_envoy, pki, tool_server):
    with pytest.raises(MCPError) as err:
        sdk_call(enforcing_envoy, pki, "intruder", "add", {"a": 1, "b": 1})
    assert err.value.error.data["reason"] == "no_rule"
    assert err.value.error.code == -32003
    decision = enforcing_envoy.wait_for_decision(err.value.error.data["decision_id"])
    assert decision["caller"] == INTRUDER
    assert decision["decision"] == "deny"
    assert decision["target"] == {"kind": "tool", "name": "add"}


def test_tool_not_named_by_any_rule_is_refused_and_never_reaches_upstream(enforcing_envoy, pki, tool_server):
    m = marker()
    resp = post(enforcing_envoy, pki, "agent", call_tool_body("delete_records", {"table": m}, id_="req-42"))
    assert resp.status_code == 403
    body = refusal(resp)
    assert body["id"] == "req-42"
    assert body["error"]["code"] == -32003
    assert body["error"]["data"]["reason"] == "no_rule"
    assert not upstream_saw(tool_server, m)


# --- identity -----------------------------------------------------------------------


def test_no_client_certificate_is_refused_at_the_handshake(enforcing_envoy, pki):
    with httpx2.Client(verify=tls_context(pki["bundle"]), timeout=10) as http:
        with pytest.raises((httpx2.ConnectError, httpx2.ReadError, httpx2.RemoteProtocolError, ssl.SSLError)):
            http.post(enforcing_envoy.url, content=json.dumps(INIT), headers=MCP_HEADERS)


def test_certificate_from_another_ca_is_refused_at_the_handshake(enforcing_envoy, pki):
    with pytest.raises((httpx2.ConnectError, httpx2.ReadError, httpx2.RemoteProtocolError, ssl.SSLError)):
        post(enforcing_envoy, pki, "foreign_agent", INIT)


def test_certificate_with_two_uri_sans_has_no_identity(enforcing_envoy, pki, tool_server):
    m = marker()
    resp = post(enforcing_envoy, pki, "two_uris", call_tool_body("add", {"a": 1, "b": 2, "m": m}))
    assert resp.status_code == 403
    assert refusal(resp)["error"]["data"]["reason"] == "no_identity"
    assert not upstream_saw(tool_server, m)


# --- transport and parsing ------------------------------------------------------------


@pytest.mark.parametrize(
    "body, status, reason, code",
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call",', 400, "malformed_json", -32700),
        (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', 400, "batch_refused", -32600),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","name":"delete_records","arguments":{}}}',
            400,
            "duplicate_key",
            -32700,
        ),
        (b'{"jsonrpc":"2.0","id":1,"method":"ping","params":' + b"[" * 100 + b"]" * 100 + b"}", 400, "json_too_deep", -32700),
        (b'{"jsonrpc":"1.0","id":1,"method":"ping"}', 400, "invalid_request", -32600),
    ],
    ids=["malformed", "batch", "duplicate-key", "too-deep", "not-json-rpc-2"],
)
def test_bad_bodies_are_refused_with_their_reason(enforcing_envoy, pki, tool_server, body, status, reason, code):
    before = len(tool_server.seen())
    resp = post(enforcing_envoy, pki, "agent", body)
    assert resp.status_code == status, resp.text
    err = refusal(resp)["error"]
    assert (err["data"]["reason"], err["code"]) == (reason, code)
    assert len(tool_server.seen()) == before


def test_wrong_content_type_is_415(enforcing_envoy, pki):
    resp = post(enforcing_envoy, pki, "agent", INIT, headers={"content-type": "text/plain", "accept": "application/json"})
    assert resp.status_code == 415
    assert refusal(resp)["error"]["data"]["reason"] == "unsupported_media_type"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_the_cap_is_413_and_never_forwarded(enforcing_envoy, pki, tool_server, chunked):
    m = marker()
    big = json.dumps(call_tool_body("add", {"a": 1, "b": 2, "pad": m + "x" * (1 << 20)})).encode()
    before = len(tool_server.seen())
    with httpx2.Client(verify=tls_context(pki["bundle"], pki["agent"]), timeout=15) as http:
        content = iter([big[i : i + 65536] for i in range(0, len(big), 65536)]) if chunked else big
        resp = http.post(enforcing_envoy.url, content=content, headers=MCP_HEADERS)
    assert resp.status_code == 413
    assert refusal(resp)["error"]["data"]["reason"] == "body_too_large"
    assert len(tool_server.seen()) == before


def test_other_http_methods_and_paths_are_refused(enforcing_envoy, pki):
    resp = post(enforcing_envoy, pki, "agent", b"", method="PUT")
    assert (resp.status_code, refusal(resp)["error"]["data"]["reason"]) == (405, "method_not_allowed")
    resp = post(enforcing_envoy, pki, "agent", INIT, path="/admin")
    assert (resp.status_code, refusal(resp)["error"]["data"]["reason"]) == (404, "path_not_allowed")


def test_get_and_delete_are_governed_by_rules(start_envoy, pki, demo_bundle):
    only_posts = {
        "version": 1,
        "rules": [{"name": "init", "callers": ["spiffe://example.org/**"], "methods": ["initialize"]}],
    }
    with start_envoy({"policy": only_posts}) as envoy:
        for method in ("GET", "DELETE"):
            resp = post(envoy, pki, "agent", b"", method=method, headers={"accept": "text/event-stream"})
            assert resp.status_code == 403, method
            assert refusal(resp)["error"]["data"]["reason"] == "no_rule"
    with start_envoy({"policy": demo_bundle}, name="allowing") as envoy:
        resp = post(envoy, pki, "agent", b"", method="DELETE", headers={"mcp-session-id": "nope"})
        # Allowed by the filter: the answer comes from the MCP server itself.
        assert "custody" not in resp.text
        assert resp.status_code != 403


# --- modes and configuration ----------------------------------------------------------


def test_audit_mode_forwards_what_enforce_mode_refuses(start_envoy, pki, demo_bundle, tool_server):
    with start_envoy({"mode": "audit", "policy": demo_bundle}) as envoy:
        names, result = sdk_call(envoy, pki, "intruder", "add", {"a": 20, "b": 22})
        assert result.content[0].text == "42"
        denied = [d for d in envoy.decisions() if d["method"] == "tools/call"]
        assert denied and all(d["decision"] == "deny" and d["mode"] == "audit" for d in denied)
        assert denied[-1]["reason"] == "no_rule"
        # The closest rule lists tools/call and `add`, but not this caller.
        assert (denied[-1]["rule"], denied[-1]["detail"]) == ("calculator", "the caller matches none of its callers")
        forwarded = [r for r in tool_server.seen() if '"tools/call"' in r["body"] and '"b": 22' in r["body"].replace('"b":22', '"b": 22')]
        assert forwarded[-1]["headers"]["x-custody-decision"] == (
            'deny; reason=no_rule; mode=audit; rule=calculator; detail="the caller matches none of its callers"'
        )
        assert envoy.counters()["wasmcustom.custody_audit_forwarded"] >= 1


# --- observability --------------------------------------------------------------------


def test_every_decision_is_logged_and_counted(start_envoy, pki, demo_bundle):
    with start_envoy({"policy": demo_bundle}) as envoy:
        sdk_call(envoy, pki, "agent", "add", {"a": 1, "b": 1})
        post(envoy, pki, "agent", call_tool_body("delete_records", {"table": "t"}))
        post(envoy, pki, "agent", b"{oops")
        counters = envoy.counters()
        assert counters["wasmcustom.custody_allowed"] >= 3  # initialize, notifications, tools/list, tools/call
        assert counters["wasmcustom.custody_denied_no_rule"] == 1
        assert counters["wasmcustom.custody_denied_malformed_json"] == 1
        assert counters["wasmcustom.custody_denied_no_identity"] == 0
        decisions = envoy.decisions()
        allowed = [d for d in decisions if d["method"] == "tools/call" and d["decision"] == "allow"]
        assert allowed[0]["rule"] == "calculator"
        assert allowed[0]["caller"] == AGENT
        for d in decisions:
            assert set(d) >= {"decision_id", "caller", "method", "target", "decision", "reason", "workflow", "history_len", "latency_us"}


@pytest.mark.parametrize("lines", [None, "denied", "none"])
def test_decision_lines_follow_log_decisions(start_envoy, pki, demo_bundle, lines):
    """By default (and with "denied") only refusals and audit-forwarded
    denials get a decision line; with "none" nothing does. Every decision is
    still counted and in the access log."""
    config = {"policy": demo_bundle} if lines is None else {"policy": demo_bundle, "log": {"decisions": lines}}
    with start_envoy(config, decision_lines=None) as envoy:
        sdk_call(envoy, pki, "agent", "add", {"a": 1, "b": 1})
        denied_id = refusal(post(envoy, pki, "agent", call_tool_body("delete_records", {"table": "t"})))["error"]["data"]["decision_id"]
        envoy.wait_for_access_line("custody_decision_id", denied_id)
        decided = {l["custody_decision"] for l in access_log_lines(envoy)}
        assert decided == {"allow", "deny"}, decided
        assert envoy.counters()["wasmcustom.custody_allowed"] >= 3
        settle(envoy, lines)
        logged = [(d["decision_id"], d["decision"]) for d in envoy.decisions()]
        assert logged == ([] if lines == "none" else [(denied_id, "deny")]), logged
    audit = {**config, "mode": "audit"}
    with start_envoy(audit, name="audit", decision_lines=None) as envoy:
        resp = post(envoy, pki, "agent", call_tool_body("delete_records", {"table": "t"}))
        assert resp.status_code != 403, resp.text  # forwarded: the tool server answered
        settle(envoy, lines)
        logged = [(d["reason"], d["mode"]) for d in envoy.decisions()]
        assert logged == ([] if lines == "none" else [("no_rule", "audit")]), logged


def settle(envoy, lines) -> None:
    """Waits until the expected denial's line is in the log, or (none
    expected) a while for a line that should not come."""
    deadline = time.monotonic() + (1 if lines == "none" else 10)
    while time.monotonic() < deadline and not any(d["decision"] == "deny" for d in envoy.decisions()):
        time.sleep(0.1)


def test_the_access_log_prints_the_decision(start_envoy, pki, demo_bundle):
    """A stock Envoy access log format reads Custody's decision from filter state."""
    with start_envoy({"policy": demo_bundle}) as envoy:
        resp = post(envoy, pki, "agent", call_tool_body("delete_records", {"table": "t"}))
        decision_id = refusal(resp)["error"]["data"]["decision_id"]
        sdk_call(envoy, pki, "agent", "add", {"a": 1, "b": 2})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = access_log_lines(envoy)
            if any(l["custody_method"] == "tools/call" and l["custody_decision"] == "allow" for l in lines):
                break
            time.sleep(0.1)
        denied = [l for l in lines if l["custody_decision_id"] == decision_id]
        assert denied == [
            {**denied[0], "status": 403, "custody_decision": "deny", "custody_reason": "no_rule",
             "custody_caller": AGENT, "custody_method": "tools/call", "custody_target": "tool:delete_records",
             "custody_workflow": "-", "custody_history_len": "0"}
        ]
        allowed = [l for l in lines if l["custody_method"] == "tools/call" and l["custody_decision"] == "allow"]
        assert allowed and allowed[0]["custody_reason"] == "-" and allowed[0]["status"] == 200
        assert allowed[0]["peer"] == AGENT
        assert (allowed[0]["custody_list_removed"], allowed[0]["custody_list_reason"]) == (None, None), \
            "a request whose response is no list never sets the list fields"


def test_stream_mode_works_where_headers_cannot_be_held(start_envoy, pki, demo_bundle, tool_server):
    """Istio's WasmPlugin cannot set allow_on_headers_stop_iteration: with
    `headers: stream` the headers go upstream at once, the body waits for the
    decision, and a refused body never reaches the server."""
    from custody_testkit.envoy import plugin_config_of

    def without_hold(boot):
        del plugin_config_of(boot)["allow_on_headers_stop_iteration"]

    with start_envoy({"headers": "stream", "policy": demo_bundle}, mutate=without_hold) as envoy:
        names, result = sdk_call(envoy, pki, "agent", "add", {"a": 40, "b": 2})
        assert result.content[0].text == "42"
        m = marker()
        resp = post(envoy, pki, "agent", call_tool_body("delete_records", {"table": m}))
        assert resp.status_code == 403
        assert refusal(resp)["error"]["data"]["reason"] == "no_rule"
        assert "headers=stream" in envoy.log()
    time.sleep(0.5)
    assert not upstream_saw(tool_server, m)


def test_tls_sessions_are_not_resumed(enforcing_envoy, pki):
    """A resumed session skips certificate validation and Envoy then reports
    the peer as not validated (Custody: no_identity). The shipped listener
    disables resumption, so every connection is fully verified and allowed."""
    ctx = tls_context(pki["bundle"], pki["agent"])
    body = json.dumps(INIT).encode()
    status, session, _, _ = raw_post(enforcing_envoy.port, ctx, body)
    assert status == 200
    status, _, reused, _ = raw_post(enforcing_envoy.port, ctx, body, session=session)
    assert not reused
    assert status == 200


def test_a_resumed_session_fails_closed_where_resumption_is_left_on(start_envoy, pki, demo_bundle):
    """Why the listener disables resumption: Envoy reports a resumed session's
    peer certificate as not validated, and Custody refuses rather than guess."""

    def allow_resumption(boot):
        tls = boot["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"]["typed_config"]
        tls.pop("disable_stateless_session_resumption")
        tls.pop("disable_stateful_session_resumption")

    with start_envoy({"policy": demo_bundle}, mutate=allow_resumption) as envoy:
        ctx = tls_context(pki["bundle"], pki["agent"])
        body = json.dumps(INIT).encode()
        status, session, _, _ = raw_post(envoy.port, ctx, body)
        assert status == 200
        status, _, reused, _ = raw_post(envoy.port, ctx, body, session=session)
        assert reused
        assert status == 403
        assert [d["reason"] for d in envoy.decisions()][-1] == "no_identity"
