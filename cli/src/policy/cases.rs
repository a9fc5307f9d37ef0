//! Decision cases (`*.cases.yaml`, docs/policy.md "Testing policies"): each
//! case is a request the real pipeline decides natively. A case with a
//! `history` script gets development CAs and SVIDs generated in memory, its
//! entries signed and its proof made for the very body it sends, then goes
//! through `decide::on_head` and `Pending::on_body` with the P-256 verifier
//! and a replay cache, exactly as in the filter. A case with a raw `input`
//! document is decided as `custody policy eval` does.

use super::dev_pki::Pki;
use super::eval;
use custody_core::config::Config;
use custody_core::decide::on_head;
use custody_core::decision::Decision;
use custody_core::policy::Policy;
use custody_core::proof::{ProofEnv, CERTS_HEADER, HISTORY_HEADER, PROOF_HEADER};
use custody_core::reason::Reason;
use custody_core::transport::Head;
use custody_core::SpiffeId;
use custody_history::sign::{
    append_entry, certs_header, make_proof, EntryFields, ProofFields, SignError, Signer,
};
use custody_history::{b64url, sha256, P256Verifier, ReplayCache, ENTRY_TYP};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::path::Path;

/// The time every case is decided at, unless the file sets `now`.
pub const DEFAULT_NOW: u64 = 1_776_522_000;
/// This server's SPIFFE ID (`audience`), unless the file sets one.
pub const DEFAULT_AUDIENCE: &str = "spiffe://custody.test/tool-server";
/// Lifetime of scripted entries (`exp - now`), unless an entry sets `ttl`.
const DEFAULT_TTL: u64 = 3600;
/// Workflow id of scripted histories, unless a case sets `wid`.
const DEFAULT_WID: &str = "wf-test";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    now: Option<u64>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    caller: Option<String>,
    #[serde(default)]
    call: Option<Call>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    history: Option<Vec<Entry>>,
    #[serde(default)]
    prover: Option<String>,
    #[serde(default)]
    tamper: Option<String>,
    #[serde(default)]
    wid: Option<String>,
    #[serde(default)]
    input: Option<Value>,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Call {
    method: String,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
    #[serde(default)]
    params: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    step: String,
    by: String,
    #[serde(default)]
    age: Option<Seconds>,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    claims: Option<Value>,
    #[serde(default)]
    ttl: Option<Seconds>,
}

/// A duration: seconds, or text like `10m`, `1h30m`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(u64),
    Text(String),
}

