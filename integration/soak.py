"""A bounded soak through real Envoy and the built filter.

Starts the example MCP tool server, a development trust domain (`custody ca`),
a policy compiled by `custody policy compile` (lifecycle, an `add` rule for the
agent, a `refund` rule with `require`), and Envoy with workflow history on
(`audience` + `trust_domains`). Then it sends a mix of concurrent valid and
hostile requests, each over a keep-alive mTLS client per workload, and checks
every single answer against the decision that request must get:

    class          caller    what                                        expected
    add            agent     tools/call add                              forwarded
    refund         refund    tools/call refund, a fresh proof            forwarded
    replay         refund    a refund already answered, sent again       403 proof_replayed
    intruder       intruder  tools/call add, no rule for this caller     403 no_rule
    other_tool     agent     tools/call delete_records                   403 no_rule
    malformed      agent     truncated JSON                              400 malformed_json
    duplicate_key  agent     "name" twice                                400 duplicate_key
    oversized      agent     body over limits.max_body_bytes             413 body_too_large
    oversized_chunked        the same, chunked (no content-length)       413 body_too_large
    forged         refund    entry 0's signature altered                 403 signature_invalid
    missing_step   refund    history without the approval                403 missing_step
    stolen         fraud     the refund agent's history, proved by fraud 403 proof_holder
    wrong_body     refund    a proof over another body                   403 proof_body

"Forwarded" means: not a Custody refusal (a JSON-RPC error whose
`error.data` has `reason`), and answered by the upstream
(`x-envoy-upstream-service-time`). The tool server answers these raw POSTs
itself (no MCP session: 4xx from the SDK), which is fine: only Custody's
decision is under test. Every body carries a unique marker in its JSON-RPC id;
afterwards the tool server's record must hold each forwarded marker exactly
once (a replay adds nothing) and no refused marker at all.

Memory: Envoy's `/memory` (`allocated`) and the process RSS are sampled every
2 s. The warm-up sample is the first one taken after 20 % of the run (by
requests or by time, whichever comes first); the run fails if the final
sample exceeds `warm-up × 1.5 + 16 MiB` for either figure. Why this bound: the
only state Custody keeps that grows with traffic is bounded by design -- the
replay cache (262,144 proofs per Envoy in shared data, about 35 bytes each,
so ≤ ~10 MiB even when full; here it holds the proofs of the last ~90 s) and
the per-VM certificate/entry caches (a few thousand entries, filled during
warm-up). 16 MiB absorbs a completely full replay cache; × 1.5 absorbs
allocator and V8 heap noise; a leak of 200 bytes per request over 100,000
requests (20 MB) still breaks it.

    python -m soak --requests 100000 --seconds 600   # from integration/
    python soak.py --requests 3000 --seconds 40

Exits 1 on any wrong decision, filter 5xx, transport error on a request that
should be forwarded, upstream leak, counter mismatch or memory growth.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import httpx2  # noqa: E402

from custody_testkit.cli import DevTrustDomain, History, custody  # noqa: E402
from custody_testkit.envoy import REPO, Envoy, free_port, stop_process, wait_for_port  # noqa: E402

sys.path.insert(0, str(REPO / "clients" / "python" / "src"))
import custody_client  # noqa: E402  (the library from the tree)

MiB = 1 << 20
MAX_BODY = 16384
MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
PAY = "/ns/payments/sa/"

# class -> (weight, expected): expected is None for "forwarded", else (status, reason)
CLASSES: dict[str, tuple[int, tuple[int, str] | None]] = {
    "add": (26, None),
    "refund": (20, None),
    "replay": (8, (403, "proof_replayed")),
    "intruder": (8, (403, "no_rule")),
    "other_tool": (5, (403, "no_rule")),
    "malformed": (7, (400, "malformed_json")),
    "duplicate_key": (5, (400, "duplicate_key")),
    "oversized": (2, (413, "body_too_large")),
    "oversized_chunked": (2, (413, "body_too_large")),
    "forged": (5, (403, "signature_invalid")),
    "missing_step": (4, (403, "missing_step")),
    "stolen": (4, (403, "proof_holder")),
    "wrong_body": (4, (403, "proof_body")),
}
FORWARDED = {name for name, (_, exp) in CLASSES.items() if exp is None}
REPLAY_MAX_AGE = 25.0  # s; proofs live 60 s (+30 s skew), so a replay is always `proof_replayed`
UPSTREAM_FAILURE = b"upstream connect error or disconnect/reset before headers"
MARKER = re.compile(r"soak-[a-z_]+-\d+-[0-9a-f]{8}")


# --- the environment ---------------------------------------------------------------


@dataclass
class Env:
    td: DevTrustDomain
    envoy: Envoy
    record: Path
    histories: dict[str, custody_client.History]
    svids: dict[str, custody_client.Svid]
    workloads: dict


def policy_yaml(td: DevTrustDomain, w: dict) -> str:
    return f"""
