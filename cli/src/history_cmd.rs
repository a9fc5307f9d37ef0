//! `custody history append | prove | verify`: sign, bind and check a
//! workflow history (`docs/history-format.md`) from the shell.

use crate::bind;
use crate::fail::{error, Failure, Result};
use crate::headers::{last_entry_member, merge_certs, HeaderSet, ParseError};
use crate::output::{report, Format as OutputFormat};
use crate::pki::{load_bundle, load_signer, parse_spiffe_id, parse_trust_domain};
use crate::util::{
    format_duration, format_utc, parse_duration, print, random_bytes, read_bytes_or_stdin,
    read_text, unix_now, write_text,
};
use clap::{Subcommand, ValueEnum};
use custody_core::call::CALL_CLAIM;
use custody_history::sign::{self, EntryFields, ProofFields, SignError};
use custody_history::{
    b64url, Headers, Limits, Presented, Refusal, SpiffeId, VerifiedHistory, Verifier,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Longest proof lifetime the verifier accepts (`exp - iat`, seconds).
const MAX_PROOF_TTL: u64 = 60;
/// Random bytes in a fresh `wid` and in a proof's `jti` (128 bits).
const RANDOM_ID_BYTES: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `name: value` lines, for `curl -H @FILE`.
    Headers,
    /// A JSON object of the three headers.
    Json,
}