impl Seconds {
    fn secs(&self) -> Result<u64, String> {
        match self {
            Seconds::Number(n) => Ok(*n),
            Seconds::Text(t) => crate::util::parse_duration(t),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: Expected,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    rule: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Expected {
    Allow,
    Deny,
}

/// One case's outcome: `Err` says why it failed.
pub struct CaseOutcome {
    pub name: String,
    pub result: Result<(), String>,
}

/// Runs every case of a case file against `policy`. `Err` when the file
/// itself cannot be read or set up.
pub fn run_file(policy: &Policy, path: &Path) -> Result<Vec<CaseOutcome>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let file: CaseFile = serde_norway::from_str(&text).map_err(|e| e.to_string())?;
    let now = file.now.unwrap_or(DEFAULT_NOW);
    let audience = file.audience.as_deref().unwrap_or(DEFAULT_AUDIENCE);
    let audience_id =
        SpiffeId::parse(audience).map_err(|e| format!("audience '{audience}': {e}"))?;
    let mut pki = Pki::new(now);
    // Every trust domain the cases name gets a development CA, trusted by the filter.
    let mut domains = BTreeSet::from([audience_id.trust_domain().to_owned()]);
    for case in &file.cases {
        let ids = case.caller.iter().chain(&case.prover).chain(
            case.history
                .iter()
                .flatten()
                .flat_map(|e| std::iter::once(&e.by).chain(&e.next)),
        );
        for id in ids {
            if let Ok(id) = SpiffeId::parse(id) {
                domains.insert(id.trust_domain().to_owned());
            }
        }
    }
    let mut trust = Map::new();
    for td in &domains {
        let ca = pki.ca(td)?;
        trust.insert(td.clone(), json!({"bundle_pem": ca.bundle_pem}));
    }
    let config = json!({
        "audience": audience,
        "trust_domains": trust,
        "policy": serde_json::to_value(policy).map_err(|e| e.to_string())?,
    });
    let config = Config::from_json(config.to_string().as_bytes())
        .map_err(|e| format!("the test configuration does not load: {e}"))?;
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, case) in file.cases.iter().enumerate() {
        let name = if case.name.trim().is_empty() {
            format!("cases[{i}]")
        } else {
            case.name.clone()
        };
        let result = if names.insert(name.clone()) {
            run_case(&config, &mut pki, now, audience, case)
        } else {
            Err("another case has the same name".to_owned())
        };
        out.push(CaseOutcome { name, result });
    }
    Ok(out)
}

/// Decides one case and compares with its expectation.
fn run_case(
    config: &Config,
    pki: &mut Pki,
    now: u64,
    audience: &str,
    case: &Case,
) -> Result<(), String> {
    let expect = &case.expect;
    match (expect.decision, &expect.reason, &expect.rule) {
        (Expected::Allow, Some(_), _) => return Err("expect: an allow has no `reason`".into()),
        (Expected::Deny, _, Some(_)) => return Err("expect: a deny has no `rule`".into()),
        (_, Some(code), _) if !Reason::all().any(|r| r.code() == code) => {
            return Err(format!("expect: unknown reason code '{code}'"));
        }
        _ => {}
    }
    let (verdict, detail) = match &case.input {
        Some(input) => (decide_input(config, case, input, now)?, None),
        None => {
            let d = decide_request(config, pki, now, audience, case)?;
            (d.verdict, d.detail)
        }
    };
    let met = match (&verdict, expect.decision) {
        (Ok(rule), Expected::Allow) => expect.rule.as_ref().is_none_or(|r| r == rule),
        (Err(reason), Expected::Deny) => expect.reason.as_ref().is_none_or(|c| c == reason.code()),
        _ => false,
    };
    if met {
        return Ok(());
    }
    let want = match (expect.decision, &expect.reason, &expect.rule) {
        (Expected::Allow, _, Some(rule)) => format!("allow (rule {rule})"),
        (Expected::Allow, _, None) => "allow".to_owned(),
        (Expected::Deny, Some(code), _) => format!("deny ({code})"),
        (Expected::Deny, None, _) => "deny".to_owned(),
    };
    let mut why = format!("expected {want}, got {}", eval::text(&verdict));
    if let Some(d) = detail.filter(|d| !d.is_empty()) {
        why.push_str(&format!(": {d}"));
    }
    Err(why)
}

/// A raw `input` case: decided like `custody policy eval`, missing `now` set to the file's.
fn decide_input(
    config: &Config,
    case: &Case,
    input: &Value,
    now: u64,
) -> Result<Result<String, Reason>, String> {
    let extra = [
        ("caller", case.caller.is_some()),
        ("call", case.call.is_some()),
        ("body", case.body.is_some()),
        ("history", case.history.is_some()),
        ("prover", case.prover.is_some()),
        ("tamper", case.tamper.is_some()),
        ("wid", case.wid.is_some()),
    ];
    if let Some((key, _)) = extra.iter().find(|(_, set)| *set) {
        return Err(format!("a case with `input` takes no `{key}`"));
    }
    let mut doc = input.clone();
    eval::decide(&config.policy, &mut doc, now).map_err(|e| format!("input: {e}"))
}

/// A request case: the body built from `call` (or taken from `body`), the
/// history script signed, proven by the caller (or `prover`), then decided
/// by the filter's own stages.
fn decide_request(
    config: &Config,
    pki: &mut Pki,
    now: u64,
    audience: &str,
    case: &Case,
) -> Result<Decision, String> {
    let caller = case
        .caller
        .as_deref()
        .ok_or("a case needs `caller` (or a raw `input`)")?;
    let caller = SpiffeId::parse(caller).map_err(|e| format!("caller '{caller}': {e}"))?;
    let (method, mut body) = match (&case.call, &case.body) {
        (Some(call), None) => call_body(call)?,
        (None, Some(body)) => ("POST", body.clone().into_bytes()),
        _ => return Err("a case needs exactly one of `call` and `body`".into()),
    };
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    match &case.history {
        None => {
            for (key, set) in [
                ("prover", case.prover.is_some()),
                ("tamper", case.tamper.is_some()),
                ("wid", case.wid.is_some()),
            ] {
                if set {
                    return Err(format!("`{key}` needs a `history`"));
                }
            }
        }
        Some(entries) => {
            let script = Script {
                entries,
                caller: caller.as_str(),
                prover: case.prover.as_deref().unwrap_or(caller.as_str()),
                wid: case.wid.as_deref().unwrap_or(DEFAULT_WID),
                audience,
                now,
            };
            let mut signed = script.sign(pki, &body)?;
            if let Some(t) = &case.tamper {
                tamper(&mut signed, &mut body, t)?;
            }
            headers = vec![
                (HISTORY_HEADER.to_owned(), signed.history.into_bytes()),
                (PROOF_HEADER.to_owned(), signed.proof.into_bytes()),
                (CERTS_HEADER.to_owned(), signed.certs.into_bytes()),
            ];
        }
    }
    let head = Head {
        method,
        path: "/mcp",
        content_type: (method == "POST").then_some("application/json"),
        content_length: None,
    };
    let pending = match on_head(config, Ok(caller), &head, &headers) {
        Ok(p) => p,
        Err(d) => return Ok(*d),
    };
    let mut replay = ReplayCache::new(64, 30);
    let mut env = ProofEnv {
        now,
        trust: &config.trust,
        ecdsa: &P256Verifier,
        cache: None,
        input: None,
        replay: &mut replay,
    };
    Ok(pending.on_body(config, &body, &mut env))
}

/// The HTTP method and body of a `call`.
fn call_body(call: &Call) -> Result<(&'static str, Vec<u8>), String> {
    let m = call.method.as_str();
    let has_params = call.tool.is_some()
        || call.resource.is_some()
        || call.prompt.is_some()
        || call.arguments.is_some()
        || call.params.is_some();
    if matches!(m, "http:GET" | "http:DELETE" | "jsonrpc:response") && has_params {
        return Err(format!(
            "call: {m} takes no tool, resource, prompt, arguments or params"
        ));
    }
    let message = match m {
        "http:GET" => return Ok(("GET", Vec::new())),
        "http:DELETE" => return Ok(("DELETE", Vec::new())),
        "jsonrpc:response" => {
            json!({"jsonrpc": "2.0", "id": call.id.clone().unwrap_or(json!(1)), "result": {}})
        }
        _ => {
            let mut msg = json!({"jsonrpc": "2.0", "method": m});
            // Notifications carry no id.
            match &call.id {
                Some(id) => msg["id"] = id.clone(),
                None if !m.starts_with("notifications/") => msg["id"] = json!(1),
                None => {}
            }
            if let Some(params) = call_params(call)? {
                msg["params"] = params;
            }
            msg
        }
    };
    Ok(("POST", message.to_string().into_bytes()))
}

/// `params` as given, or built from `tool`/`resource`/`prompt` and `arguments`.
fn call_params(call: &Call) -> Result<Option<Value>, String> {
    if let Some(params) = &call.params {
        if call.tool.is_some()
            || call.resource.is_some()
            || call.prompt.is_some()
            || call.arguments.is_some()
        {
            return Err("call: give `params`, or `tool`/`resource`/`prompt`/`arguments`".into());
        }
        return Ok(Some(params.clone()));
    }
    let mut params = Map::new();
    let targets = [&call.tool, &call.resource, &call.prompt]
        .iter()
        .filter(|t| t.is_some())
        .count();
    if targets > 1 {
        return Err("call: give at most one of `tool`, `resource`, `prompt`".into());
    }
    if call.method == "completion/complete" {
        if let Some(p) = &call.prompt {
            params.insert("ref".into(), json!({"type": "ref/prompt", "name": p}));
        }
        if let Some(r) = &call.resource {
            params.insert("ref".into(), json!({"type": "ref/resource", "uri": r}));
        }
    } else {
        if let Some(name) = call.tool.as_ref().or(call.prompt.as_ref()) {
            params.insert("name".into(), json!(name));
        }
        if let Some(uri) = &call.resource {
            params.insert("uri".into(), json!(uri));
        }
    }
    if let Some(args) = &call.arguments {
        params.insert("arguments".into(), args.clone());
    }
    Ok((!params.is_empty()).then_some(Value::Object(params)))
}

/// A history script, ready to sign.
struct Script<'a> {
    entries: &'a [Entry],
    caller: &'a str,
    prover: &'a str,
    wid: &'a str,
    audience: &'a str,
    now: u64,
}

