"""Metrics through real Envoy, against the docs (docs/replies.md, Metrics;
docs/operations.md): after traffic, every metric name the docs list exists on
/stats and on /stats/prometheus, and every Custody metric Envoy emits is
documented. The decision-latency histogram counts every decision; the
build-info gauge and the configure log line carry the policy's SHA-256, the
same `custody policy render` writes as `custody.dev/policy-sha256`."""

from __future__ import annotations

import json
import re
import subprocess
import time

import httpx2
import pytest
import yaml

from conftest import AGENT, CUSTODY, tls_context
from custody_testkit.envoy import REPO, Envoy

DOCS = {name: (REPO / "docs" / name).read_text() for name in ("replies.md", "operations.md")}
MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
POLICY = """
rules:
- name: {name}
  callers: ["{agent}"]
  methods: [initialize, tools/list, tools/call]
"""


def documented_metrics() -> list[tuple[str, list[str]]]:
    """(the /stats name, the /stats/prometheus names) of each row of replies.md's metrics table."""
    rows = []
    for line in DOCS["replies.md"].split("## Metrics", 1)[1].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`wasmcustom."):
            rows.append((cells[0].strip("`"), re.findall(r"`([^`]+)`", cells[1])))
    return rows


def reason_codes() -> set[str]:
    """The reason codes of replies.md's table and of history-format.md."""
    table = set(re.findall(r"^\| `([a-z0-9_]+)` \| \d{3}", DOCS["replies.md"], re.M))
    history = set(re.findall(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`", (REPO / "docs" / "history-format.md").read_text()))
    return table | history


def pattern(documented: str) -> re.Pattern:
    """A documented name with `<placeholders>` as a regex over emitted names."""
    parts = re.split(r"(<[a-z0-9_]+>)", documented)
    return re.compile("".join("(.+?)" if p.startswith("<") else re.escape(p) for p in parts) + "$")


def prom_name_and_labels(documented: str) -> tuple[str, set[str]]:
    """`custody_build_info{plugin,version}` → ('custody_build_info', {'plugin', 'version'})."""
    name, _, labels = documented.partition("{")
    return name, {l for l in labels.rstrip("}").split(",") if l}


def scrape(envoy) -> tuple[dict[str, str], dict[str, list[dict]]]:
    """Custody's /stats lines (name → value) and /stats/prometheus samples (name → label sets)."""
    stats = {}
    for line in envoy.admin("/stats").splitlines():
        name, _, value = line.partition(": ")
        if name.startswith("wasmcustom."):
            stats[name] = value
    prom: dict[str, list[dict]] = {}
    for line in envoy.admin("/stats/prometheus").splitlines():
        found = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
        if found and "custody" in found.group(1):
            labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', found.group(2) or ""))
            prom.setdefault(found.group(1), []).append({**labels, "__value__": found.group(3)})
    return stats, prom


def compile_policy(tmp_path, rule_name: str) -> tuple[dict, str]:
    """The policy rendered by `custody policy render --as envoy-filter`: its
    plugin configuration and the `custody.dev/policy-sha256` it announces."""
    path = tmp_path / f"{rule_name}.yaml"
    path.write_text(POLICY.format(name=rule_name, agent=AGENT))
    rendered = subprocess.run(
        [str(CUSTODY), "policy", "render", str(path), "--as", "envoy-filter"], capture_output=True, text=True, check=True
    ).stdout
    (sha,) = re.findall(r"^# custody\.dev/policy-sha256: ([0-9a-f]{64})$", rendered, re.M)
    config = yaml.safe_load(rendered)["typed_config"]["config"]["configuration"]["value"]
    compiled = subprocess.run([str(CUSTODY), "policy", "compile", str(path)], capture_output=True, check=True).stdout
    import hashlib

    assert hashlib.sha256(compiled).hexdigest() == sha, "the annotation is the compiled bundle's SHA-256"
    return json.loads(config), sha


def fast_flush(boot: dict) -> None:
    boot["stats_flush_interval"] = "1s"  # histograms reach the admin endpoints on a flush


def traffic(envoy, pki) -> int:
    """Allowed and denied requests; returns how many decisions were made."""
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "m", "version": "1"}}}
    with httpx2.Client(verify=tls_context(pki["bundle"], pki["agent"]), timeout=15) as http:
        for body in [init, init, {"jsonrpc": "2.0", "id": 2, "method": "ping"}, b"{oops"]:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            http.post(envoy.url, content=content, headers=MCP_HEADERS)
    with httpx2.Client(verify=tls_context(pki["bundle"], pki["intruder"]), timeout=15) as http:
        http.post(envoy.url, content=json.dumps(init), headers=MCP_HEADERS)
    return 5


