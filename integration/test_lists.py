"""List results filtered per caller, through real Envoy running
dist/custody.wasm, with the official MCP Python and TypeScript SDK clients,
against the official Python SDK server (1,000 tools, paginated) in both
Streamable HTTP response modes: `application/json` and `text/event-stream`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import AGENT, INTRUDER, tls_context
from custody_testkit.cli import custody
from custody_testkit.envoy import REPO, Envoy, free_port, wait_for_port
from test_client_typescript import ts_client  # noqa: F401  (fixture: node + built dist/)

APPROVER = "spiffe://example.org/ns/demo/sa/approvals"
POLICY = f"""
rules:
- name: lifecycle
  callers: ["spiffe://example.org/**"]
  methods: [server/discover, initialize, ping, "notifications/*", tools/list, prompts/list, resources/list,
            resources/templates/list, jsonrpc:response, "http:GET", "http:DELETE"]
- name: one-tool
  callers: ["{AGENT}"]
  methods: [tools/call]
  tools: [tool_0042]
- name: gated-tool          # listed: its condition is about a future call's history
  callers: ["{AGENT}"]
  methods: [tools/call]
  tools: [tool_0999]
  require:
  - step: human_approval
    by: ["{APPROVER}"]
- name: docs
  callers: ["{AGENT}"]
  methods: [prompts/get, resources/read]
  prompts: [summarise]
  resources: ["file:///docs/**"]
"""
AGENT_TOOLS = ["tool_0042", "tool_0999"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("lists-policy") / "policy.yaml"
    path.write_text(POLICY)
    return json.loads(custody("policy", "compile", path))


def plugin_config(pki, bundle, **extra) -> dict:
    return {
        "paths": ["/mcp"],
        "audience": "spiffe://example.org/ns/tools/sa/mcp-server",
        "trust_domains": {"example.org": {"bundle_pem": pki["bundle"].read_text()}},
        "policy": bundle,
        **extra,
    }


def start_list_server(tmp: Path, json_mode: bool):
    port = free_port()
    args = [sys.executable, "-m", "custody_testkit.list_server", "--port", str(port)]
    log = (tmp / f"list-server-{port}.log").open("w")
    proc = subprocess.Popen(args + (["--json"] if json_mode else []), cwd=Path(__file__).parent,
                            stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(port)
    return proc, port


@pytest.fixture(scope="module", params=["json", "sse"])
def mode_envoy(request, pki, bundle, tmp_path_factory):
    """Envoy in front of the 1,000-tool server, in one response mode."""
    tmp = tmp_path_factory.mktemp(f"lists-{request.param}")
    proc, port = start_list_server(tmp, request.param == "json")
    try:
        with Envoy(tmp / "envoy", bundle=pki["bundle"], server_cert=pki["server"].cert,
                   server_key=pki["server"].key, upstream_port=port,
                   plugin_config=plugin_config(pki, bundle)) as envoy:
            envoy.mode = request.param
            yield envoy
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def every_page(list_page, items) -> tuple[list, int]:
    """Follows `next_cursor` from the first page to the last: every page's
    `items(page)`, and how many pages there were."""
    out, pages, cursor = [], 0, None
    while True:
        page = await list_page(cursor=cursor, cache_mode="bypass")
        out += items(page)
        pages += 1
        if not (cursor := page.next_cursor):
            return out, pages


def python_lists(envoy: Envoy, pki, who: str, connect: str = "legacy") -> dict:
    """Every page of every list, as the Python SDK client sees them. `legacy`:
    the initialize handshake (the server answers in its response mode);
    `auto`: the SDK's 2026-07-28 discovery (the server answers JSON)."""

    async def run() -> dict:
        async with httpx2.AsyncClient(verify=tls_context(pki["bundle"], pki[who]), timeout=30) as http:
            async with Client(streamable_http_client(envoy.url, http_client=http), mode=connect) as client:
                out: dict = {}
                out["tools"], out["tool_pages"] = await every_page(client.list_tools, lambda p: [t.name for t in p.tools])
                out["prompts"], _ = await every_page(client.list_prompts, lambda p: [q.name for q in p.prompts])
                out["resources"], _ = await every_page(client.list_resources, lambda p: [r.uri for r in p.resources])
                page = await client.list_resource_templates(cache_mode="bypass")
                out["templates"] = [t.uri_template for t in page.resource_templates]
                if who == "agent":
                    result = await client.call_tool("tool_0042", {"x": 1})
                    out["called"] = result.content[0].text
                return out

    return anyio.run(run)


