"""An agent as users write one: the official MCP Python client with the
Custody client library (clients/python), which presents the workload's SVID
over mTLS and signs every POST with a fresh proof over its exact body."""

from __future__ import annotations

import ssl
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from custody_testkit.cli import History, Workload
from custody_testkit.envoy import REPO

sys.path.insert(0, str(REPO / "clients" / "python" / "src"))
import custody_client  # noqa: E402  (the library from the tree, not an installed copy)

# (caller, audience, body) -> the three history headers
Prover = Callable[[Workload, str, bytes], dict]
T = TypeVar("T")


def tls_context(bundle: Path, workload: Workload | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(bundle))
    if workload is not None:
        ctx.load_cert_chain(str(workload.cert), str(workload.key))
    return ctx


def svid(workload: Workload) -> custody_client.Svid:
    return custody_client.Svid.from_files(workload.cert, workload.key)


def call_tool(
    url: str,
    bundle: Path,
    caller: Workload,
    tool: str,
    arguments: dict,
    *,
    history: History | None = None,
    audience: str | None = None,
    prover: Prover | None = None,
) -> str:
    """Connects, calls one tool, returns its text. A refusal raises the SDK's
    `MCPError` (its `.error.data["reason"]` is Custody's reason code).

    With a `history` file, requests are signed by `custody_client`; a `prover`
    replaces it (to script attacks the library refuses to make)."""

    def http_client() -> httpx2.AsyncClient:
        if prover is None and history is not None:
            return custody_client.client(
                svid(caller), history=custody_client.History.parse(history.headers()),
                audience=audience or "", ca_bundle=str(bundle), timeout=20,
            )

        async def sign(request: httpx2.Request) -> None:
            if prover is not None:
                body = await request.aread()
                for name, value in prover(caller, audience or "", body).items():
                    request.headers[name] = value

        return httpx2.AsyncClient(verify=tls_context(bundle, caller), timeout=20, event_hooks={"request": [sign]})

    async def run() -> str:
        async with http_client() as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                result = await client.call_tool(tool, arguments)
                return result.content[0].text

    return run_bare(run)


def run_bare(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """`anyio.run(fn, *args)`, re-raising bare the first error inside an
    exception group (the MCP client's task groups wrap a refusal's `MCPError`)."""
    try:
        return anyio.run(fn, *args)
    except BaseExceptionGroup as group:
        raise first_leaf(group) from group


def first_leaf(error: BaseException) -> BaseException:
    """The first error inside (nested) exception groups; `error` itself if none."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def proving_anyway(history: History, prover: Workload) -> Prover:
    """A prover that proves `history` as `prover` even when it is not the
    holder the chain names (the library refuses that unless told not to):
    a stolen or cut chain, as an attacker would present it."""
    parsed = custody_client.History.parse(history.headers())

    def prove(_caller: Workload, audience: str, body: bytes) -> dict:
        return custody_client.prove(parsed, svid(prover), audience=audience, body=body, strict=False)

    return prove