rules:
- name: lifecycle
  callers: ["spiffe://example.org/**"]
  methods: [server/discover, initialize, ping, "notifications/*", tools/list, jsonrpc:response, "http:GET", "http:DELETE"]
- name: calculator
  callers: ["{w['agent'].spiffe_id}"]
  methods: [tools/call]
  tools: [add]
- name: refunds
  callers: ["{w['refund'].spiffe_id}"]
  methods: [tools/call]
  tools: [refund]
  require:
  - step: fraud_check_passed
    by: ["spiffe://example.org{PAY}fraud-*"]
  - step: human_approval
    by: ["{w['approvals'].spiffe_id}"]
    within: 30m
"""


@contextmanager
def tool_server(workdir: Path):
    """The example MCP server, as conftest's `tool_server` fixture starts it."""
    record = workdir / "seen.jsonl"
    record.touch()
    port = free_port()
    with (workdir / "server.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "custody_testkit.tool_server", "--port", str(port), "--record", str(record)],
            cwd=HERE, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port)
            yield port, record
        finally:
            stop_process(proc)


def tamper_entry0(headers: dict) -> dict:
    """Changes one character of entry 0's signature (still canonical base64url)."""
    entries = headers["workflow-history"].split("~")
    head, payload, sig = entries[0].split(".")
    mid = len(sig) // 2
    sig = sig[:mid] + ("A" if sig[mid] != "A" else "B") + sig[mid + 1:]
    entries[0] = ".".join([head, payload, sig])
    return {**headers, "workflow-history": "~".join(entries)}


def upstream_idle_timeout(boot: dict) -> None:
    """Envoy drops idle upstream connections after 2 s, before uvicorn's 5 s
    keep-alive closes them under it (that race is a 503 "upstream connect
    error ... connection termination" that has nothing to do with Custody)."""
    cluster = boot["static_resources"]["clusters"][0]
    cluster["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "common_http_protocol_options": {"idle_timeout": "2s"},
            "explicit_http_config": {"http_protocol_options": {}},
        }
    }


@contextmanager
def environment(workdir: Path, max_body: int = MAX_BODY):
    td = DevTrustDomain(workdir / "dev-ca")
    w = {
        "server": td.issue("server", "/ns/tools/sa/mcp-server", "--dns", "localhost"),
        "agent": td.issue("agent", "/ns/demo/sa/agent"),
        "intruder": td.issue("intruder", "/ns/other/sa/intruder"),
        "fraud": td.issue("fraud", PAY + "fraud-agent"),
        "approvals": td.issue("approvals", PAY + "approvals"),
        "refund": td.issue("refund", PAY + "refund-agent"),
    }
    (workdir / "policy.yaml").write_text(policy_yaml(td, w))
    bundle = json.loads(custody("policy", "compile", workdir / "policy.yaml"))

    good = History(workdir / "good.json")
    good.append(w["fraud"], "fraud_check_passed", w["approvals"], claims={"order": "o-1"})
    good.append(w["approvals"], "human_approval", w["refund"], claims={"amount": 100})
    partial = History(workdir / "partial.json")
    partial.append(w["fraud"], "fraud_check_passed", w["refund"], claims={"order": "o-2"})
    histories = {
        "good": custody_client.History.parse(good.headers()),
        "partial": custody_client.History.parse(partial.headers()),
    }
    svids = {name: custody_client.Svid.from_files(wl.cert, wl.key) for name, wl in w.items()}

    config = {
        "mode": "enforce",
        "paths": ["/mcp"],
        "limits": {"max_body_bytes": max_body, "max_json_depth": 64},
        "audience": w["server"].spiffe_id,
        "trust_domains": {"example.org": {"bundle_pem": td.bundle.read_text()}},
        "policy": bundle,
    }
    with tool_server(workdir) as (port, record):
        with Envoy(
            workdir / "envoy", bundle=td.bundle, server_cert=w["server"].cert, server_key=w["server"].key,
            upstream_port=port, plugin_config=config, mutate=upstream_idle_timeout,
        ) as envoy:
            yield Env(td, envoy, record, histories, svids, w)