/// The three header values.
struct Signed {
    history: String,
    proof: String,
    certs: String,
}

impl Script<'_> {
    fn sign(&self, pki: &mut Pki, body: &[u8]) -> Result<Signed, String> {
        if self.entries.is_empty() {
            return Err(
                "`history` lists no entries (leave it out for a request without one)".into(),
            );
        }
        let mut chain: Option<String> = None;
        let mut certs: Vec<Vec<u8>> = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let at = |m: String| format!("history[{i}]: {m}");
            let signer = pki.signer(&e.by).map_err(at)?;
            // Handed to the next entry's signer; the last to the caller.
            let next = match (&e.next, self.entries.get(i + 1)) {
                (Some(n), _) => n.as_str(),
                (None, Some(following)) => following.by.as_str(),
                (None, None) => self.caller,
            };
            let age = e.age.as_ref().map_or(Ok(0), Seconds::secs).map_err(at)?;
            let ttl = e
                .ttl
                .as_ref()
                .map_or(Ok(DEFAULT_TTL), Seconds::secs)
                .map_err(at)?;
            let fields = EntryFields {
                wid: self.wid,
                step: &e.step,
                result: e.result.as_deref().unwrap_or("approved"),
                nxt: next,
                iat: self.now.saturating_sub(age),
                exp: self.now.saturating_add(ttl),
                claims: e.claims.as_ref(),
            };
            let appended = match append_entry(chain.as_deref(), &signer, &fields) {
                // A script may have an entry signed by someone the previous
                // entry did not hand the history to (a chain-custody attack).
                Err(SignError::NotNextHolder) => {
                    append_unchecked(chain.as_deref(), &signer, &fields)
                }
                other => other.map_err(|e| at(e.to_string()))?,
            };
            chain = Some(appended);
            if !certs.iter().any(|c| c == signer.cert_der()) {
                certs.push(signer.cert_der().to_vec());
            }
        }
        let history = chain.unwrap_or_default();
        let prover = pki
            .signer(self.prover)
            .map_err(|m| format!("prover: {m}"))?;
        if !certs.iter().any(|c| c == prover.cert_der()) {
            certs.push(prover.cert_der().to_vec());
        }
        let proof = make_proof(
            &history,
            &prover,
            body,
            &ProofFields {
                aud: self.audience,
                iat: self.now,
                exp: self.now + 60,
                jti: &[0x5a; 16],
            },
        )
        .map_err(|e| format!("proof: {e}"))?;
        Ok(Signed {
            history,
            proof,
            certs: certs_header(certs.iter().map(Vec::as_slice)),
        })
    }
}

