"""An `httpx2.AsyncClient` for the official MCP Python SDK (mcp 2.x): mTLS with
the SVID, and a fresh proof over the exact body of every request."""

from __future__ import annotations

import os
import ssl
from typing import Any, Awaitable, Callable, Union

import httpx2

from custody_client.history import History, prove
from custody_client.svid import Svid

#: A fixed history, or a function returning the current one for each request.
HistorySource = Union[History, Callable[[], History]]


def ssl_context(svid: Svid, ca_bundle: str | os.PathLike[str] | bytes) -> ssl.SSLContext:
    """A client TLS context presenting `svid` and trusting `ca_bundle` (a PEM
    file path, or PEM bytes) for the server certificate."""
    if isinstance(ca_bundle, bytes):
        ctx = ssl.create_default_context(cadata=ca_bundle.decode("ascii"))
    else:
        ctx = ssl.create_default_context(cafile=os.fspath(ca_bundle))
    svid.load_into(ctx)
    return ctx


def signing_hook(
    svid: Svid, *, history: HistorySource, audience: str, proof_ttl: int = 60
) -> Callable[[httpx2.Request], Awaitable[None]]:
    """An httpx2 `request` event hook adding the three history headers, with a
    proof over the exact body bytes sent (read with `await request.aread()`),
    to every request. An empty history adds nothing."""

    async def sign(request: httpx2.Request) -> None:
        current = history() if callable(history) else history
        if not current.entries:
            return
        body = await request.aread()
        for name, value in prove(current, svid, audience=audience, body=body, ttl=proof_ttl).items():
            request.headers[name] = value

    return sign


def client(
    svid: Svid,
    *,
    history: HistorySource,
    audience: str,
    ca_bundle: str | os.PathLike[str] | bytes,
    timeout: httpx2.Timeout | float | None = None,
    proof_ttl: int = 60,
    **kwargs: Any,
) -> httpx2.AsyncClient:
    """An `httpx2.AsyncClient` that connects with mTLS as `svid` (trusting
    `ca_bundle`) and signs every request for `audience`; pass it to
    `mcp.client.streamable_http.streamable_http_client(url, http_client=…)`.
    The caller owns it: use it as `async with`. `timeout` defaults to the MCP
    SDK's (30 s, 300 s read); other keyword arguments go to `AsyncClient`."""
    if timeout is None:
        timeout = httpx2.Timeout(30.0, read=300.0)
    hooks = dict(kwargs.pop("event_hooks", {}) or {})
    request_hooks = list(hooks.get("request", []))
    # Last, so that headers other hooks add are in place; the body is final by now.
    request_hooks.append(signing_hook(svid, history=history, audience=audience, proof_ttl=proof_ttl))
    hooks["request"] = request_hooks
    return httpx2.AsyncClient(verify=ssl_context(svid, ca_bundle), timeout=timeout, event_hooks=hooks, **kwargs)
