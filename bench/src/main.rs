//! `custody-bench`: the loopback upstream and the load generator that
//! `bench/run.py` (`./build.sh bench`) drives against each Envoy case.

mod client;
mod http;
mod load;
mod upstream;
mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::json;

use workload::{load_signer, Kind, Workload};

/// Pre-serialised requests, shared by the load threads.
type Requests = Arc<Vec<Vec<u8>>>;

#[derive(Parser)]
#[command(about = "Custody benchmarks: upstream and load generator")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A minimal HTTP/1.1 server on 127.0.0.1 answering 200 with a small JSON body.
    Upstream {
        #[arg(long)]
        port: u16,
    },
    /// Warm up, then one fixed-rate and one saturation phase; writes JSON.
    Load(Box<LoadArgs>),
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Case name, copied into the JSON.
    #[arg(long)]
    case: String,
    /// host:port of Envoy's listener.
    #[arg(long)]
    addr: String,
    /// Trust bundle (PEM) that signed Envoy's server certificate.
    #[arg(long)]
    ca: String,
    /// Directory of the caller's X.509-SVID (svid.pem, svid.key).
    #[arg(long)]
    caller: String,
    /// Directories of the workers that sign the first entries (history cases).
    #[arg(long, num_args = 1..)]
    workers: Vec<String>,
    /// Directory of the approver that signs the last entry (history cases).
    #[arg(long)]
    approver: Option<String>,
    /// Audience the proofs name (history cases).
    #[arg(long, default_value = "")]
    aud: String,
    /// Entries of history; 0 sends no history headers.
    #[arg(long, default_value_t = 0)]
    entries: usize,
    /// A new workflow every request (cold caches).
    #[arg(long)]
    cold: bool,
    #[arg(long, default_value_t = 200)]
    expect_status: u16,
    #[arg(long, default_value_t = 300)]
    warmup: usize,
    /// Fixed rate, requests per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    #[arg(long, default_value_t = 10.0)]
    rate_secs: f64,
    #[arg(long, default_value_t = 4)]
    rate_conns: usize,
    #[arg(long, default_value_t = 10.0)]
    sat_secs: f64,
    #[arg(long, default_value_t = 16)]
    sat_conns: usize,
    /// Pre-signed requests for the saturation phase (history cases); plain
    /// cases cycle over a small pool instead.
    #[arg(long, default_value_t = 10000)]
    sat_pool: usize,
    /// After the saturation phase, keep saturating with fresh batches of
    /// `sat_pool` pre-signed requests until the case has sent this many
    /// requests in all (memory after N requests); 0: no soak.
    #[arg(long, default_value_t = 0)]
    soak_total: u64,
    /// Threads that sign requests ahead of each phase.
    #[arg(long, default_value_t = 2)]
    gen_threads: usize,
    /// Let rustls resume TLS sessions on new connections (off: every
    /// connection does a full handshake).
    #[arg(long)]
    tls_resumption: bool,
    /// Envoy's process id: each phase's JSON gets the CPU time all its
    /// threads spent during the phase (`envoy_cpu_ns`, from /proc).
    #[arg(long)]
    cpu_pid: Option<u32>,
    /// Where to write the case's JSON.
    #[arg(long)]
    out: String,
}

