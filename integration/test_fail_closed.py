"""Failure modes through real Envoy (docs/operations.md, "Failure modes"):
every case ends in a refusal or a clean reset, never an allow, and the
upstream never sees the marker a test put in the body.

Not here:
- a plugin configuration the filter refuses (Envoy does not start, or
  rejects the update and keeps the previous one): `test_configure.py`;
- configuration reload under load: its own test, elsewhere.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import time
import uuid

import httpx2
import pytest
import yaml

from conftest import pki_envoy, tls_context
from custody_testkit.envoy import WASM, plugin_config_of, validate

MAX_BODY = 4096
MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def marker() -> str:
    return f"fc-{uuid.uuid4().hex}"


def call_body(name: str, arguments: dict, rid) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    ).encode()


def upstream_saw(tool_server, text: str) -> int:
    """How many requests that reached the tool server carry `text` (body or headers)."""
    return sum(1 for r in tool_server.seen() if text in r["body"] or text in json.dumps(r["headers"]))


def custody_reason(status_body: tuple[int, dict, bytes]) -> str | None:
    _, headers, body = status_body
    if not headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        data = json.loads(body)["error"]["data"]
    except (ValueError, KeyError, TypeError):
        return None
    return data.get("reason") if isinstance(data, dict) and "decision_id" in data else None


# --- a raw HTTP/1.1 client over mTLS, for what httpx2 cannot express ----------------------


class Raw:
    """One TLS connection with a workload's SVID; the request is written by hand."""

    def __init__(self, pki, who: str, port: int, timeout: float = 10.0):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = tls_context(pki["bundle"], pki[who]).wrap_socket(raw, server_hostname="localhost")
        self.port = port

    def head(self, *, length: int | None = None, extra: dict | None = None) -> None:
        lines = [f"POST /mcp HTTP/1.1", f"host: localhost:{self.port}"]
        lines += [f"{k}: {v}" for k, v in {**MCP_HEADERS, **(extra or {})}.items()]
        lines.append(f"content-length: {length}" if length is not None else "transfer-encoding: chunked")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def answered(self) -> bool:
        """Has the server started answering (or closed) while we still send?"""
        if self.sock.pending():
            return True
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def trickle(self, pieces: list[bytes], pause: float, *, chunked: bool) -> int:
        """Sends `pieces` with `pause` between them; stops early once the server
        answers. Returns how many pieces were sent."""
        sent = 0
        for piece in pieces:
            if self.answered():
                return sent
            try:
                self.sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                return sent
            sent += 1
            time.sleep(pause)
        if chunked and not self.answered():
            try:
                self.sock.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass
        return sent

    def response(self, timeout: float = 10.0) -> tuple[int, dict, bytes] | None:
        """(status, headers, body) of the answer, or None if the connection
        closed (or was reset) without one."""
        self.sock.settimeout(timeout)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return None
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in header_lines:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            return int(status_line.split()[1]), headers, body
        except (ConnectionResetError, ssl.SSLError):
            return None

    def close(self, *, reset: bool = False) -> None:
        if reset:  # RST instead of close_notify + FIN
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            socket.socket.close(self.sock)
        else:
            try:
                self.sock.unwrap().close()
            except (OSError, ssl.SSLError):
                self.sock.close()


