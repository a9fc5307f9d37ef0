"""perf call chains into buckets: wasm code, host calls, log writes, Envoy."""

import perfsplit

ENVOY = "/venv/site-packages/envoy/_bin/envoy"
JIT = "/tmp/perf-12993.map"
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
KERNEL = "[kernel.kallsyms]"

# Shaped as `perf script -F comm,tid,period,ip,sym,dso` prints them.
SCRIPT = f"""wrk:worker_0 13180    1001001 
\t         2f843a8 [unknown] ({ENVOY})
\t         2facd35 [unknown] ({ENVOY})
\t    33cdf53fc2bc [unknown] ({JIT})
\t         55e7bcc [unknown] ({ENVOY})
\t           891f5 start_thread ({LIBC})

wrk:worker_0 13180    1001001 
\t    33cdf53fc3b8 [unknown] ({JIT})
\t         55e7bcc [unknown] ({ENVOY})

wrk:worker_0 13180    2002002 
\tffffffff8168e11b tcp_sendmsg ({KERNEL})
\tffffffff821ef691 do_syscall_64 ({KERNEL})
\t          10aba4 __send ({LIBC})
\t         55c4cd0 [unknown] ({ENVOY})

wrk:worker_0 13180    1001001 
\t           76af3 _IO_fwrite ({LIBC})

V8 DefaultWorke 12996    1001001 
\t         55c4cd0 [unknown] ({ENVOY})
\t           891f5 start_thread ({LIBC})

wrk:worker_0 13180    1001001 
\t         5ce32de [unknown] ({ENVOY})
"""


def frames(*dsos_and_syms):
    return [(f"{i:x}", sym, dso) for i, (sym, dso) in enumerate(dsos_and_syms)]


def test_parse_reads_headers_and_frames_leaf_first():
    samples = perfsplit.parse(SCRIPT)
    assert [s["comm"] for s in samples] == ["wrk:worker_0"] * 4 + ["V8 DefaultWorke", "wrk:worker_0"]
    assert [s["period"] for s in samples] == [1001001, 1001001, 2002002, 1001001, 1001001, 1001001]
    assert samples[0]["frames"][0] == ("2f843a8", "[unknown]", ENVOY)
    assert samples[2]["frames"][0] == ("ffffffff8168e11b", "tcp_sendmsg", KERNEL)
    assert len(samples[0]["frames"]) == 5


def test_every_sample_lands_in_one_bucket():
    samples = perfsplit.parse(SCRIPT)
    assert [perfsplit.bucket(s["frames"]) for s in samples] == [
        "host calls", "wasm code", "Envoy, kernel", "log writes", "Envoy", "native, chain cut"]


def test_native_code_under_wasm_is_a_host_call_and_without_it_is_envoy():
    start = ("start_thread", LIBC)
    assert perfsplit.bucket(frames(("[unknown]", ENVOY), ("[unknown]", JIT), ("[unknown]", ENVOY))) == "host calls"
    assert perfsplit.bucket(frames(("[unknown]", ENVOY), ("[unknown]", ENVOY), start)) == "Envoy"
    assert perfsplit.bucket(frames(("[unknown]", "[JIT] tid 77"))) == "wasm code"
    assert perfsplit.bucket([]) == "Envoy"


def test_a_chain_that_stops_short_without_wasm_is_not_claimed_by_envoy():
    # BoringSSL's assembly keeps no frame pointer: perf cannot see who called it.
    assert perfsplit.bucket(frames(("[unknown]", ENVOY))) == "native, chain cut"
    assert perfsplit.bucket(frames(("[unknown]", ENVOY), ("[unknown]", ENVOY))) == "native, chain cut"
    # In the kernel the work is the kernel's, whoever made the system call.
    assert perfsplit.bucket(frames(("tcp_sendmsg", KERNEL), ("__send", LIBC))) == "Envoy, kernel"


def test_a_log_file_write_is_told_apart_from_other_writes():
    log = frames(("generic_perform_write", KERNEL), ("vfs_write", KERNEL), ("__GI___libc_write", LIBC))
    wakeup = frames(("eventfd_write", KERNEL), ("vfs_write", KERNEL), ("__GI___libc_write", LIBC))
    assert perfsplit.bucket(log) == "log writes"
    assert perfsplit.bucket(wakeup) == "Envoy, kernel"
    assert perfsplit.bucket(frames(("_IO_fflush", LIBC))) == "log writes"


def test_split_weighs_samples_by_their_period_and_per_request_divides():
    ns = perfsplit.split(perfsplit.parse(SCRIPT))
    assert ns == {"wasm code": 1001001, "host calls": 1001001, "log writes": 1001001,
                  "native, chain cut": 1001001, "Envoy": 1001001, "Envoy, kernel": 2002002}
    per = perfsplit.per_request(ns, 1000)
    assert per["Envoy, kernel"] == 2.0 and per["wasm code"] == 1.0
    assert per["total"] == 7.0
    assert perfsplit.per_request(ns, 0)["total"] == 7007.0  # no request: per one, not a division by zero
