"""The httpx2 client: every request carries a fresh proof over its exact body."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx2

import custody_client
from custody_client import History, check_proof, parse_proof, sha256_b64u
from test_signing import SA, make_svid


def test_every_request_is_signed_over_its_exact_body(tmp_path: Path) -> None:
    f, r = make_svid(SA + "fraud-agent"), make_svid(SA + "refund-agent")
    h = History().append(f, step="fraud_check_passed", next=r.spiffe_id)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(f.cert_chain_pem())
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={})

    async def run() -> None:
        http = custody_client.client(
            r, history=h, audience="aud", ca_bundle=bundle, transport=httpx2.MockTransport(handler)
        )
        async with http:
            await http.post("https://localhost/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "x", "params": {"é": 1}})
            await http.post("https://localhost/mcp", content=b"raw\n bytes")
            await http.get("https://localhost/mcp")

    anyio.run(run)
    assert len(seen) == 3
    jtis = set()
    for req in seen:
        headers = dict(req.headers)
        proof = parse_proof(headers).payload
        assert proof["bdy"] == sha256_b64u(req.content)
        assert proof["aud"] == "aud" and proof["len"] == 1 and proof["iss"] == r.spiffe_id
        check_proof(headers)
        jtis.add(proof["jti"])
    assert len(jtis) == 3
    assert json.loads(seen[0].content)["params"] == {"é": 1}


def test_an_empty_history_adds_no_headers(tmp_path: Path) -> None:
    r = make_svid(SA + "refund-agent")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(r.cert_chain_pem())
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(204)

    async def run() -> None:
        transport = httpx2.MockTransport(handler)
        async with custody_client.client(r, history=lambda: History(), audience="aud", ca_bundle=bundle, transport=transport) as http:
            await http.post("https://localhost/mcp", content=b"{}")

    anyio.run(run)
    assert "workflow-history" not in seen[0].headers
