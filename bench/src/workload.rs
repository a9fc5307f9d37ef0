//! Requests, serialised ahead of time: a `tools/call` body that differs in
//! every request (id and nonce) and, for history cases, the three
//! workflow-history headers with a fresh proof bound to that body.

use std::time::{SystemTime, UNIX_EPOCH};

use custody_history::sha256;
use custody_history::sign::{
    append_entry, certs_header, make_proof, EntryFields, ProofFields, Signer,
};
use serde_json::json;

/// The approved amount in the last entry's claims; requests ask for less.
pub const APPROVED_AMOUNT: u64 = 5000;

pub enum Kind {
    /// No history headers (cases a, b, c).
    Plain,
    /// A verified history of `entries`: the same workflow every request
    /// (warm) or a new one every request (cold).
    History { entries: usize, cold: bool },
}

pub struct Workload {
    pub kind: Kind,
    pub aud: String,
    pub caller: Signer,
    /// Alternating signers of the first entries.
    pub workers: Vec<Signer>,
    /// Signs the last entry, `human_approval`, naming the caller as next holder.
    pub approver: Signer,
    pub certs: String,
    seed: [u8; 32],
    /// The warm workflow, built once.
    warm: Option<String>,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn load_signer(dir: &str) -> Result<Signer, String> {
    let read = |f: &str| {
        std::fs::read_to_string(format!("{dir}/{f}")).map_err(|e| format!("{dir}/{f}: {e}"))
    };
    Signer::from_pkcs8_pem(&read("svid.key")?, &read("svid.pem")?)
        .map_err(|e| format!("{dir}: {e}"))
}

impl Workload {
    pub fn new(
        kind: Kind,
        aud: String,
        caller: Signer,
        workers: Vec<Signer>,
        approver: Signer,
    ) -> Result<Workload, String> {
        if workers.is_empty() {
            return Err("at least one worker signer".into());
        }
        let mut ders: Vec<&[u8]> = workers.iter().map(Signer::cert_der).collect();
        ders.push(approver.cert_der());
        ders.push(caller.cert_der());
        let certs = certs_header(ders);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = sha256(format!("{nanos}/{}", std::process::id()).as_bytes());
        let mut w = Workload {
            kind,
            aud,
            caller,
            workers,
            approver,
            certs,
            seed,
            warm: None,
        };
        if let Kind::History {
            entries,
            cold: false,
        } = w.kind
        {
            let wid = format!("bench-warm-{}", hex8(&w.seed));
            w.warm = Some(w.history(&wid, entries, now())?);
        }
        Ok(w)
    }

    /// A chain of `n` entries: `step_0`.. by the workers in turn, then
    /// `human_approval` by the approver with the approved amount in its
    /// claims, naming the caller as the next holder.
    fn history(&self, wid: &str, n: usize, now: u64) -> Result<String, String> {
        let mut chain: Option<String> = None;
        let signer_of = |i: usize| -> &Signer {
            if i + 1 == n {
                &self.approver
            } else {
                &self.workers[i % self.workers.len()]
            }
        };
        let approved = json!({"amount": APPROVED_AMOUNT, "currency": "EUR"});
        for i in 0..n {
            let last = i + 1 == n;
            let step = if last {
                "human_approval".to_owned()
            } else {
                format!("step_{i}")
            };
            let nxt = if last {
                self.caller.spiffe_id().as_str()
            } else {
                signer_of(i + 1).spiffe_id().as_str()
            };
            let claims = if last {
                approved.clone()
            } else {
                json!({"i": i})
            };
            let fields = EntryFields {
                wid,
                step: &step,
                result: "approved",
                nxt,
                iat: now - 10,
                exp: now + 3600,
                claims: Some(&claims),
            };
            chain = Some(
                append_entry(chain.as_deref(), signer_of(i), &fields).map_err(|e| e.to_string())?,
            );
        }
        chain.ok_or_else(|| "a history needs at least one entry".to_owned())
    }

    /// Request number `idx`, serialised as HTTP/1.1 bytes.
    pub fn request(&self, idx: u64) -> Result<Vec<u8>, String> {
        let amount = 100 + idx % 4000;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{idx},"method":"tools/call","params":{{"name":"refund","arguments":{{"amount":{amount},"nonce":"{}-{idx}"}}}}}}"#,
            hex8(&self.seed)
        );
        let mut head = format!(
            "POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n",
            body.len()
        );
        if let Kind::History { entries, cold } = self.kind {
            let now = now();
            let cold_history;
            let history = if cold {
                let wid = format!("bench-cold-{}-{idx}", hex8(&self.seed));
                cold_history = self.history(&wid, entries, now)?;
                &cold_history
            } else {
                self.warm.as_ref().ok_or("no warm history")?
            };
            let mut jti_input = self.seed.to_vec();
            jti_input.extend_from_slice(&idx.to_be_bytes());
            let jti = sha256(&jti_input);
            let proof = make_proof(
                history,
                &self.caller,
                body.as_bytes(),
                &ProofFields {
                    aud: &self.aud,
                    iat: now,
                    exp: now + 60,
                    jti: &jti[..16],
                },
            )
            .map_err(|e| e.to_string())?;
            head.push_str(&format!(
                "workflow-history: {history}\r\nworkflow-history-proof: {proof}\r\nworkflow-history-certs: {}\r\n",
                self.certs
            ));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body.as_bytes());
        Ok(out)
    }

    /// Requests `first..first+n`, signed on every core.
    pub fn batch(&self, first: u64, n: usize, threads: usize) -> Result<Vec<Vec<u8>>, String> {
        let threads = threads.max(1);
        let per = n.div_ceil(threads).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let lo = (t * per).min(n);
                    let hi = ((t + 1) * per).min(n);
                    s.spawn(move || {
                        (lo..hi)
                            .map(|i| self.request(first + i as u64))
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(n);
            for h in handles {
                out.extend(h.join().map_err(|_| "a generator thread died")??);
            }
            Ok(out)
        })
    }
}

fn hex8(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect()
}