@pytest.mark.parametrize("connect", ["legacy", "auto"])
def test_python_sdk_a_caller_sees_exactly_what_it_may_use(mode_envoy, pki, connect):
    before = len(mode_envoy.log())
    seen = python_lists(mode_envoy, pki, "agent", connect)
    assert seen["tools"] == AGENT_TOOLS
    assert seen["tool_pages"] == 10, "nextCursor survives filtering, even on pages left empty"
    assert seen["prompts"] == ["summarise"]
    assert seen["resources"] == ["file:///docs/readme.md", "file:///docs/guide.md"]
    assert seen["templates"] == ["file:///docs/{path}"]
    assert seen["called"] == "called tool_0042"
    lines = list_lines(mode_envoy, before, wait_for=14)
    tools = [line for line in lines if line["method"] == "tools/list"]
    assert len(tools) == 10
    assert sum(line["removed"] for line in tools) == 998
    assert sum(line["kept"] for line in tools) == 2
    if connect == "legacy":
        assert {line["format"] for line in lines} == {mode_envoy.mode}
    assert all(line["outcome"] == "filtered" and line["mode"] == "enforce" for line in lines)
    counters = mode_envoy.counters()
    assert counters["wasmcustom.custody_list_items_removed"] >= 998


@pytest.mark.parametrize("connect", ["legacy", "auto"])
def test_python_sdk_a_caller_without_rules_sees_nothing(mode_envoy, pki, connect):
    seen = python_lists(mode_envoy, pki, "intruder", connect)
    assert seen == {"tools": [], "tool_pages": 10, "prompts": [], "resources": [], "templates": []}


def list_lines(envoy: Envoy, since: int = 0, wait_for: int = 0) -> list[dict]:
    """The list log lines written since log offset `since` (waiting up to 5 s
    for `wait_for` of them: a stream the client closed is logged at its end)."""
    deadline = time.monotonic() + 5
    while True:
        out = envoy.log_lines("list", since)
        if len(out) >= wait_for or time.monotonic() > deadline:
            return out
        time.sleep(0.05)


def test_typescript_sdk_a_caller_sees_exactly_what_it_may_use(ts_client, mode_envoy, pki, tmp_path):  # noqa: F811
    before = len(mode_envoy.log())
    for who, want in [("agent", AGENT_TOOLS), ("intruder", [])]:
        config = {
            "url": mode_envoy.url,
            "caBundle": str(pki["bundle"]),
            "caller": {"cert": str(pki[who].cert), "key": str(pki[who].key)},
        }
        path = tmp_path / f"{who}.json"
        path.write_text(json.dumps(config))
        r = subprocess.run([ts_client, str(REPO / "clients/typescript/test/mcp-list.mjs"), str(path)],
                           cwd=REPO / "clients/typescript", capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["ok"] is True, out
        assert out["tools"] == want
        assert out["pages"] == 10
        assert out["prompts"] == (["summarise"] if who == "agent" else [])
        assert out["templates"] == (["file:///docs/{path}"] if who == "agent" else [])
    lines = list_lines(mode_envoy, before, wait_for=2 * 13)
    assert {line["format"] for line in lines} == {mode_envoy.mode}, "the server's response mode reached the filter"
    assert sum(line["removed"] for line in lines if line["method"] == "tools/list") == 998 + 1000