/// [`append_entry`] without the holder check: `seq` and `prev` follow the
/// last entry, whoever signs.
fn append_unchecked(history: Option<&str>, signer: &Signer, f: &EntryFields<'_>) -> String {
    let (seq, prev) = match history {
        None => (0, Value::Null),
        Some(h) => {
            let last = h.rsplit('~').next().unwrap_or(h);
            (
                h.split('~').count(),
                json!(b64url(&sha256(last.as_bytes()))),
            )
        }
    };
    let mut payload = json!({
        "v": 1, "wid": f.wid, "seq": seq, "prev": prev,
        "iss": signer.spiffe_id().as_str(), "nxt": f.nxt,
        "step": f.step, "result": f.result, "iat": f.iat, "exp": f.exp,
    });
    if let Some(c) = f.claims {
        payload["claims"] = c.clone();
    }
    let entry = signer.sign_raw(&signer.header_json(ENTRY_TYP), &payload.to_string());
    match history {
        None => entry,
        Some(h) => format!("{h}~{entry}"),
    }
}

/// `entry N` or `proof`: one character of that signature changed;
/// `body`: the body changed after it was proven.
fn tamper(signed: &mut Signed, body: &mut Vec<u8>, what: &str) -> Result<(), String> {
    let words: Vec<&str> = what.split_whitespace().collect();
    match words.as_slice() {
        ["proof"] => signed.proof = flip_signature(&signed.proof),
        ["body"] => body.extend_from_slice(b" "),
        ["entry", n] => {
            let n: usize = n
                .parse()
                .map_err(|_| format!("tamper: '{what}': N must be an entry index"))?;
            let mut entries: Vec<String> = signed.history.split('~').map(str::to_owned).collect();
            let entry = entries
                .get_mut(n)
                .ok_or(format!("tamper: the history has no entry {n}"))?;
            *entry = flip_signature(entry);
            signed.history = entries.join("~");
        }
        _ => {
            return Err(format!(
                "tamper: '{what}': use `entry N`, `proof` or `body`"
            ))
        }
    }
    Ok(())
}

/// Changes one character early in a compact JWS's signature (inside `r`, so
/// the signature stays well-formed but no longer verifies).
fn flip_signature(jws: &str) -> String {
    let Some(dot) = jws.rfind('.') else {
        return jws.to_owned();
    };
    let mut bytes = jws.as_bytes().to_vec();
    if let Some(c) = bytes.get_mut(dot + 6) {
        *c = if *c == b'A' { b'B' } else { b'A' };
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