# --- requests ------------------------------------------------------------------------


@dataclass
class Request:
    cls: str
    who: str
    body: bytes
    headers: dict
    marker: str
    chunked: bool = False
    fresh_connection: bool = False


def call(rid, name: str, arguments: dict) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


class Generator:
    def __init__(self, env: Env):
        self.env = env
        self.aud = env.workloads["server"].spiffe_id
        self.n = 0
        self.lock = threading.Lock()
        # Refunds that were forwarded: (answered_at, body, headers, marker)
        self.answered: deque = deque(maxlen=512)

    def marker(self, cls: str) -> str:
        with self.lock:
            self.n += 1
            n = self.n
        return f"soak-{cls}-{n}-{uuid.uuid4().hex[:8]}"

    def prove(self, history: str, who: str, body: bytes, strict=True) -> dict:
        return custody_client.prove(
            self.env.histories[history], self.env.svids[who], audience=self.aud, body=body, strict=strict
        )

    def make(self, cls: str) -> Request:
        m = self.marker(cls)
        j = lambda v: json.dumps(v).encode()  # noqa: E731
        if cls == "add":
            return Request(cls, "agent", j(call(m, "add", {"a": 2, "b": 3})), {}, m)
        if cls == "refund":
            body = j(call(m, "refund", {"order_id": "o-1", "amount": 100}))
            return Request(cls, "refund", body, self.prove("good", "refund", body), m)
        if cls == "replay":
            now = time.monotonic()
            with self.lock:
                fresh = [a for a in self.answered if now - a[0] < REPLAY_MAX_AGE]
            if not fresh:
                return self.make("refund")
            _, body, headers, original = random.choice(fresh)
            return Request(cls, "refund", body, headers, original)
        if cls == "intruder":
            return Request(cls, "intruder", j(call(m, "add", {"a": 2, "b": 3})), {}, m)
        if cls == "other_tool":
            return Request(cls, "agent", j(call(m, "delete_records", {"table": "users"})), {}, m)
        if cls == "malformed":
            return Request(cls, "agent", j(call(m, "add", {"a": 1, "b": 2}))[:-7], {}, m)
        if cls == "duplicate_key":
            body = ('{"jsonrpc":"2.0","id":"%s","method":"tools/call","params":{"name":"add","name":"delete_records","arguments":{}}}' % m)
            return Request(cls, "agent", body.encode(), {}, m)
        if cls in ("oversized", "oversized_chunked"):
            body = j(call(m, "add", {"a": 1, "b": 2, "pad": "x" * (MAX_BODY + 4096)}))
            return Request(cls, "agent", body, {}, m, chunked=cls.endswith("chunked"), fresh_connection=True)
        if cls == "forged":
            body = j(call(m, "refund", {"order_id": "o-1", "amount": 100}))
            return Request(cls, "refund", body, tamper_entry0(self.prove("good", "refund", body)), m)
        if cls == "missing_step":
            body = j(call(m, "refund", {"order_id": "o-2", "amount": 100}))
            return Request(cls, "refund", body, self.prove("partial", "refund", body), m)
        if cls == "stolen":
            body = j(call(m, "refund", {"order_id": "o-1", "amount": 100}))
            return Request(cls, "fraud", body, self.prove("good", "fraud", body, strict=False), m)
        if cls == "wrong_body":
            body = j(call(m, "refund", {"order_id": "o-1", "amount": 100}))
            other = j(call(m, "refund", {"order_id": "o-1", "amount": 1}))
            return Request(cls, "refund", body, self.prove("good", "refund", other), m)
        raise ValueError(cls)


# --- results -------------------------------------------------------------------------