#[derive(Subcommand)]
pub enum HistoryCommand {
    /// Sign one entry and append it to a history file (or start a new one).
    ///
    /// The file is a JSON object: {"workflow-history": "...",
    /// "workflow-history-certs": "..."}, the two header values.
    Append {
        /// The signer's X.509-SVID (PEM: the leaf, then any intermediates).
        #[arg(long, value_name = "C")]
        cert: PathBuf,
        /// The signer's private key (PKCS#8 PEM, ECDSA P-256).
        #[arg(long, value_name = "K")]
        key: PathBuf,
        /// What happened, e.g. fraud_check_passed.
        #[arg(long, value_name = "S")]
        step: String,
        /// Its outcome, e.g. approved.
        #[arg(long, value_name = "R")]
        result: String,
        /// The next holder: who signs the next entry or proves the chain.
        #[arg(long, value_name = "SPIFFE_ID", value_parser = parse_spiffe_id)]
        next: SpiffeId,
        /// Claims, a JSON object (at most 2 KiB), or @FILE to read it from a file.
        #[arg(long, value_name = "JSON")]
        claims: Option<String>,
        /// Bind the entry to one call: adds `claims.call`, computed from FILE
        /// (- for standard input), a JSON-RPC request (tools/call, prompts/get,
        /// resources/read) or {"name": TOOL, "arguments": {...}}.
        #[arg(long, value_name = "FILE")]
        bind_call: Option<PathBuf>,
        /// Entry lifetime (exp - iat), e.g. 1h, 30m.
        #[arg(long, value_name = "D", default_value = "1h", value_parser = parse_duration)]
        ttl: u64,
        /// Sign the entry as issued this long ago (iat = now - D), e.g. for
        /// testing `within`; the signer's certificate must be valid then.
        #[arg(long, value_name = "D", default_value = "0s", value_parser = parse_duration)]
        age: u64,
        /// Workflow id for a new chain (default: 128 random bits, base64url);
        /// with --in it must equal the chain's.
        #[arg(long, value_name = "W")]
        wid: Option<String>,
        /// The history to append to; without it a new chain starts.
        #[arg(long = "in", value_name = "FILE")]
        input: Option<PathBuf>,
        /// Where to write the new history (may be the same as --in).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// How the summary of the new entry is printed.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Sign the proof that binds a history to one request, and print the
    /// three request headers.
    Prove {
        /// The history file (from `custody history append`).
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// The caller's X.509-SVID (PEM), the holder the last entry named.
        #[arg(long, value_name = "C")]
        cert: PathBuf,
        /// The caller's private key (PKCS#8 PEM).
        #[arg(long, value_name = "K")]
        key: PathBuf,
        /// The tool server's audience (its SPIFFE ID, as in its configuration).
        #[arg(long, value_name = "SPIFFE_ID")]
        aud: String,
        /// The exact request body bytes (- for standard input).
        #[arg(long, value_name = "BODYFILE")]
        body: PathBuf,
        /// Proof lifetime, at most 60s.
        #[arg(long, value_name = "D", default_value = "60s", value_parser = parse_duration)]
        ttl: u64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Headers)]
        format: Format,
        /// Write to FILE instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Verify a history and its proof offline, exactly as the filter does,
    /// and print the chain.
    ///
    /// The proof arguments are required: the verifier checks a history only
    /// together with the proof that binds it to a request (there is no
    /// entries-only verification in custody-history). Replay of the proof's
    /// jti is not checked (that needs the server's memory). Exit 0 verified,
    /// 1 refused (`custody: refused: <reason_code>: <detail>`), 2 error.
    Verify {
        /// The history file (JSON or `name: value` lines).
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// Trust bundle: PEM certificates, a SPIFFE bundle (JSON), or a SPIFFE
        /// bundle map of several trust domains ({"trust_domains": {...}}), detected.
        #[arg(long, value_name = "B")]
        bundle: PathBuf,
        /// The bundle's trust domain (default: from its authorities' URI SAN spiffe://<td>).
        #[arg(long, value_name = "TD", value_parser = parse_trust_domain)]
        trust_domain: Option<String>,
        /// The proof headers, as written by `custody history prove` (either
        /// format); its workflow-history-certs, if any, replaces --in's.
        #[arg(long, value_name = "FILE")]
        proof_headers: PathBuf,
        /// The request body the proof was made for (- for standard input).
        #[arg(long, value_name = "BODYFILE")]
        body: PathBuf,
        /// The mTLS peer, i.e. the caller's SPIFFE ID.
        #[arg(long, value_name = "SPIFFE_ID", value_parser = parse_spiffe_id)]
        peer: SpiffeId,
        /// The tool server's audience.
        #[arg(long, value_name = "SPIFFE_ID")]
        aud: String,
        /// Verify as of this Unix time (seconds) instead of now.
        #[arg(long, value_name = "UNIX")]
        now: Option<u64>,
        /// How the verified chain (or the refusal) is printed.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
}

pub fn run(cmd: HistoryCommand) -> Result<()> {
    match cmd {
        HistoryCommand::Append {
            cert,
            key,
            step,
            result,
            next,
            claims,
            bind_call,
            ttl,
            age,
            wid,
            input,
            out,
            format,
        } => append(&AppendArgs {
            cert: &cert,
            key: &key,
            step: &step,
            result: &result,
            next: &next,
            claims: claims.as_deref(),
            bind_call: bind_call.as_deref(),
            ttl,
            age,
            wid: wid.as_deref(),
            input: input.as_deref(),
            out: &out,
            format,
        }),
        HistoryCommand::Prove {
            input,
            cert,
            key,
            aud,
            body,
            ttl,
            format,
            out,
        } => prove(
            &input,
            &cert,
            &key,
            &aud,
            &body,
            ttl,
            format,
            out.as_deref(),
        ),
        HistoryCommand::Verify {
            input,
            bundle,
            trust_domain,
            proof_headers,
            body,
            peer,
            aud,
            now,
            format,
        } => verify(&VerifyArgs {
            input: &input,
            bundle: &bundle,
            trust_domain: trust_domain.as_deref(),
            proof_headers: &proof_headers,
            body: &body,
            peer: &peer,
            aud: &aud,
            now,
            format,
        }),
    }
}

/// Reads a headers file; a repeated header is the verifier's refusal.
fn read_headers(path: &Path) -> Result<HeaderSet> {
    HeaderSet::parse(&read_text(path)?).map_err(|e| match e {
        ParseError::Repeated(h) => Failure::refused(&Refusal::HeaderRepeated(h)),
        ParseError::Other(m) => error(format!("{}: {m}", path.display())),
    })
}

/// A history file's two values, both required.
fn read_history(path: &Path) -> Result<(String, String)> {
    let set = read_headers(path)?;
    let missing = |name: &str| error(format!("{}: no {name}", path.display()));
    let history = set.history.ok_or_else(|| missing("workflow-history"))?;
    let certs = set.certs.ok_or_else(|| missing("workflow-history-certs"))?;
    Ok((history, certs))
}

fn sign_error(e: SignError, signer: &SpiffeId, history: Option<&str>) -> Failure {
    match e {
        SignError::NotNextHolder => {
            let named = history
                .and_then(|h| last_entry_member(h, "nxt"))
                .unwrap_or_else(|| "someone else".into());
            error(format!(
                "{signer} cannot append: the last entry names {named} as the next holder"
            ))
        }
        other => error(other.to_string()),
    }
}

/// Parses `--claims`: a JSON object (strictly: no duplicate member), inline
/// or `@FILE`, at most 2 KiB compact.
pub fn parse_claims(arg: &str) -> Result<Value> {
    let text = match arg.strip_prefix('@') {
        Some(path) => read_text(Path::new(path))?,
        None => arg.to_owned(),
    };
    let v = custody_json::parse_strict(text.as_bytes(), 32).map_err(|e| {
        error(match e {
            custody_json::JsonError::DuplicateKey(k) => {
                format!("--claims: the member {k:?} appears twice")
            }
            _ => "--claims: not valid JSON".to_owned(),
        })
    })?;
    if !v.is_object() {
        return Err(error("--claims must be a JSON object"));
    }
    let max = Limits::default().max_claims_bytes;
    let len = v.to_string().len();
    if len > max {
        return Err(error(format!(
            "--claims is {len} bytes compact, over the cap of {max}"
        )));
    }
    Ok(v)
}

/// `claims` (or `{}`) with `call` set to the call claim of `call_file`;
/// a `call` member already in `--claims` is refused, never overwritten.
fn with_call(claims: Option<Value>, call_file: &[u8]) -> Result<Value> {
    let mut claims = claims.unwrap_or_else(|| Value::Object(Default::default()));
    let Some(members) = claims.as_object_mut() else {
        return Err(error("--claims must be a JSON object"));
    };
    if members.contains_key(CALL_CLAIM) {
        return Err(error(
            "--claims already has a `call` member; --bind-call sets it",
        ));
    }
    members.insert(CALL_CLAIM.to_owned(), bind::call_claim(call_file)?);
    let (len, max) = (claims.to_string().len(), Limits::default().max_claims_bytes);
    if len > max {
        return Err(error(format!(
            "the claims with `call` are {len} bytes compact, over the cap of {max}"
        )));
    }
    Ok(claims)
}

struct AppendArgs<'a> {
    cert: &'a Path,
    key: &'a Path,
    step: &'a str,
    result: &'a str,
    next: &'a SpiffeId,
    claims: Option<&'a str>,
    bind_call: Option<&'a Path>,
    ttl: u64,
    age: u64,
    wid: Option<&'a str>,
    input: Option<&'a Path>,
    out: &'a Path,
    format: OutputFormat,
}