def pieces_of(body: bytes, n: int) -> list[bytes]:
    size = -(-len(body) // n)
    return [body[i : i + size] for i in range(0, len(body), size)]


def still_healthy(envoy, pki, tool_server) -> None:
    """Envoy is up and an allowed request is forwarded right after."""
    assert envoy.proc.poll() is None
    assert envoy.admin("/ready").strip() == "LIVE"
    m = marker()
    with httpx2.Client(verify=tls_context(pki["bundle"], pki["agent"]), timeout=15) as http:
        resp = http.post(envoy.url, content=call_body("add", {"a": 1, "b": 2}, m), headers=MCP_HEADERS)
    assert "x-envoy-upstream-service-time" in resp.headers, resp.text
    assert "decision_id" not in resp.text
    assert upstream_saw(tool_server, m) == 1


@pytest.fixture(scope="module")
def capped_envoy(pki, tool_server, demo_bundle, tmp_path_factory):
    """The demo policy (agent may call `add`), bodies capped at 4 KiB, headers held."""
    config = {"mode": "enforce", "paths": ["/mcp"], "limits": {"max_body_bytes": MAX_BODY}, "policy": demo_bundle}
    with pki_envoy(pki, tmp_path_factory.mktemp("fail-closed"), tool_server.port, config) as envoy:
        yield envoy


# --- the VM cannot start ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["junk", "truncated", "missing"])
def test_a_wasm_that_cannot_load_is_refused_by_envoy(pki, demo_bundle, tmp_path, kind):
    """`.wasm` missing or unloadable: Envoy rejects the configuration; it never
    serves the listener without the filter."""
    wasm = tmp_path / "custody.wasm"
    if kind == "junk":
        wasm.write_bytes(b"this is not a webassembly module\x00\xff" * 64)
    elif kind == "truncated":
        wasm.write_bytes(WASM.read_bytes()[: WASM.stat().st_size // 2])
    envoy = pki_envoy(pki, tmp_path / "envoy", 1, {"policy": demo_bundle}, wasm=wasm)
    code = plugin_config_of(yaml.safe_load(envoy.config_path.read_text()))["vm_config"]["code"]
    assert code["local"]["filename"] == str(wasm)
    result = validate(envoy.config_path, envoy.workdir)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    if kind == "missing":
        assert f"Invalid path: {wasm}" in out, out[-2000:]
    else:
        assert "Wasm VM failed Failed to load Wasm code" in out, out[-2000:]
        assert "Unable to create Wasm plugin custody" in out, out[-2000:]


def test_envoy_does_not_serve_with_a_junk_wasm(pki, demo_bundle, tmp_path):
    """Started for real, Envoy exits instead of opening the listener."""
    wasm = tmp_path / "junk.wasm"
    wasm.write_bytes(b"\x00asm\x01\x00\x00\x00" + b"\xff" * 256)  # a wasm header, then garbage
    envoy = pki_envoy(pki, tmp_path / "envoy", 1, {"policy": demo_bundle}, wasm=wasm)
    with pytest.raises(RuntimeError, match="envoy exited"):
        with envoy:
            pass
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", envoy.port), timeout=1).close()


# --- bodies over the cap, arriving slowly --------------------------------------------------


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_slow_body_over_the_cap_is_413_as_it_streams(capped_envoy, pki, tool_server, chunked):
    """10 KiB in 10 pieces, 0.3 s apart, against a 4 KiB cap. Chunked (size
    unknown up front) it is refused as soon as the count passes the cap; with
    an honest content-length, at the headers. Never after the whole body."""
    m = marker()
    body = call_body("add", {"a": 1, "b": 2, "pad": m + "x" * (10 * 1024)}, m)
    sent, answer = trickled(capped_envoy, pki, body, 0.3, chunked=chunked)
    assert answer is not None, "reset without an answer"
    assert (answer[0], custody_reason(answer)) == (413, "body_too_large"), answer
    assert sent < 10, "refused only after the whole body arrived"
    time.sleep(0.3)
    assert upstream_saw(tool_server, m) == 0
    still_healthy(capped_envoy, pki, tool_server)


def trickled(envoy, pki, body: bytes, pause: float, *, chunked: bool, meanwhile=None):
    """`body` from the agent in 10 pieces `pause` s apart (stopping early once
    Envoy answers), with a content-length or chunked; `meanwhile()` runs after
    the last piece, before the answer is read. Returns (pieces sent, answer)."""
    conn = Raw(pki, "agent", envoy.port)
    try:
        conn.head(length=None if chunked else len(body))
        sent = conn.trickle(pieces_of(body, 10), pause, chunked=chunked)
        if meanwhile is not None:
            meanwhile()
        return sent, conn.response()
    finally:
        conn.close()


# --- slow clients: the decision is the same ------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_slowly_trickled_refused_body_is_refused_at_the_end(capped_envoy, pki, tool_server, chunked):
    m = marker()
    body = call_body("delete_records", {"table": m}, m)

    def held_back():
        # While the body trickles in, the held headers have not gone upstream.
        assert upstream_saw(tool_server, m) == 0

    sent, answer = trickled(capped_envoy, pki, body, 0.25, chunked=chunked, meanwhile=held_back)
    assert sent == 10
    assert answer is not None
    assert (answer[0], custody_reason(answer)) == (403, "no_rule"), answer
    time.sleep(0.3)
    assert upstream_saw(tool_server, m) == 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_slowly_trickled_allowed_body_is_forwarded_whole(capped_envoy, pki, tool_server, chunked):
    m = marker()
    body = call_body("add", {"a": 20, "b": 22}, m)
    sent, answer = trickled(capped_envoy, pki, body, 0.25, chunked=chunked)
    assert sent == 10
    assert answer is not None
    assert custody_reason(answer) is None, answer
    assert "x-envoy-upstream-service-time" in answer[1]
    (seen,) = [r for r in tool_server.seen() if m in r["body"]]
    assert json.loads(seen["body"]) == json.loads(body)
    assert seen["headers"]["x-custody-decision"] == "allow"


# --- clients that go away mid-body -----------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "reset", "close-chunked"])
def test_a_client_closing_mid_body_forwards_nothing(capped_envoy, pki, tool_server, how):
    """An allowed body, half sent, then the client goes: the held request is
    dropped, the upstream never sees it, Envoy keeps serving."""
    m = marker()
    body = call_body("add", {"a": 1, "b": 2, "note": m}, m)
    before = capped_envoy.counters()
    conn = Raw(pki, "agent", capped_envoy.port)
    chunked = how == "close-chunked"
    conn.head(length=None if chunked else len(body))
    half = body[: len(body) // 2]
    conn.sock.sendall(b"%x\r\n%s\r\n" % (len(half), half) if chunked else half)
    time.sleep(0.3)
    conn.close(reset=how == "reset")
    time.sleep(0.5)
    assert upstream_saw(tool_server, m) == 0
    after = capped_envoy.counters()
    # Never decided, so never allowed.
    assert after["wasmcustom.custody_allowed"] == before["wasmcustom.custody_allowed"]
    still_healthy(capped_envoy, pki, tool_server)


def test_a_client_closing_mid_body_in_stream_mode_forwards_no_body(start_envoy, pki, tool_server, demo_bundle):
    """With `headers: stream` the upstream sees the headers at once; the body
    waits for the decision, so a client leaving mid-body leaves the upstream
    with headers and a reset, never the body."""

    def without_hold(boot):
        del plugin_config_of(boot)["allow_on_headers_stop_iteration"]

    m = marker()
    body = call_body("add", {"a": 1, "b": 2, "note": m}, m)
    with start_envoy({"headers": "stream", "policy": demo_bundle}, mutate=without_hold) as envoy:
        conn = Raw(pki, "agent", envoy.port)
        conn.head(length=len(body), extra={"x-fc-marker": m + "-hdr"})
        conn.sock.sendall(body[: len(body) // 2])
        time.sleep(0.3)
        conn.close(reset=True)
        time.sleep(0.8)
        # The headers may have reached it (stream mode), the body never.
        assert not any(m in r["body"] for r in tool_server.seen())
        still_healthy(envoy, pki, tool_server)


# --- a panic inside the filter ---------------------------------------------------------------


@pytest.fixture(scope="module")
def panicking_wasm():
    """The filter built with `--features test-panic`: a request carrying
    `x-custody-test-panic` panics inside the VM. (No panic path is reachable
    in the shipped filter: clippy denies unwrap, expect and panic, and every
    parser is fuzzed.)"""
    import subprocess

    from custody_testkit.envoy import REPO

    target = REPO / "target" / "test-panic"
    subprocess.run(
        ["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1", "-p", "custody-filter",
         "--features", "test-panic", "--target-dir", str(target)],
        cwd=REPO, check=True, timeout=900,
    )
    return target / "wasm32-wasip1" / "release" / "custody_filter.wasm"


def test_a_panicking_vm_fails_closed(start_envoy, pki, tool_server, demo_bundle, panicking_wasm):
    """FAIL_RELOAD (envoy/local/envoy.yaml): the request whose VM crashed is
    refused, never forwarded; later requests are decided as usual (by the
    other worker's VM, or the crashed one once Envoy has reloaded it)."""
    with start_envoy({"policy": demo_bundle}, wasm=panicking_wasm) as envoy:
        m = marker()
        body = call_body("add", {"a": 1, "b": 2, "m": m}, 1)
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
                   "x-custody-test-panic": "1"}
        with httpx2.Client(verify=tls_context(pki["bundle"], pki["agent"]), timeout=20) as http:
            try:
                status = http.post(envoy.url, content=body, headers=headers).status_code
            except httpx2.HTTPError:
                status = None  # a reset is a refusal too
        assert status in (None, 500, 503), status
        assert "panic: " in envoy.log()
        time.sleep(0.5)
        assert not upstream_saw(tool_server, m)
        # Until the VM is reloaded (Envoy backs off before reloading), requests
        # are refused, never let through; then they are decided as usual.
        deadline = time.monotonic() + 30
        while True:
            try:
                still_healthy(envoy, pki, tool_server)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
