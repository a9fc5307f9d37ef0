"""The shared ledger on etcd, through real processes: a 3-member etcd 3.5
cluster on loopback (client TLS, as envoy/etcd/cluster.yaml ships it) and two
Envoys (replicas) with one plugin configuration, `"ledger": {"backend":
"etcd"}`. A proof, and a single-use approval, authorise one call across the
replicas, also after they restart and when both are asked at the same instant;
etcd failures refuse the requests that need the ledger (503
`ledger_unavailable`), never allow them, and block nothing else."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from contextlib import ExitStack

import httpx2
import pytest

from conftest import tls_context
from custody_testkit.agent import svid
from custody_testkit.cli import custody
from custody_testkit.envoy import Envoy
from custody_testkit.etcd import DelayProxy, EtcdCluster, add_cluster

from custody_client import History, prove  # noqa: E402  (on sys.path through custody_testkit.agent)

PREFIX = f"custody-test-{uuid.uuid4().hex[:8]}/"
CLUSTER = "custody_etcd"
ROUNDS = 50


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    with EtcdCluster(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def single_use_policy(td, tmp_path_factory) -> dict:
    """Refunds need a fraud check and an approval that authorises one call."""
    path = tmp_path_factory.mktemp("ledger-policy") / "policy.yaml"
    path.write_text(
        f"""
rules:
- name: lifecycle
  callers: ["spiffe://example.org/**"]
  methods: [initialize, ping, "notifications/*", tools/list, "http:GET", "http:DELETE"]
- name: refunds
  callers: ["{td.refund.spiffe_id}"]
  methods: [tools/call]
  tools: [refund]
  require:
  - step: fraud_check_passed
    by: ["{td.fraud.spiffe_id}"]
  - step: human_approval
    by: ["{td.approvals.spiffe_id}"]
    single_use: true
"""
    )
    return json.loads(custody("policy", "compile", path))


def plugin_config(td, policy, cluster=CLUSTER, timeout_ms=250) -> dict:
    return {
        "audience": td.server.spiffe_id,
        "trust_domains": {"example.org": {"bundle_pem": td.bundle.read_text()}},
        "paths": ["/mcp"],
        "ledger": {"backend": "etcd", "etcd": {"cluster": cluster, "prefix": PREFIX, "timeout_ms": timeout_ms}},
        "policy": policy,
    }


class Replicas:
    """Envoys A and B: one configuration, one etcd."""

    def __init__(self, root, etcd, td, tool_server, config):
        self.root, self.etcd, self.td, self.tool_server, self.config = root, etcd, td, tool_server, config
        self.stack = ExitStack()
        self.generation = 0
        self.start()

    def start(self) -> None:
        self.generation += 1
        self.a, self.b = (
            self.stack.enter_context(
                Envoy(
                    self.root / f"{name}{self.generation}",
                    bundle=self.td.bundle,
                    server_cert=self.td.server.cert,
                    server_key=self.td.server.key,
                    upstream_port=self.tool_server.port,
                    plugin_config=self.config,
                    mutate=add_cluster(self.etcd.envoy_cluster(CLUSTER)),
                )
            )
            for name in "ab"
        )

    def restart(self) -> None:
        self.stack.close()
        self.stack = ExitStack()
        self.start()


@pytest.fixture(scope="module")
def replicas(etcd, td, tool_server, single_use_policy, tmp_path_factory):
    r = Replicas(tmp_path_factory.mktemp("replicas"), etcd, td, tool_server, plugin_config(td, single_use_policy))
    yield r
    r.stack.close()


# --- requests ---


def approval(td, amount=100) -> History:
    """fraud-agent → approvals → refund-agent: a fresh single-use approval."""
    h = History().append(svid(td.fraud), step="fraud_check_passed", next=td.approvals.spiffe_id)
    return h.append(svid(td.approvals), step="human_approval", next=td.refund.spiffe_id, claims={"amount": amount})


def refund_body(marker: str) -> bytes:
    call = {"name": "refund", "arguments": {"order_id": marker, "amount": 100}}
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}).encode()


def signed(td, history: History | None, body: bytes) -> dict:
    """The request headers, with a fresh proof of `history` over `body`."""
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if history is not None:
        headers.update(prove(history, svid(td.refund), audience=td.server.spiffe_id, body=body))
    return headers


def client(td) -> httpx2.Client:
    return httpx2.Client(verify=tls_context(td.bundle, td.refund), timeout=20)


def reason(response: httpx2.Response) -> str | None:
    """Custody's reason code, or None when Custody let the request through
    (the MCP server's own answer carries none)."""
    try:
        return response.json()["error"]["data"]["reason"]
    except (ValueError, KeyError, TypeError):
        return None


def send(http, envoy, td, history, marker=None, headers=None) -> str | None:
    body = refund_body(marker or uuid.uuid4().hex)
    r = http.post(envoy.url, content=body, headers=headers or signed(td, history, body))
    return reason(r)


def reached_upstream(tool_server, marker: str) -> int:
    return sum(marker in r["body"] for r in tool_server.seen())


def ping(http, envoy) -> str | None:
    """An identity-only request: no history, a rule that needs none."""
    body = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "ping"}).encode()
    return reason(http.post(envoy.url, content=body, headers={"content-type": "application/json", "accept": "application/json, text/event-stream"}))