fn append(a: &AppendArgs<'_>) -> Result<()> {
    if a.step.is_empty() {
        return Err(error("--step must not be empty"));
    }
    let mut claims = a.claims.map(parse_claims).transpose()?;
    if let Some(path) = a.bind_call {
        claims = Some(with_call(claims, &read_bytes_or_stdin(path)?)?);
    }
    let (signer, chain) = load_signer(a.cert, a.key)?;
    let existing = a.input.map(read_history).transpose()?;
    // An error about the history read from --in, named by its path.
    let input_error = |m: &str| {
        let input = a.input.map(|p| p.display().to_string()).unwrap_or_default();
        error(format!("{input}: {m}"))
    };
    let wid = match (&existing, a.wid) {
        (None, Some("")) => return Err(error("--wid must not be empty")),
        (None, Some(w)) => w.to_owned(),
        (None, None) => b64url(&random_bytes(RANDOM_ID_BYTES)?),
        (Some((h, _)), w) => {
            let chain_wid = last_entry_member(h, "wid")
                .ok_or_else(|| input_error("cannot read the last entry's wid"))?;
            if let Some(w) = w {
                if w != chain_wid {
                    return Err(error(format!(
                        "--wid {w:?} differs from the chain's wid {chain_wid:?}"
                    )));
                }
            }
            chain_wid
        }
    };
    let iat = unix_now()?.saturating_sub(a.age);
    let history_in = existing.as_ref().map(|(h, _)| h.as_str());
    let history = sign::append_entry(
        history_in,
        &signer,
        &EntryFields {
            wid: &wid,
            step: a.step,
            result: a.result,
            nxt: a.next.as_str(),
            iat,
            exp: iat.saturating_add(a.ttl),
            claims: claims.as_ref(),
        },
    )
    .map_err(|e| sign_error(e, signer.spiffe_id(), history_in))?;
    let certs = merge_certs(existing.as_ref().map(|(_, c)| c.as_str()), &chain)
        .map_err(|m| input_error(&m))?;
    let seq = history.split('~').count() - 1;
    let out = HeaderSet {
        history: Some(history),
        proof: None,
        certs: Some(certs),
    };
    write_text(a.out, &out.to_json())?;
    report(
        a.format,
        format!(
            "entry {seq} {:?} ({:?}) by {} -> next {}; workflow {wid}; wrote {}\n",
            a.step,
            a.result,
            signer.spiffe_id(),
            a.next,
            a.out.display()
        ),
        json!({"seq": seq, "step": a.step, "result": a.result, "signer": signer.spiffe_id().as_str(),
               "next": a.next.as_str(), "workflow": wid, "iat": iat, "exp": iat.saturating_add(a.ttl),
               "out": a.out}),
    )
}

