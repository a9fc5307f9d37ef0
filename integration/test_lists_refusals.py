"""List responses that cannot be filtered are refused, and nothing else is
touched: through real Envoy running dist/custody.wasm, against a deliberately
broken upstream (the adversary here, not a stand-in for an MCP server) that
answers `tools/list` as each test asks: truncated, duplicate members, another
id, compressed, too large, not JSON, through SSE events, on a resumed stream.
In every case the items the caller may not use never reach it."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from conftest import AGENT, tls_context
from custody_testkit.agent import first_leaf
from custody_testkit.cli import custody
from custody_testkit.envoy import Envoy

SECRET = "secret_tool"
MAX_LIST = 65536


def tools_result(id_, names, **extra) -> dict:
    return {"jsonrpc": "2.0", "id": id_, "result": {"tools": [{"name": n, "inputSchema": {"type": "object"}} for n in names], **extra}}


def sse(*messages, raw: str = "") -> bytes:
    return (raw + "".join(f"event: message\r\ndata: {json.dumps(m)}\r\n\r\n" for m in messages)).encode()


JSON = "application/json"
SSE = "text/event-stream"


def case(name: str, id_):
    """(status, headers, body chunks) of the broken answer to `tools/list` with id `id_`."""
    good = json.dumps(tools_result(id_, ["add", SECRET], nextCursor="c2")).encode()
    if name == "ok-chunked":
        return 200, {"content-type": JSON}, [good[i : i + 7] for i in range(0, len(good), 7)]
    if name == "truncated":
        return 200, {"content-type": JSON}, [good[:-2]]
    if name == "duplicate":
        body = f'{{"jsonrpc":"2.0","id":{json.dumps(id_)},"result":{{"tools":[{{"name":"add","name":"{SECRET}"}}]}}}}'
        return 200, {"content-type": JSON}, [body.encode()]
    if name == "other-id":
        return 200, {"content-type": JSON}, [json.dumps(tools_result(str(id_), [SECRET])).encode()]
    if name == "gzip":
        return 200, {"content-type": JSON, "content-encoding": "gzip"}, [gzip.compress(good)]
    if name == "too-large":
        big = tools_result(id_, ["add", SECRET], pad="x" * (MAX_LIST + 10))
        body = json.dumps(big).encode()
        return 200, {"content-type": JSON}, [body[i : i + 16384] for i in range(0, len(body), 16384)]
    if name == "plain":
        return 200, {"content-type": "text/plain"}, [good]
    if name == "sse-notification":
        note = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
        return 200, {"content-type": SSE}, [sse(note, raw="id: 1\r\ndata:\r\n\r\n"), sse(tools_result(id_, ["add", SECRET]))]
    if name == "sse-garbage":
        return 200, {"content-type": SSE}, [b"data: {not json\n\n", sse(tools_result(id_, ["add", SECRET]))]
    if name == "error":
        return 200, {"content-type": JSON}, [json.dumps({"jsonrpc": "2.0", "id": id_, "error": {"code": -32601, "message": "no"}}).encode()]
    if name == "not-found":
        return 404, {"content-type": JSON}, [good]
    raise KeyError(name)


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    default_case = "truncated"
    seen: list[dict] = []

    def log_message(self, *args):  # quiet
        pass

    def reply(self, status: int, headers: dict, chunks: list[bytes]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for c in chunks:
            if c:
                self.wfile.write(f"{len(c):x}\r\n".encode() + c + b"\r\n")
                self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def do_GET(self):
        Upstream.seen.append({"method": "GET", "headers": dict(self.headers)})
        replayed = tools_result("x-9", ["add", SECRET])
        call = {"jsonrpc": "2.0", "id": 5, "result": {"content": [{"type": "text", "text": "hi"}]}}
        self.reply(200, {"content-type": SSE}, [sse(call, replayed, raw="id: 7\r\n: replay\r\n\r\n")])

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        Upstream.seen.append({"method": body.get("method"), "headers": dict(self.headers)})
        method, id_ = body.get("method"), body.get("id")
        if method == "initialize":
            result = {"protocolVersion": body["params"]["protocolVersion"], "capabilities": {"tools": {}},
                      "serverInfo": {"name": "broken", "version": "1"}}
            return self.reply(200, {"content-type": JSON, "mcp-session-id": "s-1"},
                              [json.dumps({"jsonrpc": "2.0", "id": id_, "result": result}).encode()])
        if id_ is None:
            return self.reply(202, {}, [])
        if method == "tools/call":  # not a list request: a `tools` member here is not filtered
            result = {"content": [{"type": "text", "text": "ok"}], "tools": [{"name": SECRET}]}
            return self.reply(200, {"content-type": JSON}, [json.dumps({"jsonrpc": "2.0", "id": id_, "result": result}).encode()])
        if method == "tools/list":
            return self.reply(*case(self.headers.get("x-case", Upstream.default_case), id_))
        return self.reply(200, {"content-type": JSON}, [json.dumps({"jsonrpc": "2.0", "id": id_, "result": {}}).encode()])


@pytest.fixture(scope="module")
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("refusals") / "policy.yaml"
    path.write_text(f"""