fn run_load(a: &LoadArgs) -> Result<(), String> {
    let tls = client::tls_config(
        &a.ca,
        &format!("{}/svid.pem", a.caller),
        &format!("{}/svid.key", a.caller),
        a.tls_resumption,
    )?;
    let target = load::Target {
        addr: a.addr.clone(),
        tls,
        expect_status: a.expect_status,
    };
    let kind = if a.entries == 0 {
        Kind::Plain
    } else {
        Kind::History {
            entries: a.entries,
            cold: a.cold,
        }
    };
    let history = matches!(kind, Kind::History { .. });
    let caller = load_signer(&a.caller)?;
    let workers = if history {
        a.workers
            .iter()
            .map(|d| load_signer(d))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![caller.clone()]
    };
    let approver = match (&a.approver, history) {
        (Some(d), _) => load_signer(d)?,
        (None, false) => caller.clone(),
        (None, true) => return Err("--approver is needed with --entries".into()),
    };
    let w = Workload::new(kind, a.aud.clone(), caller, workers, approver)?;
    let mut next_idx = 0u64;
    let mut batch = |n: usize| -> Result<(Requests, f64), String> {
        let t = Instant::now();
        let reqs = w.batch(next_idx, n, a.gen_threads)?;
        next_idx += n as u64;
        Ok((Arc::new(reqs), t.elapsed().as_secs_f64()))
    };

    // A phase of zero requests or seconds is skipped (a memory soak alone).
    if a.warmup > 0 {
        let (warm, _) = batch(a.warmup)?;
        load::saturate(&target, &warm, 2, Duration::from_secs(60), false)?;
    }

    let n_rate = (a.rate * a.rate_secs).round() as usize;
    let (mut rate, mut bytes) = (json!(null), 0);
    if n_rate > 0 {
        let (reqs, gen_rate) = batch(n_rate)?;
        bytes = reqs.iter().map(Vec::len).sum::<usize>() / reqs.len().max(1);
        eprintln!(
            "  [{}] fixed rate {} rps for {} s ({} requests, signed in {gen_rate:.1} s)",
            a.case, a.rate, a.rate_secs, n_rate
        );
        let cpu = cpu_ns(a.cpu_pid);
        let r = load::fixed_rate(&target, &reqs, a.rate_conns, a.rate)?;
        rate = r.to_json(
            "fixed_rate",
            json!({"rate": a.rate, "seconds": a.rate_secs, "conns": a.rate_conns, "signing_s": gen_rate}),
        );
        rate["envoy_cpu_ns"] = json!(cpu_since(a.cpu_pid, cpu));
    }

    let pool = if history { a.sat_pool } else { 2000 };
    let (mut sat, mut sat_requests) = (json!(null), 0);
    if a.sat_secs > 0.0 {
        let (reqs, gen_sat) = batch(pool)?;
        eprintln!(
            "  [{}] saturation, {} connections, up to {} s ({} pre-signed requests in {gen_sat:.1} s)",
            a.case, a.sat_conns, a.sat_secs, pool
        );
        let cpu = cpu_ns(a.cpu_pid);
        let r = load::saturate(
            &target,
            &reqs,
            a.sat_conns,
            Duration::from_secs_f64(a.sat_secs),
            !history,
        )?;
        sat_requests = r.requests;
        sat = r.to_json(
            "saturation",
            json!({"conns": a.sat_conns, "seconds": a.sat_secs, "pool": pool, "signing_s": gen_sat}),
        );
        sat["envoy_cpu_ns"] = json!(cpu_since(a.cpu_pid, cpu));
    }

    let mut sent = (a.warmup + n_rate) as u64 + sat_requests;
    let mut soak = json!(null);
    if a.soak_total > sent {
        let t = Instant::now();
        let (mut soaked, mut busy) = (0u64, 0.0f64);
        while sent < a.soak_total {
            let n = pool.min((a.soak_total - sent) as usize).max(1);
            let (reqs, _) = batch(n)?;
            let r = load::saturate(&target, &reqs, a.sat_conns, Duration::from_secs(60), false)?;
            sent += r.requests;
            soaked += r.requests;
            busy += r.elapsed.as_secs_f64();
        }
        eprintln!(
            "  [{}] soak: {soaked} more requests, {sent} in all ({:.0} s)",
            a.case,
            t.elapsed().as_secs_f64()
        );
        soak = json!({"requests": soaked, "busy_s": busy, "rps": soaked as f64 / busy.max(1e-9), "total_sent": sent});
    }

    let out = json!({
        "soak": soak,
        "case": a.case,
        "entries": a.entries,
        "cold": a.cold,
        "expect_status": a.expect_status,
        "request_bytes_mean": bytes,
        "warmup_requests": a.warmup,
        "fixed_rate": rate,
        "saturation": sat,
    });
    let text = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
    std::fs::write(&a.out, text).map_err(|e| format!("{}: {e}", a.out))?;
    Ok(())
}

/// CPU time all threads of process `pid` have run so far, in ns: the sum
/// of their `/proc/<pid>/task/<tid>/schedstat` run times (Linux).
fn cpu_ns(pid: Option<u32>) -> Option<u64> {
    let pid = pid?;
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread that ended since the listing counts no more.
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

/// The CPU time `pid` spent since `before`, if both readings exist.
fn cpu_since(pid: Option<u32>, before: Option<u64>) -> Option<u64> {
    Some(cpu_ns(pid)?.saturating_sub(before?))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r = match &cli.cmd {
        Cmd::Upstream { port } => upstream::run(*port),
        Cmd::Load(a) => run_load(a),
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custody-bench: FAILED: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_of_a_process_grows_with_work() {
        let me = Some(std::process::id());
        let before = cpu_ns(me);
        assert!(
            before.is_some(),
            "/proc/self/task/*/schedstat readable on Linux"
        );
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(cpu_since(me, before).is_some_and(|spent| spent > 0));
        assert!(cpu_ns(me) >= before);
    }

    #[test]
    fn no_process_no_cpu_time() {
        assert_eq!(cpu_ns(None), None);
        assert_eq!(cpu_ns(Some(u32::MAX)), None);
        assert_eq!(cpu_since(Some(std::process::id()), None), None);
    }
}
