"""One HTTP/1.1 POST on a fresh TLS connection, written by hand: for what an
HTTP client library hides, such as whether the TLS session was resumed."""

from __future__ import annotations

import socket
import ssl


def raw_post(port: int, ctx: ssl.SSLContext, body: bytes, session=None):
    """POSTs `body` to 127.0.0.1:`port`/mcp, offering `session` for resumption;
    returns (status, session, reused, the whole response)."""
    head = (
        f"POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
        f"accept: application/json, text/event-stream\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
            tls.sendall(head + body)
            response = b""
            while chunk := tls.recv(65536):
                response += chunk
            return int(response.split(b" ", 2)[1]), tls.session, tls.session_reused, response