@dataclass
class Stats:
    counts: Counter = field(default_factory=Counter)
    wrong: Counter = field(default_factory=Counter)  # class -> wrong decisions
    wrong_examples: list = field(default_factory=list)
    filter_5xx: Counter = field(default_factory=Counter)
    upstream_5xx: Counter = field(default_factory=Counter)
    upstream_failures: Counter = field(default_factory=Counter)  # Envoy's own 503: allowed, upstream unreachable
    transport_errors: Counter = field(default_factory=Counter)  # on classes that must be forwarded
    resets: Counter = field(default_factory=Counter)  # refused classes answered by a reset (acceptable)
    forwarded_markers: set = field(default_factory=set)
    refused_markers: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def custody_reason(resp: httpx2.Response) -> str | None:
    """Custody's reason code if this response is a Custody refusal, else None."""
    if not resp.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        body = json.loads(resp.content)
        data = body["error"]["data"]
        return data["reason"] if isinstance(data, dict) and "decision_id" in data else None
    except (ValueError, KeyError, TypeError):
        return None


def judge(stats: Stats, gen: Generator, req: Request, resp: httpx2.Response | None, error: Exception | None):
    expected = CLASSES[req.cls][1]
    with stats.lock:
        stats.counts[req.cls] += 1
        if resp is None:
            if expected is None:
                stats.transport_errors[req.cls] += 1
                stats.wrong_examples.append((req.cls, f"transport error: {error!r}"))
            else:
                stats.resets[req.cls] += 1
            return
        reason = custody_reason(resp)
        from_upstream = "x-envoy-upstream-service-time" in resp.headers
        if reason is None and not from_upstream and resp.content.startswith(UPSTREAM_FAILURE):
            # Custody let it through; Envoy could not reach the tool server.
            stats.upstream_failures[req.cls] += 1
            if expected is not None:
                stats.wrong[req.cls] += 1
                stats.wrong_examples.append((req.cls, f"allowed, then {resp.status_code} {resp.text[:80]!r}"))
            return
        if resp.status_code >= 500:
            if reason is not None or not from_upstream:
                stats.filter_5xx[f"{resp.status_code} {reason or resp.text[:60]}"] += 1
            else:
                stats.upstream_5xx[req.cls] += 1
        if expected is None:
            ok = reason is None and from_upstream
            if ok:
                stats.forwarded_markers.add(req.marker)
        else:
            ok = reason is not None and (resp.status_code, reason) == expected
            if req.cls != "replay":
                stats.refused_markers.add(req.marker)
        if not ok:
            stats.wrong[req.cls] += 1
            if len(stats.wrong_examples) < 20:
                stats.wrong_examples.append((req.cls, f"{resp.status_code} {reason} {resp.text[:120]!r}"))
    if ok and req.cls == "refund":
        with gen.lock:
            gen.answered.append((time.monotonic(), req.body, req.headers, req.marker))


def worker(env: Env, gen: Generator, stats: Stats, budget, stop: threading.Event, seed: int):
    rnd = random.Random(seed)
    names = list(CLASSES)
    weights = [CLASSES[n][0] for n in names]
    from custody_testkit.agent import tls_context

    contexts = {who: tls_context(env.td.bundle, env.workloads[who]) for who in ("agent", "intruder", "refund", "fraud")}
    clients = {who: httpx2.Client(verify=ctx, timeout=30) for who, ctx in contexts.items()}
    url = env.envoy.url
    try:
        while not stop.is_set() and budget():
            req = gen.make(rnd.choices(names, weights)[0])
            headers = {**MCP_HEADERS, **req.headers}
            resp = error = None
            try:
                content = req.body
                if req.chunked:
                    content = iter([req.body[i:i + 4096] for i in range(0, len(req.body), 4096)])
                if req.fresh_connection:
                    with httpx2.Client(verify=contexts[req.who], timeout=30) as http:
                        resp = http.post(url, content=content, headers=headers)
                else:
                    resp = clients[req.who].post(url, content=content, headers=headers)
            except httpx2.HTTPError as e:  # reset, timeout, protocol error
                error = e
            judge(stats, gen, req, resp, error)
    finally:
        for c in clients.values():
            c.close()


# --- memory --------------------------------------------------------------------------


