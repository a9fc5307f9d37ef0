"""Trust bundles that rotate without a configuration push, through a real
Envoy: `trust_domains.example.org.bundle_endpoint` names the shipped
`spire_bundle` cluster (envoy/bundle-endpoint/envoy.yaml, https_spiffe),
aimed at a bundle endpoint served here over HTTPS. Nothing of example.org is
trusted before the first good answer; a bundle with a higher
`spiffe_sequence` takes effect for history signers and callers within the
refresh period, on every worker; a lower or equal sequence, a failing,
garbled, slow or foreign endpoint changes nothing; a bundle not confirmed for
`max_age_seconds` is withdrawn, and comes back with the endpoint; a new
configuration starts from the newest bundle this Envoy fetched, not from an
older configured one; and an endpoint that cannot prove its identity is
never asked."""

from __future__ import annotations

import json
import re
import time

import pytest
from mcp.shared.exceptions import MCPError

from custody_testkit.agent import call_tool
from custody_testkit.bundle_endpoint import PATH, BundleEndpoint, spiffe_bundle
from custody_testkit.cli import DevTrustDomain, History, custody
from custody_testkit.envoy import Envoy
from custody_testkit.policies import NS, REFUNDS_NEED_APPROVAL as POLICY
from custody_testkit.etcd import add_cluster

# Short enough for a test; the documented ranges allow it.
ENDPOINT = {"cluster": "spire_bundle", "path": PATH, "authority": "localhost",
            "refresh_seconds": 1, "timeout_ms": 500, "max_age_seconds": 10}


class Ca:
    """One CA of example.org with its approver and refund agent."""

    def __init__(self, root, name):
        self.td = DevTrustDomain(root / name)
        self.dir = self.td.root / "ca"
        self.approvals = self.td.issue("approvals", NS + "approvals")
        self.refund = self.td.issue("refund", NS + "refund-agent")


@pytest.fixture(scope="module")
def world(tmp_path_factory, tool_server):
    root = tmp_path_factory.mktemp("bundle-endpoint")
    ca1, ca2, ca3 = Ca(root, "ca1"), Ca(root, "ca2"), Ca(root, "ca3")
    other = DevTrustDomain(root / "other", trust_domain="other.org")
    server = ca1.td.issue("server", "/ns/payments/sa/refund-tool", "--dns", "localhost")
    # The endpoint's own SVID (https_spiffe), from the trust domain's first CA.
    spire = BundleEndpoint.spiffe_id().removeprefix("spiffe://example.org")
    endpoint_svid = ca1.td.issue("spire-server", spire, "--dns", "localhost")
    listener_trust = root / "all.pem"  # Envoy's own TLS trust: every CA, throughout
    listener_trust.write_text("".join(ca.td.bundle.read_text() for ca in (ca1, ca2, ca3)))
    policy_file = root / "policy.yaml"
    policy_file.write_text(POLICY)
    policy = json.loads(custody("policy", "compile", policy_file))

    def config(**source) -> dict:
        domain = {"bundle_endpoint": ENDPOINT, **source}
        return {"audience": server.spiffe_id, "trust_domains": {"example.org": domain}, "policy": policy}

    with BundleEndpoint(endpoint_svid.cert, endpoint_svid.key) as endpoint:
        envoy = Envoy(
            root / "envoy", bundle=listener_trust, server_cert=server.cert, server_key=server.key,
            upstream_port=tool_server.port, plugin_config=config(), dynamic=True,
            mutate=add_cluster(endpoint.envoy_cluster(trusted_ca=ca1.td.bundle)),
        )
        with envoy:
            yield {"envoy": envoy, "endpoint": endpoint, "server": server, "config": config,
                   "ca1": ca1, "ca2": ca2, "ca3": ca3, "other": other, "root": root, "listener_trust": listener_trust,
                   "tool_server": tool_server}


def refund(world, caller: Ca, approver: Ca, envoy: Envoy | None = None) -> str:
    """`caller`'s refund agent calls `refund` with an approval signed by
    `approver`'s approvals: "allow", or the refusal's reason code."""
    envoy = envoy or world["envoy"]
    history = History(world["root"] / f"h-{time.monotonic_ns()}.json")
    history.append(approver.approvals, "human_approval", caller.refund, claims={"amount": 10})
    try:
        call_tool(envoy.url, world["listener_trust"], caller.refund, "refund", {"order_id": "o", "amount": 10},
                  history=history, audience=world["server"].spiffe_id)
        return "allow"
    except MCPError as err:
        return err.error.data["reason"]