#[allow(clippy::too_many_arguments)]
fn prove(
    input: &Path,
    cert: &Path,
    key: &Path,
    aud: &str,
    body: &Path,
    ttl: u64,
    format: Format,
    out: Option<&Path>,
) -> Result<()> {
    if ttl > MAX_PROOF_TTL {
        return Err(error(format!(
            "--ttl {} is over the proof lifetime cap of {MAX_PROOF_TTL}s",
            format_duration(ttl)
        )));
    }
    if aud.is_empty() {
        return Err(error("--aud must not be empty"));
    }
    let (history, certs) = read_history(input)?;
    let (signer, chain) = load_signer(cert, key)?;
    let body = read_bytes_or_stdin(body)?;
    let iat = unix_now()?;
    let jti = random_bytes(RANDOM_ID_BYTES)?;
    let proof = sign::make_proof(
        &history,
        &signer,
        &body,
        &ProofFields {
            aud,
            iat,
            exp: iat.saturating_add(ttl),
            jti: &jti,
        },
    )
    .map_err(|e| sign_error(e, signer.spiffe_id(), Some(&history)))?;
    if let Some(holder) = last_entry_member(&history, "nxt") {
        if holder != signer.spiffe_id().as_str() {
            eprintln!(
                "custody: warning: {} proves, but the last entry names {holder} as the holder: Custody will refuse this request",
                signer.spiffe_id()
            );
        }
    }
    let certs = merge_certs(Some(&certs), &chain)
        .map_err(|m| error(format!("{}: {m}", input.display())))?;
    let set = HeaderSet {
        history: Some(history),
        proof: Some(proof),
        certs: Some(certs),
    };
    let text = match format {
        Format::Headers => set.to_lines(),
        Format::Json => set.to_json(),
    };
    match out {
        Some(path) => write_text(path, &text),
        None => print(&text),
    }
}

struct VerifyArgs<'a> {
    input: &'a Path,
    bundle: &'a Path,
    trust_domain: Option<&'a str>,
    proof_headers: &'a Path,
    body: &'a Path,
    peer: &'a SpiffeId,
    aud: &'a str,
    now: Option<u64>,
    format: OutputFormat,
}

fn verify(a: &VerifyArgs<'_>) -> Result<()> {
    let chain = read_headers(a.input)?;
    let proof = read_headers(a.proof_headers)?;
    let (bundle, _td) = load_bundle(a.bundle, a.trust_domain)?;
    let body = read_bytes_or_stdin(a.body)?;
    let now = match a.now {
        Some(n) => n,
        None => unix_now()?,
    };
    let limits = Limits::default();
    let headers = Headers {
        history: chain.history.as_deref(),
        proof: proof.proof.as_deref(),
        certs: proof.certs.as_deref().or(chain.certs.as_deref()),
    };
    let verified = Verifier::new(&bundle, &limits).verify(
        &Presented {
            headers,
            peer: a.peer,
            audience: a.aud,
            body: &body,
            now,
        },
        None,
    );
    match (verified, a.format) {
        (Ok(v), OutputFormat::Text) => print(&render(&v, a.aud, now)),
        (Ok(v), OutputFormat::Json) => print(&format!("{}\n", render_json(&v, a.aud, now))),
        (Err(r), OutputFormat::Text) => Err(Failure::refused(&r)),
        (Err(r), OutputFormat::Json) => {
            print(&format!(
                "{}\n",
                json!({"ok": false, "reason": r.reason(), "detail": r.detail()})
            ))?;
            Err(Failure::refused(&r))
        }
    }
}