def memory(envoy: Envoy) -> tuple[int, int]:
    """(Envoy's allocated heap from /memory, process RSS), bytes."""
    allocated = int(json.loads(envoy.admin("/memory"))["allocated"])
    rss = 0
    for line in Path(f"/proc/{envoy.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return allocated, rss


def bound(warm: int) -> int:
    return int(warm * 1.5) + 16 * MiB


# --- the run -------------------------------------------------------------------------


@dataclass
class Result:
    requests: int
    seconds: float
    stats: Stats
    samples: list  # (elapsed, completed, allocated, rss)
    warm: tuple
    counters: dict
    leaked: list
    missing_forwarded: list
    duplicated: list
    failures: list

    @property
    def ok(self) -> bool:
        return not self.failures


def scan_record(record: Path) -> Counter:
    seen: Counter = Counter()
    with record.open() as f:
        for line in f:  # one request a line; markers only ever appear in bodies
            seen.update(set(MARKER.findall(line)))
    return seen


def run(requests: int = 100_000, seconds: float = 600.0, workers: int = 6, workdir: Path | None = None,
        warm_fraction: float = 0.2, progress=None) -> Result:
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="custody-soak-")) if own else workdir
    try:
        with environment(workdir) as env:
            return _run(env, requests, seconds, workers, warm_fraction, progress)
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(env: Env, requests: int, seconds: float, workers: int, warm_fraction: float, progress) -> Result:
    gen = Generator(env)
    stats = Stats()
    stop = threading.Event()
    issued = [0]
    issued_lock = threading.Lock()

    def budget() -> bool:
        with issued_lock:
            if issued[0] >= requests:
                return False
            issued[0] += 1
            return True

    samples = [(0.0, 0, *memory(env.envoy))]
    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(env, gen, stats, budget, stop, i), daemon=True) for i in range(workers)]
    for t in threads:
        t.start()
    warm = None
    deadline = start + seconds
    next_sample = start + 2
    while any(t.is_alive() for t in threads):
        now = time.monotonic()
        if now >= deadline:
            stop.set()
        if now >= next_sample:
            elapsed, done = now - start, stats.total
            samples.append((elapsed, done, *memory(env.envoy)))
            if warm is None and (done >= warm_fraction * requests or elapsed >= warm_fraction * seconds):
                warm = samples[-1]
            if progress:
                progress(f"  {elapsed:6.0f} s  {done:7d} requests  {done / elapsed:6.0f}/s  "
                         f"allocated {samples[-1][2] / MiB:6.1f} MiB  rss {samples[-1][3] / MiB:6.1f} MiB")
            next_sample += 2
        time.sleep(0.05)
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - start
    time.sleep(0.5)  # let the last access-log lines and records land
    samples.append((elapsed, stats.total, *memory(env.envoy)))
    if warm is None:  # a run shorter than one sample interval
        warm = samples[0]
    counters = env.envoy.counters()
    seen = scan_record(env.record)

    failures = []
    leaked = sorted(m for m in stats.refused_markers if seen[m])
    missing = sorted(m for m in stats.forwarded_markers if seen[m] == 0)
    duplicated = sorted(m for m in stats.forwarded_markers if seen[m] > 1)  # a replay got through
    if stats.wrong:
        failures.append(f"wrong decisions: {dict(stats.wrong)} e.g. {stats.wrong_examples[:5]}")
    if stats.filter_5xx:
        failures.append(f"5xx not from the upstream: {dict(stats.filter_5xx)}")
    if stats.transport_errors:
        failures.append(f"transport errors on requests that must be forwarded: {dict(stats.transport_errors)} "
                        f"e.g. {stats.wrong_examples[:3]}")
    if leaked:
        failures.append(f"{len(leaked)} refused requests reached the upstream, e.g. {leaked[:3]}")
    if duplicated:
        failures.append(f"{len(duplicated)} forwarded bodies reached the upstream more than once, e.g. {duplicated[:3]}")
    if missing:
        failures.append(f"{len(missing)} forwarded requests never reached the upstream, e.g. {missing[:3]}")
    allowed_expected = sum(stats.counts[c] for c in FORWARDED) - sum(stats.transport_errors.values())
    allowed_expected += sum(n for c, n in stats.upstream_failures.items() if c not in FORWARDED)
    if counters.get("wasmcustom.custody_allowed") != allowed_expected:
        failures.append(f"custody_allowed = {counters.get('wasmcustom.custody_allowed')}, expected {allowed_expected}")
    for name in ("config_invalid", "replay_cache_full"):
        if counters.get(f"wasmcustom.custody_denied_{name}", 0):
            failures.append(f"custody_denied_{name} = {counters[f'wasmcustom.custody_denied_{name}']}")
    end = samples[-1]
    for i, what in ((2, "allocated"), (3, "rss")):
        if end[i] > bound(warm[i]):
            failures.append(f"{what} grew from {warm[i] / MiB:.1f} MiB (warm-up) to {end[i] / MiB:.1f} MiB "
                            f"(bound {bound(warm[i]) / MiB:.1f} MiB)")
    return Result(stats.total, elapsed, stats, samples, warm, counters, leaked, missing, duplicated, failures)


