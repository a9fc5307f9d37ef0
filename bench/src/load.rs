//! The two load phases over pre-serialised requests, on keep-alive mTLS
//! connections, every response checked:
//!
//! - fixed rate (open loop per connection): request `j` is due at
//!   `start + j / rate`; latency counts from when it was due, so a slow
//!   response also charges the requests it delayed (no coordinated omission);
//! - saturation (closed loop): `conns` connections send back to back until
//!   the time is up or the pre-generated requests run out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rustls::ClientConfig;
use serde_json::{json, Value};

use crate::client::Conn;
use crate::upstream::MARKER;

pub struct Target {
    pub addr: String,
    pub tls: Arc<ClientConfig>,
    pub expect_status: u16,
}

fn new_hist() -> Result<Histogram<u64>, String> {
    // 1 µs .. 60 s, 3 significant figures.
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())
}

fn check(target: &Target, m: &crate::http::Message) -> Result<(), String> {
    let status = m.status().unwrap_or(0);
    let from_upstream = String::from_utf8_lossy(&m.body).contains(MARKER);
    if status != target.expect_status || (status == 200 && !from_upstream) {
        return Err(format!(
            "unexpected response: status {status} (expected {}), body: {}",
            target.expect_status,
            String::from_utf8_lossy(&m.body)
                .chars()
                .take(400)
                .collect::<String>()
        ));
    }
    Ok(())
}

/// One connection's histogram, request count and end time.
type ConnResult = (Histogram<u64>, u64, Instant);

pub struct PhaseResult {
    pub hist: Histogram<u64>,
    pub requests: u64,
    pub elapsed: Duration,
    pub note: String,
}

impl PhaseResult {
    pub fn to_json(&self, mode: &str, extra: Value) -> Value {
        let h = &self.hist;
        let secs = self.elapsed.as_secs_f64();
        let mut dist = Vec::new();
        for v in h.iter_quantiles(1) {
            dist.push(json!([
                v.value_iterated_to(),
                v.quantile_iterated_to(),
                v.count_since_last_iteration()
            ]));
        }
        json!({
            "mode": mode,
            "requests": self.requests,
            "elapsed_s": secs,
            "rps": if secs > 0.0 { self.requests as f64 / secs } else { 0.0 },
            "latency_us": {
                "min": h.min(), "mean": h.mean(), "p50": h.value_at_quantile(0.5),
                "p90": h.value_at_quantile(0.9), "p99": h.value_at_quantile(0.99),
                "p999": h.value_at_quantile(0.999), "max": h.max(),
            },
            "histogram_us": dist,
            "params": extra,
            "note": self.note,
        })
    }
}

/// Closed loop on `conns` connections over `reqs` (cycled if `cyclic`).
pub fn saturate(
    target: &Target,
    reqs: &Arc<Vec<Vec<u8>>>,
    conns: usize,
    duration: Duration,
    cyclic: bool,
) -> Result<PhaseResult, String> {
    if reqs.is_empty() {
        return Err("no requests".into());
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let results: Vec<Result<ConnResult, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|_| {
                let next = next.clone();
                s.spawn(move || -> Result<ConnResult, String> {
                    let mut conn = Conn::open(&target.addr, &target.tls)?;
                    let mut hist = new_hist()?;
                    let mut n = 0u64;
                    loop {
                        if Instant::now() >= deadline {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= reqs.len() && !cyclic {
                            break;
                        }
                        let t0 = Instant::now();
                        let m = conn.roundtrip(&reqs[i % reqs.len()])?;
                        let us = t0.elapsed().as_micros() as u64;
                        check(target, &m)?;
                        hist.record(us.max(1)).map_err(|e| e.to_string())?;
                        n += 1;
                    }
                    Ok((hist, n, Instant::now()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a load thread died".into()))
            })
            .collect()
    });
    let mut hist = new_hist()?;
    let mut requests = 0;
    let mut end = start;
    for r in results {
        let (h, n, t) = r?;
        hist.add(&h).map_err(|e| e.to_string())?;
        requests += n;
        end = end.max(t);
    }
    let exhausted = !cyclic && next.load(Ordering::Relaxed) >= reqs.len();
    Ok(PhaseResult {
        hist,
        requests,
        elapsed: end - start,
        note: if exhausted {
            format!("ended early: all {} pre-signed requests used", reqs.len())
        } else {
            String::new()
        },
    })
}

/// Fixed aggregate `rate` over `conns` connections, request `j` due at `j / rate`.
pub fn fixed_rate(
    target: &Target,
    reqs: &Arc<Vec<Vec<u8>>>,
    conns: usize,
    rate: f64,
) -> Result<PhaseResult, String> {
    let conns = conns.max(1);
    let start = Instant::now() + Duration::from_millis(50);
    let results: Vec<Result<(Histogram<u64>, u64), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                s.spawn(move || -> Result<(Histogram<u64>, u64), String> {
                    let mut conn = Conn::open(&target.addr, &target.tls)?;
                    let mut hist = new_hist()?;
                    let mut n = 0u64;
                    for j in (c..reqs.len()).step_by(conns) {
                        let due = start + Duration::from_secs_f64(j as f64 / rate);
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        let m = conn.roundtrip(&reqs[j])?;
                        let us = due.elapsed().as_micros() as u64;
                        check(target, &m)?;
                        hist.record(us.max(1)).map_err(|e| e.to_string())?;
                        n += 1;
                    }
                    Ok((hist, n))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a load thread died".into()))
            })
            .collect()
    });
    let mut hist = new_hist()?;
    let mut requests = 0;
    for r in results {
        let (h, n) = r?;
        hist.add(&h).map_err(|e| e.to_string())?;
        requests += n;
    }
    Ok(PhaseResult {
        hist,
        requests,
        elapsed: start.elapsed(),
        note: String::new(),
    })
}