/// The verified chain and proof as one JSON document.
pub fn render_json(v: &VerifiedHistory, aud: &str, now: u64) -> Value {
    let entries: Vec<Value> = v
        .entries
        .iter()
        .map(|e| {
            json!({"seq": e.seq, "step": e.step, "result": e.result, "signer": e.iss.as_str(),
                   "next": e.nxt.as_str(), "iat": e.iat, "exp": e.exp,
                   "age": now.saturating_sub(e.iat), "claims": e.claims})
        })
        .collect();
    json!({
        "ok": true, "workflow": v.wid, "verified_at": now, "entries": entries,
        "proof": {"signer": v.proof.iss.as_str(), "audience": aud, "iat": v.proof.iat,
                  "exp": v.proof.exp, "jti": v.proof.jti},
        "replay_checked": false,
    })
}

/// Control characters (e.g. terminal escapes in a signed `step`) shown escaped.
fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn age(now: u64, t: u64) -> String {
    if t > now {
        format!("in {}", format_duration(t - now))
    } else {
        format_duration(now - t)
    }
}

/// The verified chain as a table, then the proof.
pub fn render(v: &VerifiedHistory, aud: &str, now: u64) -> String {
    let header = [
        "SEQ",
        "STEP",
        "RESULT",
        "SIGNER",
        "NEXT",
        "IAT (UTC)",
        "AGE",
        "CLAIMS",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_owned()).collect()];
    for e in &v.entries {
        let claims = match &e.claims {
            Value::Object(m) if m.is_empty() => "-".to_owned(),
            c => c.to_string(),
        };
        rows.push(vec![
            e.seq.to_string(),
            printable(&e.step),
            printable(&e.result),
            e.iss.to_string(),
            e.nxt.to_string(),
            format_utc(e.iat),
            age(now, e.iat),
            printable(&claims),
        ]);
    }
    let mut widths = vec![0usize; header.len()];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!(
        "workflow {}: {} entries, verified at {}\n",
        printable(&v.wid),
        v.entries.len(),
        format_utc(now)
    );
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "proof by {} for {}, iat {}, expires {} ({}), jti {}\n",
        v.proof.iss,
        printable(aud),
        format_utc(v.proof.iat),
        format_utc(v.proof.exp),
        if v.proof.exp >= now {
            format!("in {}", format_duration(v.proof.exp - now))
        } else {
            format!("{} ago", format_duration(now - v.proof.exp))
        },
        printable(&v.proof.jti),
    ));
    out.push_str("ok (replay of the jti is not checked offline)\n");
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn claims_argument() {
        assert_eq!(
            parse_claims(r#"{"amount":12000}"#).unwrap(),
            serde_json::json!({"amount": 12000})
        );
        assert!(parse_claims("[1]").is_err());
        assert!(parse_claims("{").is_err());
        let dup = parse_claims(r#"{"a":1,"a":2}"#).unwrap_err().to_string();
        assert!(dup.contains("twice"), "{dup}");
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(2100));
        assert!(parse_claims(&big).unwrap_err().to_string().contains("2048"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.json");
        std::fs::write(&f, r#"{"k": "v"}"#).unwrap();
        assert_eq!(
            parse_claims(&format!("@{}", f.display())).unwrap(),
            serde_json::json!({"k": "v"})
        );
    }

    #[test]
    fn bind_call_adds_the_call_claim_beside_the_other_claims() {
        let call =
            br#"{"name":"refund","arguments":{"order_id":"o-1","amount":12000,"currency":"USD"}}"#;
        let c = with_call(Some(serde_json::json!({"amount": 12000})), call).unwrap();
        assert_eq!(c["amount"], 12000);
        assert_eq!(c["call"]["tool"], "refund");
        assert_eq!(
            c["call"]["args_sha256"],
            "pKfMX11tpCs7e2dLXkAmu9klG_G7gIHQf5VmjcEzz_U"
        );
        assert_eq!(with_call(None, call).unwrap().as_object().unwrap().len(), 1);
        let clash = with_call(Some(serde_json::json!({"call": 1})), call).unwrap_err();
        assert!(clash.to_string().contains("already"), "{clash}");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("ok\u{1b}[31m\n"), "ok\\u{1b}[31m\\n");
        assert_eq!(printable("plain"), "plain");
    }

    #[test]
    fn ages() {
        assert_eq!(age(100, 40), "1m");
        assert_eq!(age(100, 130), "in 30s");
    }
}