def detail(envoy, reason_code: str) -> str:
    """The log detail of the latest decision refused with `reason_code`."""
    for d in reversed(envoy.decisions()):
        if d["reason"] == reason_code:
            return d["detail"] or ""
    raise AssertionError(f"no {reason_code} decision")


# --- the scenarios ---


def test_a_proof_accepted_at_one_replica_is_refused_at_the_other(replicas, td, etcd, tool_server):
    body = refund_body(marker := uuid.uuid4().hex)
    headers = signed(td, approval(td), body)
    with client(td) as http:
        assert reason(http.post(replicas.a.url, content=body, headers=headers)) is None
        assert reason(http.post(replicas.b.url, content=body, headers=headers)) == "proof_replayed"
        assert detail(replicas.b, "proof_replayed").endswith("(etcd)")
        # A again: refused by the local fast path, without asking etcd.
        assert reason(http.post(replicas.a.url, content=body, headers=headers)) == "proof_replayed"
        assert detail(replicas.a, "proof_replayed").endswith("(this Envoy)")
    assert reached_upstream(tool_server, marker) == 1


def test_the_keys_in_etcd_are_hashes_that_expire_with_their_lease(replicas, td, etcd):
    with client(td) as http:
        assert send(http, replicas.a, td, approval(td, amount=4242)) is None
    keys = etcd.keys(PREFIX)
    assert keys
    now = time.time()
    for key, kv in keys.items():
        assert re.fullmatch(re.escape(PREFIX) + r"(jti|once)/[A-Za-z0-9_-]{43}", key), key
        horizon = int(kv["value"])
        assert now - 120 < horizon < now + 3 * 3600, kv
        assert kv["lease"] > 0
        # The lease outlives the horizon by less than one bucket plus the margin.
        expires = now + etcd.lease_ttl(kv["lease"])
        assert horizon <= expires + 2 <= horizon + 3600 + 300 + 5, (key, horizon, expires)
    text = json.dumps(keys)
    for secret in ("example.org", "refund", "4242", td.refund.spiffe_id):
        assert secret not in text
    assert {k.split("/")[1] for k in keys} == {"jti", "once"}


def test_a_single_use_approval_authorises_one_call_across_replicas_and_restarts(replicas, td, tool_server):
    h = approval(td)
    marker = uuid.uuid4().hex
    with client(td) as http:
        assert send(http, replicas.a, td, h, marker) is None
        assert send(http, replicas.b, td, h, marker) == "step_consumed"
        assert detail(replicas.b, "step_consumed").endswith("(etcd)")
    replicas.restart()  # nothing local survives
    with client(td) as http:
        assert send(http, replicas.a, td, h, marker) == "step_consumed"
        assert send(http, replicas.b, td, h, marker) == "step_consumed"
        assert send(http, replicas.b, td, approval(td)) is None, "a new approval still works"
    assert reached_upstream(tool_server, marker) == 1