def eventually(check, want: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = check()
        if got == want:
            return
        time.sleep(0.2)
    raise AssertionError(f"still {got!r}, wanted {want!r} after {timeout} s")


def counter(envoy: Envoy, name: str) -> int:
    return envoy.counters().get(f"wasmcustom.custody_bundle_{name}", 0)


def grows(envoy: Envoy, name: str, by: int = 2, timeout: float = 10.0) -> None:
    """Waits until the counter has grown by `by`: that many more fetches were judged."""
    start = counter(envoy, name)
    deadline = time.monotonic() + timeout
    while counter(envoy, name) < start + by:
        assert time.monotonic() < deadline, f"custody_bundle_{name} stayed at {counter(envoy, name)}"
        time.sleep(0.2)


def test_rotation_reaches_envoy_without_a_configuration_change(world):
    envoy, endpoint = world["envoy"], world["endpoint"]
    ca1, ca2, ca3 = world["ca1"], world["ca2"], world["ca3"]
    pushes = envoy.log().count("custody: configured")

    # 1. Before the first good answer nothing of example.org is trusted.
    grows(envoy, "fetch_failed", by=1)
    assert refund(world, ca1, ca1) == "no_identity"

    # 2. The endpoint serves CA1 (sequence 1): CA1 works, CA2 does not.
    endpoint.serve(spiffe_bundle(1, ca1.dir))
    eventually(lambda: refund(world, ca1, ca1), "allow")
    time.sleep(1.5)  # one tick on every VM
    assert refund(world, ca1, ca2) == "cert_untrusted"  # history signed under CA2
    assert refund(world, ca2, ca2) == "no_identity"  # a caller of CA2

    # 3. CA1 + CA2 at a higher sequence: both accepted, by every worker.
    endpoint.serve(spiffe_bundle(2, ca1.dir, ca2.dir))
    eventually(lambda: refund(world, ca2, ca2), "allow")
    time.sleep(1.5)  # one tick on every VM
    assert [refund(world, c, a) for c, a in [(ca2, ca2), (ca1, ca2), (ca2, ca1), (ca1, ca1)] * 2] == ["allow"] * 8
    assert re.search(r"example\.org: spiffe_sequence 2 in effect \(was 1\)", envoy.log())

    # 4. A lower sequence with only CA3: ignored.
    endpoint.serve(spiffe_bundle(1, ca3.dir))
    grows(envoy, "rejected")
    assert "spiffe_sequence 1 is lower than 2, the newest this Envoy has: ignored" in envoy.log()
    assert refund(world, ca3, ca3) == "no_identity"
    assert refund(world, ca2, ca1) == "allow"

    # 5. The same sequence with other contents changes nothing either.
    endpoint.serve(spiffe_bundle(2, ca3.dir))
    grows(envoy, "fetched")
    assert refund(world, ca3, ca3) == "no_identity"
    assert refund(world, ca2, ca2) == "allow"

    # 6. Failures and bad answers: the last good bundle stays, nothing widens.
    good = spiffe_bundle(2, ca1.dir, ca2.dir)
    foreign = spiffe_bundle(9, ca3.dir, world["other"].root / "ca")  # other.org's CA among the keys
    for break_it, counted in [
        (lambda: endpoint.fail(500), "fetch_failed"),
        (endpoint.garbage, "rejected"),
        (lambda: endpoint.stall(spiffe_bundle(3, ca3.dir), 1.5), "fetch_failed"),  # past timeout_ms
        (lambda: endpoint.serve(foreign), "rejected"),
        (lambda: endpoint.serve(spiffe_bundle(None, ca3.dir)), "rejected"),  # no spiffe_sequence
    ]:
        break_it()
        grows(envoy, counted, by=1)
        assert refund(world, ca3, ca3) == "no_identity"
        assert refund(world, ca2, ca2) == "allow"
        endpoint.serve(good)  # confirmed again (max_age_seconds is 10 here)
        grows(envoy, "fetched", by=1)
    log = envoy.log()
    assert "fetch from cluster 'spire_bundle' path /bundle: HTTP status 500; the bundle in effect stays" in log
    assert "the bundle is not JSON" in log
    assert "of another trust domain than example.org" in log
    assert "the bundle has no spiffe_sequence" in log
    # Sequence 9 was refused whole, so it did not raise the bar either:
    endpoint.serve(spiffe_bundle(3, ca1.dir, ca2.dir, ca3.dir))
    eventually(lambda: refund(world, ca3, ca3), "allow")
    endpoint.serve(spiffe_bundle(4, ca1.dir, ca2.dir))
    eventually(lambda: refund(world, ca3, ca3), "no_identity")

    # 7. Down for longer than max_age_seconds: the bundle is withdrawn, on every VM.
    endpoint.fail(503)
    eventually(lambda: refund(world, ca1, ca1), "no_identity", timeout=20)
    time.sleep(1.5)  # one tick on every VM
    assert [refund(world, c, c) for c in (ca1, ca2) * 2] == ["no_identity"] * 4
    assert "no good answer from the bundle endpoint for 10 s (max_age_seconds)" in envoy.log()
    assert counter(envoy, "stale") >= 2  # each VM counts its own
    back = envoy.log().count("the bundle is in effect again")
    endpoint.serve(spiffe_bundle(4, ca1.dir, ca2.dir))
    eventually(lambda: refund(world, ca1, ca1), "allow")
    assert envoy.log().count("the bundle is in effect again") > back

    # None of this was a configuration change.
    assert envoy.log().count("custody: configured") == pushes


def test_a_new_configuration_starts_from_the_newest_fetched_bundle(world):
    """An LDS update while the endpoint is down: the new listener's VMs start
    from the bundle this Envoy last fetched (sequence 4: CA1 + CA2), not from
    the older bundle configured inline (a PEM of CA1 alone)."""
    envoy, endpoint, ca1, ca2 = world["envoy"], world["endpoint"], world["ca1"], world["ca2"]
    endpoint.serve(spiffe_bundle(4, ca1.dir, ca2.dir))
    grows(envoy, "fetched", by=1)  # confirmed just now: fresh for max_age_seconds
    endpoint.fail(503)
    starts = envoy.log().count("starting from spiffe_sequence 4")
    envoy.update(world["config"](bundle_pem=ca1.td.bundle.read_text()))
    deadline = time.monotonic() + 20
    while envoy.log().count("starting from spiffe_sequence 4") == starts:
        assert time.monotonic() < deadline, envoy.log()[-3000:]
        time.sleep(0.2)
    time.sleep(1)  # the old listener drains
    assert [refund(world, ca2, ca2) for _ in range(4)] == ["allow"] * 4
    assert "starting from the configured bundle_pem" not in envoy.log()
    assert "configuration refused" not in envoy.log()
    endpoint.serve(spiffe_bundle(4, ca1.dir, ca2.dir))


def test_an_endpoint_that_cannot_prove_its_identity_is_not_believed(world, tmp_path):
    """The same endpoint behind a cluster that expects another SPIFFE ID:
    Envoy's TLS check fails, so its bundle (CA2 at a high sequence) is never
    used and example.org stays untrusted."""
    ca1, ca2 = world["ca1"], world["ca2"]
    cluster = world["endpoint"].envoy_cluster(trusted_ca=ca1.td.bundle)
    validation = cluster["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]
    validation["match_typed_subject_alt_names"][0]["matcher"]["exact"] = "spiffe://example.org/not/the/endpoint"
    world["endpoint"].serve(spiffe_bundle(50, ca1.dir, ca2.dir))
    server = world["server"]
    with Envoy(tmp_path / "impostor", bundle=world["listener_trust"], server_cert=server.cert,
               server_key=server.key, upstream_port=world["tool_server"].port,
               plugin_config=world["config"](), mutate=add_cluster(cluster)) as impostor:
        grows(impostor, "fetch_failed", by=2)
        assert counter(impostor, "fetched") == 0
        assert refund(world, ca1, ca1, envoy=impostor) == "no_identity"
        assert "fetch from cluster 'spire_bundle' path /bundle: " in impostor.log()
    world["endpoint"].serve(spiffe_bundle(4, ca1.dir, ca2.dir))