rules:
- name: lifecycle
  callers: ["spiffe://example.org/**"]
  methods: [initialize, ping, "notifications/*", tools/list, "http:GET"]
- name: add
  callers: ["{AGENT}"]
  methods: [tools/call]
  tools: [add]
""")
    return json.loads(custody("policy", "compile", path))


def envoy_for(pki, upstream, policy, tmp, **config):
    return Envoy(tmp, bundle=pki["bundle"], server_cert=pki["server"].cert, server_key=pki["server"].key,
                 upstream_port=upstream,
                 plugin_config={"paths": ["/mcp"], "policy": policy, "limits": {"max_list_bytes": MAX_LIST}, **config})


@pytest.fixture(scope="module")
def held(pki, upstream, policy, tmp_path_factory):
    with envoy_for(pki, upstream, policy, tmp_path_factory.mktemp("held"), headers="hold") as e:
        yield e


@pytest.fixture(scope="module")
def streamed(pki, upstream, policy, tmp_path_factory):
    with envoy_for(pki, upstream, policy, tmp_path_factory.mktemp("stream"), headers="stream") as e:
        yield e


def post(envoy, pki, case_name: str, method: str = "tools/list", id_=7, params=None) -> httpx2.Response:
    headers = {"content-type": JSON, "accept": f"{JSON}, {SSE}", "accept-encoding": "gzip, br", "x-case": case_name}
    message = {"jsonrpc": "2.0", "id": id_, "method": method, **({"params": params} if params else {})}
    with httpx2.Client(verify=tls_context(pki["bundle"], pki["agent"]), timeout=20) as http:
        return http.post(envoy.url, headers=headers, content=json.dumps(message))


def error_of(r: httpx2.Response) -> dict:
    if r.headers["content-type"].startswith(SSE):
        events = [line[len("data: "):] for line in r.text.splitlines() if line.startswith("data: ")]
        return json.loads(events[-1])["error"]
    return r.json()["error"]


@pytest.mark.parametrize(
    "case_name, reason",
    [("truncated", "list_malformed"), ("duplicate", "list_malformed"), ("other-id", "list_malformed"),
     ("gzip", "list_encoded"), ("too-large", "list_too_large"), ("plain", "list_malformed")],
)
def test_an_unfilterable_json_list_is_refused_with_502(held, pki, case_name, reason):
    r = post(held, pki, case_name)
    assert SECRET not in r.text
    assert r.status_code == 502, r.text
    err = error_of(r)
    assert err["code"] == -32007
    assert err["data"]["reason"] == reason
    assert r.json()["id"] == 7
    assert int(r.headers["content-length"]) == len(r.content) if "content-length" in r.headers else True
    line = held.wait_for_line("list", err["data"]["decision_id"])
    assert line["outcome"] == "refused" and line["reason"] == reason
    access = held.wait_for_access_line("custody_decision_id", err["data"]["decision_id"])
    assert (access["status"], access["custody_list_reason"]) == (502, reason)


def test_with_headers_streamed_a_refusal_found_in_the_body_keeps_the_2xx(streamed, pki):
    r = post(streamed, pki, "truncated")
    assert SECRET not in r.text
    assert r.status_code == 200
    assert error_of(r)["data"]["reason"] == "list_malformed"
    # Compression is seen in the headers: refused there, with 502.
    r = post(streamed, pki, "gzip")
    assert (r.status_code, error_of(r)["data"]["reason"]) == (502, "list_encoded")
    assert SECRET not in r.text


def test_held_list_requests_ask_for_no_compression(held, pki):
    Upstream.seen.clear()
    post(held, pki, "ok-chunked")
    post(held, pki, "ok-chunked", method="ping", id_=8)
    by_method = {s["method"]: s["headers"] for s in Upstream.seen}
    assert by_method["tools/list"].get("accept-encoding") == "identity"
    assert by_method["ping"].get("accept-encoding") == "gzip, br", "only list requests are changed"


@pytest.mark.parametrize("envoy_name", ["held", "streamed"])
def test_a_chunked_json_list_is_filtered_with_every_other_member_kept(request, pki, envoy_name):
    envoy = request.getfixturevalue(envoy_name)
    Upstream.seen.clear()
    r = post(envoy, pki, "ok-chunked")
    assert r.status_code == 200
    body = r.json()
    assert [t["name"] for t in body["result"]["tools"]] == ["add"]
    assert body["result"]["nextCursor"] == "c2"
    assert body["id"] == 7
    if "content-length" in r.headers:
        assert int(r.headers["content-length"]) == len(r.content)
    if envoy_name == "held":
        assert int(r.headers["content-length"]) == len(r.content), "held headers get the new length"
    sent = {k.lower(): v for k, v in Upstream.seen[-1]["headers"].items()}
    access = envoy.wait_for_access_line("request_id", sent["x-request-id"])
    assert (access["custody_list_removed"], access["custody_list_reason"]) == ("1", "-")


def test_sse_notifications_pass_untouched_and_the_list_is_filtered(held, pki):
    r = post(held, pki, "sse-notification")
    assert r.status_code == 200
    assert r.text.startswith("id: 1\r\ndata:\r\n\r\nevent: message\r\ndata: "
                             '{"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}\r\n\r\n'), r.text
    assert SECRET not in r.text
    response = json.loads([line for line in r.text.splitlines() if '"result"' in line][0][len("data: "):])
    assert [t["name"] for t in response["result"]["tools"]] == ["add"]


def test_a_bad_sse_event_ends_the_stream_with_an_error(held, pki):
    r = post(held, pki, "sse-garbage")
    assert SECRET not in r.text
    assert r.status_code == 200
    assert error_of(r)["data"]["reason"] == "list_malformed"


def test_error_responses_non_2xx_and_non_list_responses_pass(held, pki):
    r = post(held, pki, "error")
    assert r.json()["error"]["message"] == "no"
    r = post(held, pki, "not-found")
    assert r.status_code == 404 and SECRET in r.text  # clients read no result from a 404
    r = post(held, pki, "ok-chunked", method="tools/call", params={"name": "add", "arguments": {}})
    assert SECRET in r.text, "a response to another method is not touched"


def test_a_resumed_stream_is_filtered(held, pki):
    headers = {"accept": SSE, "last-event-id": "7"}
    with httpx2.Client(verify=tls_context(pki["bundle"], pki["agent"]), timeout=20) as http:
        r = http.get(held.url, headers=headers)
    assert r.status_code == 200
    assert SECRET not in r.text
    assert '"text": "hi"' in r.text
    assert '"add"' in r.text


def test_the_python_sdk_surfaces_the_refusal(held, pki):
    Upstream.default_case = "duplicate"

    async def run():
        async with httpx2.AsyncClient(verify=tls_context(pki["bundle"], pki["agent"]), timeout=20) as http:
            async with Client(streamable_http_client(held.url, http_client=http)) as client:
                await client.list_tools(cache_mode="bypass")

    with pytest.raises(BaseException) as caught:
        anyio.run(run)
    error = first_leaf(caught.value)
    assert isinstance(error, MCPError), repr(error)
    assert error.error.data["reason"] == "list_malformed"


def test_lists_pass_leaves_responses_alone(pki, upstream, policy, tmp_path):
    with envoy_for(pki, upstream, policy, tmp_path / "pass", lists="pass") as e:
        r = post(e, pki, "ok-chunked")
        assert SECRET in r.text
        assert e.log_lines("list") == []


