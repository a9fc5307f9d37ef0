"""Hot reload under load: the plugin configuration is replaced through LDS
five times while clients keep calling. No request fails, and every decision
comes from one whole configuration or the other: never a half-loaded one."""

from __future__ import annotations

import json
import threading
import time

import httpx2

from conftest import AGENT, tls_context
from custody_testkit.envoy import Envoy

INIT = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "load", "version": "1"}},
}


def policy(rule_name: str) -> dict:
    return {"policy": {"rules": [
        {"name": rule_name, "callers": [AGENT], "methods": ["initialize"]},
    ]}}


def test_configuration_updates_under_load_drop_nothing(pki, tool_server, tmp_path):
    with Envoy(
        tmp_path / "envoy", bundle=pki["bundle"], server_cert=pki["server"].cert, server_key=pki["server"].key,
        upstream_port=tool_server.port, plugin_config=policy("blue"), dynamic=True,
    ) as envoy:
        stop = threading.Event()
        results: list[tuple[int, str]] = []
        errors: list[str] = []

        def client():
            with httpx2.Client(verify=tls_context(pki["bundle"], pki["agent"]), timeout=20) as http:
                while not stop.is_set():
                    try:
                        r = http.post(envoy.url, content=json.dumps(INIT),
                                      headers={"content-type": "application/json",
                                               "accept": "application/json, text/event-stream"})
                        results.append((r.status_code, r.text[:200]))
                    except httpx2.HTTPError as e:
                        errors.append(repr(e))

        workers = [threading.Thread(target=client) for _ in range(3)]
        for w in workers:
            w.start()
        for i in range(5):
            time.sleep(0.8)
            envoy.update(policy("green" if i % 2 == 0 else "blue"))
        # The last update is green: keep calling until it serves (LDS file
        # updates land later on a loaded machine), at most 30 s.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "green" not in {d["rule"] for d in envoy.decisions()[-20:]}:
            time.sleep(0.3)
        time.sleep(0.5)
        stop.set()
        for w in workers:
            w.join(30)

    assert not errors, errors[:3]
    assert len(results) > 50
    assert all(status == 200 for status, _ in results), [r for r in results if r[0] != 200][:3]
    rules = {d["rule"] for d in envoy.decisions()}
    reasons = {d["reason"] for d in envoy.decisions()}
    assert rules == {"blue", "green"}, rules  # both configurations served, nothing else
    assert reasons == {None}, reasons
    assert "configuration refused" not in envoy.log()
