"""An agent as users write one: the official MCP Python client over mTLS,
every POST carrying the workflow history and a fresh proof over its exact
body (made by the `custody` command until the client libraries exist)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Callable

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from custody_testkit.cli import History, Workload

# (caller, audience, body) -> the three history headers
Prover = Callable[[Workload, str, bytes], dict]


def tls_context(bundle: Path, workload: Workload | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(bundle))
    if workload is not None:
        ctx.load_cert_chain(str(workload.cert), str(workload.key))
    return ctx


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
    `MCPError` (its `.error.data["reason"]` is Custody's reason code)."""
    prove = prover or (history.prove if history else None)

    async def sign(request: httpx2.Request) -> None:
        if prove is None:
            return
        body = await request.aread()
        for name, value in prove(caller, audience, body).items():
            request.headers[name] = value

    async def run() -> str:
        ctx = tls_context(bundle, caller)
        async with httpx2.AsyncClient(verify=ctx, timeout=20, event_hooks={"request": [sign]}) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                result = await client.call_tool(tool, arguments)
                return result.content[0].text

    try:
        return anyio.run(run)
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        raise error from group