def wait_for(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_the_docs_list_every_custody_metric_and_every_listed_one_exists(start_envoy, pki, tmp_path):
    config, sha = compile_policy(tmp_path, "metrics")
    with start_envoy(config, mutate=fast_flush) as envoy:
        decisions = traffic(envoy, pki)

        def scraped():
            stats, prom = scrape(envoy)
            count = prom.get("custody_decision_latency_us_count", [{}])[0].get("__value__")
            assert count is not None and int(float(count)) >= decisions, count
            return stats, prom

        stats, prom = wait_for(scraped)
    rows = documented_metrics()
    assert len(rows) >= 5, rows
    codes = reason_codes()
    assert {"signature_invalid", "proof_replayed", "cert_untrusted"} <= codes

    # Every documented name exists on both endpoints; `<reason>`: every code of the reasons table.
    table = set(re.findall(r"^\| `([a-z0-9_]+)` \| \d{3}", DOCS["replies.md"], re.M))
    assert {"no_rule", "config_invalid", "rego_error"} <= table
    for stats_name, prom_names in rows:
        if "<reason>" in stats_name:
            for code in table:
                assert stats_name.replace("<reason>", code) in stats, f"no counter for {code}"
                for documented in prom_names:
                    assert documented.replace("<reason>", code) in prom, f"no Prometheus counter for {code}"
            continue
        assert any(pattern(stats_name).match(n) for n in stats), f"{stats_name} not on /stats"
        for documented in prom_names:
            name, labels = prom_name_and_labels(documented)
            assert name in prom, f"{name} not on /stats/prometheus"
            assert all(labels <= set(sample) for sample in prom[name]), (name, prom[name])

    # Every Custody metric Envoy emits is documented.
    stats_patterns = [pattern(s) for s, _ in rows]
    for name in stats:
        assert name.startswith("wasmcustom.custody_"), name
        assert any(p.match(name) for p in stats_patterns), f"undocumented: {name}"
        if name.startswith("wasmcustom.custody_denied_"):
            assert name.removeprefix("wasmcustom.custody_denied_") in codes, f"undocumented reason: {name}"
    prom_documented = [prom_name_and_labels(p)[0] for _, ps in rows for p in ps]
    prom_patterns = [pattern(p) for p in prom_documented]
    for name in prom:
        if name.startswith("envoy_"):
            continue  # Envoy's own wasm runtime stats, not Custody's
        assert any(p.match(name) for p in prom_patterns), f"undocumented on Prometheus: {name}"

    # operations.md names only metrics that exist.
    metrics_section = DOCS["operations.md"].split("## Metrics", 1)[1].split("\n## ", 1)[0]
    named_in_ops = set(re.findall(r"`(custody_[a-z0-9_]+)", metrics_section))
    named_in_ops |= set(re.findall(r"\b(custody_[a-z0-9_]+)(?:\[|\{)", metrics_section))  # PromQL
    assert {"custody_denied_config_invalid", "custody_build_info", "custody_decision_latency_us_bucket"} <= named_in_ops
    for named in named_in_ops - {"custody_build_info_plugin_custody_version_0_1_0_revision_"}:  # without stats_tags
        assert named in prom or any(n.startswith(named) for n in prom), f"operations.md names {named}"

    # The values: decisions counted once each, and the build info of this policy.
    assert int(stats["wasmcustom.custody_denied_no_rule"]) == 2  # ping, and the intruder
    assert int(stats["wasmcustom.custody_denied_malformed_json"]) == 1
    assert int(stats["wasmcustom.custody_allowed"]) == 2
    assert stats["wasmcustom.custody_decision_latency_us"].startswith("P0("), stats["wasmcustom.custody_decision_latency_us"]
    (info,) = prom["custody_build_info"]
    assert info == {"plugin": "custody", "version": "0.1.0", "revision": info["revision"], "policy_sha256": sha, "__value__": "1"}
    assert re.fullmatch(r"[0-9a-f]{12}|unknown", info["revision"]), info
    buckets = prom["custody_decision_latency_us_bucket"]
    assert [b["__value__"] for b in buckets if b["le"] == "+Inf"] == [prom["custody_decision_latency_us_count"][0]["__value__"]]


def test_the_build_info_follows_configuration_updates(start_envoy, pki, tmp_path):
    blue, blue_sha = compile_policy(tmp_path, "blue")
    green, green_sha = compile_policy(tmp_path, "green")
    assert blue_sha != green_sha
    with start_envoy(blue, dynamic=True) as envoy:
        assert f"policy_sha256={blue_sha}" in envoy.log()

        def gauges() -> dict[str, str]:
            return {s["policy_sha256"]: s["__value__"] for s in scrape(envoy)[1]["custody_build_info"]}

        assert gauges() == {blue_sha: "1"}
        envoy.update(green)

        def switched():
            assert gauges() == {blue_sha: "0", green_sha: "1"}

        wait_for(switched, timeout=20)
        assert f"policy_sha256={green_sha}" in envoy.log()
        line = next(l for l in envoy.log().splitlines() if f"policy_sha256={green_sha}" in l)
        assert re.search(r"wasm log custody custody: configured: plugin=custody version=0\.1\.0 git=([0-9a-f]{12}|unknown) ", line), line
        assert "custody custody custody" not in envoy.log()
