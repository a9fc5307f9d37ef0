"""The example MCP tool server (official MCP Python SDK, Streamable HTTP).

Every HTTP request that reaches it is appended to a JSON-lines file
(`--record`), so tests can prove what the upstream did and did not see.

    python -m custody_testkit.tool_server --port 8000 --record seen.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

server = MCPServer("custody-example-tools")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def delete_records(table: str) -> str:
    """Pretend to delete every row of a table (a tool no agent should reach)."""
    return f"deleted all rows of {table}"


@server.tool()
def refund(order_id: str, amount: int, currency: str = "USD") -> str:
    """Refund an order."""
    return f"refunded {amount} {currency} on order {order_id}"


@server.tool()
def wire_refund(order_id: str, amount: int, currency: str = "USD") -> str:
    """Refund an order by wire transfer (each call needs its own approval)."""
    return f"wired {amount} {currency} back for order {order_id}"


class Recorder:
    """ASGI middleware: records method, path, headers and body of each request."""

    def __init__(self, app, path: Path):
        self.app = app
        self.path = path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body = bytearray()
        messages = []
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        record = {
            "method": scope["method"],
            "path": scope["path"],
            "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            "body": body.decode("utf-8", "replace"),
        }
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

        async def replay():
            return messages.pop(0) if messages else await receive()

        return await self.app(scope, replay, send)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()
    # Envoy forwards the caller's Host header; DNS-rebinding protection is for
    # browsers reaching a local server directly, which cannot happen behind mTLS.
    app = server.streamable_http_app(
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    uvicorn.run(Recorder(app, args.record), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