def summary(r: Result) -> str:
    s = r.stats
    lines = [
        f"custody soak: {r.requests} requests in {r.seconds:.1f} s = {r.requests / max(r.seconds, 1e-9):.0f} requests/s",
        "",
        f"{'class':<18}{'expected':<24}{'count':>8}{'wrong':>7}{'reset':>7}{'xport':>7}",
    ]
    for name, (_, exp) in CLASSES.items():
        e = "forwarded" if exp is None else f"{exp[0]} {exp[1]}"
        lines.append(f"{name:<18}{e:<24}{s.counts[name]:>8}{s.wrong[name]:>7}{s.resets[name]:>7}{s.transport_errors[name]:>7}")
    lines += [
        f"{'total':<42}{r.requests:>8}{sum(s.wrong.values()):>7}{sum(s.resets.values()):>7}{sum(s.transport_errors.values()):>7}",
        "",
        f"filter 5xx: {sum(s.filter_5xx.values())} {dict(s.filter_5xx) or ''}   upstream 5xx: {sum(s.upstream_5xx.values())}   "
        f"upstream unreachable (allowed, Envoy 503): {sum(s.upstream_failures.values())}",
        f"upstream record: {len(s.forwarded_markers)} forwarded seen once; refused markers leaked: {len(r.leaked)}; "
        f"missing: {len(r.missing_forwarded)}; duplicated: {len(r.duplicated)}",
        f"counters: allowed {r.counters.get('wasmcustom.custody_allowed')}, "
        + ", ".join(f"{k.removeprefix('wasmcustom.custody_denied_')} {v}" for k, v in sorted(r.counters.items())
                    if k.startswith("wasmcustom.custody_denied_") and v),
        "",
        f"{'memory':<10}{'start':>12}{'warm-up':>12}{'end':>12}{'bound':>12}   (MiB; warm-up at {r.warm[0]:.0f} s, {r.warm[1]} requests)",
    ]
    first, end = r.samples[0], r.samples[-1]
    for i, what in ((2, "allocated"), (3, "rss")):
        lines.append(f"{what:<10}{first[i] / MiB:>12.1f}{r.warm[i] / MiB:>12.1f}{end[i] / MiB:>12.1f}{bound(r.warm[i]) / MiB:>12.1f}")
    lines.append(f"peak      {max(x[2] for x in r.samples) / MiB:>12.1f} allocated, {max(x[3] for x in r.samples) / MiB:.1f} rss")
    lines.append("replay cache: bounded by design (4096 slots x 64 proofs, expired proofs forgotten); "
                 "not readable from outside, covered by the memory bound")
    lines.append("")
    lines.append("PASS" if r.ok else "FAIL\n  " + "\n  ".join(r.failures))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000, help="stop after this many requests (default 100000)")
    parser.add_argument("--seconds", type=float, default=600.0, help="or after this long (default 600)")
    parser.add_argument("--workers", type=int, default=6, help="concurrent client threads (default 6)")
    parser.add_argument("--workdir", type=Path, help="keep logs and records here (default: a temporary directory, removed)")
    args = parser.parse_args(argv)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        os.environ.pop(var, None)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"soak: up to {args.requests} requests or {args.seconds:.0f} s, {args.workers} workers", flush=True)
    result = run(args.requests, args.seconds, args.workers, args.workdir, progress=lambda s: print(s, flush=True))
    print(summary(result), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