def test_the_same_approval_at_both_replicas_at_once_is_allowed_exactly_once(replicas, td, tool_server):
    outcomes = []
    markers = []
    with client(td) as at_a, client(td) as at_b:
        # Connections up before the first round, so both requests leave together.
        assert ping(at_a, replicas.a) is None and ping(at_b, replicas.b) is None
        for _ in range(ROUNDS):
            h = approval(td)
            marker = uuid.uuid4().hex
            markers.append(marker)
            jobs = [(at_a, replicas.a), (at_b, replicas.b)]
            prepared = [(http, envoy, signed(td, h, refund_body(marker))) for http, envoy in jobs]
            barrier = threading.Barrier(2)
            got: list = [None, None]

            def go(i: int) -> None:
                http, envoy, headers = prepared[i]
                barrier.wait()
                got[i] = send(http, envoy, td, None, marker, headers)

            threads = [threading.Thread(target=go, args=(i,)) for i in (0, 1)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
            outcomes.append(tuple(got))
    for round_, got in enumerate(outcomes):
        assert sorted(got, key=str) == [None, "step_consumed"], f"round {round_}: {got}"
    assert all(reached_upstream(tool_server, m) == 1 for m in markers)


def allowed_within(http, envoy, td, seconds: float) -> bool:
    """A fresh approval is allowed within `seconds` (etcd recovering)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if send(http, envoy, td, approval(td)) is None:
            return True
        time.sleep(0.2)
    return False


def test_etcd_members_stopping_and_coming_back(replicas, td, etcd):
    m0, m1, _ = etcd.members
    with client(td) as http:
        # One member down: quorum holds, every request works.
        m0.stop()
        etcd.wait_healthy()
        for envoy in (replicas.a, replicas.b):
            for _ in range(5):
                assert send(http, envoy, td, approval(td)) is None
            assert ping(http, envoy) is None
        # Two down: no quorum. History requests are refused, never allowed;
        # identity-only requests do not notice.
        m1.stop()
        for envoy in (replicas.a, replicas.b):
            h = approval(td)
            assert send(http, envoy, td, h) == "ledger_unavailable"
            assert ping(http, envoy) is None
            # A request whose rule needs no history does not ask etcd either.
            body = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {}}).encode()
            assert reason(http.post(envoy.url, content=body, headers=signed(td, h, body))) is None
        # Members back: Custody recovers by itself.
        m0.start()
        m1.start()
        etcd.wait_healthy()
        for envoy in (replicas.a, replicas.b):
            assert allowed_within(http, envoy, td, 30), envoy.log()[-3000:]
    counters = replicas.a.counters()
    assert counters["wasmcustom.custody_denied_ledger_unavailable"] >= 1
    # Envoy did meet the stopped members (and retried or avoided them).
    failed = sum(
        int(e.admin("/stats?filter=custody_etcd.upstream_cx_connect_fail$").split(":")[1])
        for e in (replicas.a, replicas.b)
    )
    assert failed >= 1


def test_leases_lost_in_etcd_are_granted_again(replicas, td, etcd):
    """etcd's data lost or restored: the leases Custody knew are gone. The
    transaction that names one fails whole; Custody grants again and retries."""
    with client(td) as http:
        assert send(http, replicas.a, td, approval(td)) is None
        leases = {kv["lease"] for kv in etcd.keys(PREFIX).values()}
        assert leases
        for lease in leases:
            etcd.call("/v3/lease/revoke", {"ID": str(lease)})
        assert etcd.keys(PREFIX) == {}, "revoking a lease deletes its keys"
        for envoy in (replicas.a, replicas.b):
            assert send(http, envoy, td, approval(td)) is None
        assert any("etcd lost a lease; granting them again" in e.log() for e in (replicas.a, replicas.b))


def test_an_unknown_envoy_cluster_refuses_what_needs_the_ledger(td, tool_server, single_use_policy, tmp_path):
    with Envoy(
        tmp_path / "typo",
        bundle=td.bundle,
        server_cert=td.server.cert,
        server_key=td.server.key,
        upstream_port=tool_server.port,
        plugin_config=plugin_config(td, single_use_policy, cluster="custody_etdc"),
    ) as envoy, client(td) as http:
        assert send(http, envoy, td, approval(td)) == "ledger_unavailable"
        assert "custody_etdc" in detail(envoy, "ledger_unavailable")
        assert ping(http, envoy) is None
        # The root context's first grant, soon after start, says why too.
        envoy.wait_for_text("cannot grant leases in etcd")


def test_a_slow_etcd_is_refused_and_blocks_nothing_else(etcd, td, tool_server, single_use_policy, tmp_path):
    """etcd answering later than timeout_ms: the request is refused (503), and
    the worker serves other requests while it waits (one worker here)."""
    member = etcd.running()[0]
    timeout_ms = 1500
    with DelayProxy(member.client_port) as proxy, Envoy(
        tmp_path / "slow",
        bundle=td.bundle,
        server_cert=td.server.cert,
        server_key=td.server.key,
        upstream_port=tool_server.port,
        plugin_config=plugin_config(td, single_use_policy, cluster="slow_etcd", timeout_ms=timeout_ms),
        mutate=add_cluster(etcd.envoy_cluster("slow_etcd", ports=[proxy.port])),
        concurrency=1,
    ) as envoy, client(td) as http, client(td) as other:
        assert send(http, envoy, td, approval(td)) is None, "through the proxy, undelayed"
        proxy.delay = 3.0
        done = {}

        def slow() -> None:
            done["reason"] = send(http, envoy, td, approval(td))
            done["at"] = time.monotonic()

        started = time.monotonic()
        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.2)  # the slow request is now waiting for etcd
        pings = []
        for _ in range(5):
            assert ping(other, envoy) is None
            pings.append(time.monotonic())
        t.join(timeout=30)
        assert done["reason"] == "ledger_unavailable"
        assert max(pings) < done["at"], "the other requests did not wait for the slow one"
        assert done["at"] - started < 3.0, "refused at timeout_ms, not when etcd answered"
        assert "etcd" in detail(envoy, "ledger_unavailable")
        proxy.delay = 0.0
