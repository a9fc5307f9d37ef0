//! End-to-end tests of `custody ca` and `custody history` through the built
//! binary: a development CA, three SVIDs, a two-entry history, a proof, and
//! offline verification, then tampering and the errors a user will meet.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const TD: &str = "example.org";
const FRAUD: &str = "spiffe://example.org/ns/payments/sa/fraud-agent";
const APPROVALS: &str = "spiffe://example.org/ns/payments/sa/approvals";
const REFUND: &str = "spiffe://example.org/ns/payments/sa/refund-agent";
const TOOL: &str = "spiffe://example.org/ns/payments/sa/refund-tool";
const BODY: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"refund","arguments":{"amount":12000,"currency":"USD"}}}"#;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn run(&self, args: &(impl Args + ?Sized)) -> Output {
        self.run_with_stdin(args, None)
    }

    fn run_with_stdin(&self, args: &(impl Args + ?Sized), stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_custody"));
        cmd.args(args.words())
            .current_dir(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd.spawn().unwrap();
        if let Some(bytes) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(bytes).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &(impl Args + ?Sized)) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "custody {:?} failed: {}",
            args.words(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs, asserts the exit code and a single stderr line; returns that line.
    fn fails(&self, args: &(impl Args + ?Sized), code: i32) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8(out.stderr).unwrap();
        let words = args.words();
        assert_eq!(out.status.code(), Some(code), "custody {words:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.ends_with('\n'));
        stderr.trim_end().to_owned()
    }

    fn issue(&self, ca: &str, id: &str, out: &str) {
        self.ok(&format!("ca issue --ca {ca} --id {id} --out {out}"));
    }

    /// The two-entry history of the brief in `h.json`, and `body.json`.
    fn two_entries(&self) {
        self.ok(&format!("ca init --trust-domain {TD} --out ca"));
        self.issue("ca", FRAUD, "fraud");
        self.issue("ca", APPROVALS, "approvals");
        self.issue("ca", REFUND, "refund");
        self.ok(&format!(
            "history append --cert fraud/svid.pem --key fraud/svid.key \
             --step fraud_check_passed --result approved --next {APPROVALS} --wid wf-123 --out h.json"
        ));
        self.ok(&format!(
            "history append --in h.json --cert approvals/svid.pem --key approvals/svid.key \
             --step human_approval --result approved --next {REFUND} --claims {{\"amount\":12000}} --out h.json"
        ));
        std::fs::write(self.path("body.json"), BODY).unwrap();
    }

    /// `history prove` as `who` over `h.json` and `body.json`, into `out`.
    fn prove(&self, who: &str, out: &str) {
        self.ok(&format!(
            "history prove --in h.json --cert {who}/svid.pem --key {who}/svid.key \
             --aud {TOOL} --body body.json --out {out}"
        ));
    }

    /// `history verify` of `input` against `bundle` with the proof in
    /// `proof`, as presented over `peer`'s mTLS, for `body.json`.
    fn verify_args(&self, input: &str, bundle: &str, proof: &str, peer: &str) -> String {
        format!(
            "history verify --in {input} --bundle {bundle} --proof-headers {proof} \
             --body body.json --peer {peer} --aud {TOOL}"
        )
    }

    fn json(&self, file: &str) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.path(file)).unwrap()).unwrap()
    }
}

/// A command line of `custody`: a string is split on white space (for the
/// arguments here that hold none), a slice is taken word for word.
trait Args {
    fn words(&self) -> Vec<&str>;
}

impl Args for str {
    fn words(&self) -> Vec<&str> {
        self.split_whitespace().collect()
    }
}

impl Args for String {
    fn words(&self) -> Vec<&str> {
        self.as_str().words()
    }
}

impl Args for [&str] {
    fn words(&self) -> Vec<&str> {
        self.to_vec()
    }
}

/// `line` with the value of `flag` replaced by `-`: read from standard input.
fn from_stdin(line: &str, flag: &str) -> String {
    let mut words = line.words();
    let at = words.iter().position(|w| *w == flag).unwrap();
    words[at + 1] = "-";
    words.join(" ")
}

fn b64url_decode(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn payload(entry: &str) -> serde_json::Value {
    serde_json::from_slice(&b64url_decode(entry.split('.').nth(1).unwrap())).unwrap()
}

#[test]
fn builds_proves_and_verifies_a_two_entry_history() {
    let env = Env::new();
    env.two_entries();

    // The history file: exactly the two header values.
    let h = env.json("h.json");
    let obj = h.as_object().unwrap();
    assert_eq!(
        obj.keys().collect::<Vec<_>>(),
        ["workflow-history", "workflow-history-certs"]
    );
    let history = h["workflow-history"].as_str().unwrap();
    let entries: Vec<&str> = history.split('~').collect();
    assert_eq!(entries.len(), 2);
    let (e0, e1) = (payload(entries[0]), payload(entries[1]));
    assert_eq!(e0["iss"], FRAUD);
    assert_eq!(e0["nxt"], APPROVALS);
    assert_eq!(e0["wid"], "wf-123");
    assert_eq!(e1["seq"], 1);
    assert_eq!(e1["iss"], APPROVALS);
    assert_eq!(e1["nxt"], REFUND);
    assert_eq!(e1["claims"], serde_json::json!({"amount": 12000}));
    assert_eq!(
        e1["exp"].as_u64().unwrap() - e1["iat"].as_u64().unwrap(),
        3600
    );
    // Two signers, two certificates.
    assert_eq!(
        h["workflow-history-certs"]
            .as_str()
            .unwrap()
            .split('~')
            .count(),
        2
    );

    // Prove as refund-agent: three `name: value` lines, caller's cert added.
    env.prove("refund", "proof.txt");
    let lines = std::fs::read_to_string(env.path("proof.txt")).unwrap();
    let names: Vec<&str> = lines
        .lines()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "workflow-history",
            "workflow-history-proof",
            "workflow-history-certs"
        ]
    );
    assert!(lines.contains(&format!("workflow-history: {history}\n")));
    let certs_line = lines.lines().nth(2).unwrap();
    assert_eq!(certs_line.split('~').count(), 3);
    let proof = lines
        .lines()
        .nth(1)
        .unwrap()
        .trim_start_matches("workflow-history-proof: ");
    let p = payload(proof);
    assert_eq!(p["iss"], REFUND);
    assert_eq!(p["aud"], TOOL);
    assert_eq!(p["len"], 2);
    assert_eq!(p["exp"].as_u64().unwrap() - p["iat"].as_u64().unwrap(), 60);
    assert!(b64url_decode(p["jti"].as_str().unwrap()).len() >= 16);

    // Verify offline with the PEM bundle: the table.
    let out = env.ok(&env.verify_args("h.json", "ca/bundle.pem", "proof.txt", REFUND));
    assert!(out.starts_with("workflow wf-123: 2 entries"), "{out}");
    let header = out.lines().nth(1).unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>().join(" "),
        "SEQ STEP RESULT SIGNER NEXT IAT (UTC) AGE CLAIMS"
    );
    let row0 = out.lines().nth(2).unwrap();
    assert!(row0.starts_with("0 ") && row0.contains("fraud_check_passed") && row0.contains(FRAUD));
    let row1 = out.lines().nth(3).unwrap();
    assert!(row1.starts_with("1 ") && row1.contains("human_approval"));
    assert!(row1.contains(r#"{"amount":12000}"#) && row1.contains(REFUND));
    assert!(
        out.contains(&format!("proof by {REFUND} for {TOOL}")),
        "{out}"
    );

    // The SPIFFE bundle (JSON) works the same; so does --format json and a body on stdin.
    let json_out = env.run_with_stdin(
        &format!(
            "history prove --in h.json --cert refund/svid.pem --key refund/svid.key \
             --aud {TOOL} --body - --format json --ttl 30s"
        ),
        Some(BODY.as_bytes()),
    );
    assert!(json_out.status.success());
    std::fs::write(env.path("proof.json"), &json_out.stdout).unwrap();
    let pj = env.json("proof.json");
    assert_eq!(pj.as_object().unwrap().len(), 3);
    assert_eq!(pj["workflow-history"], history);
    let p = payload(pj["workflow-history-proof"].as_str().unwrap());
    assert_eq!(p["exp"].as_u64().unwrap() - p["iat"].as_u64().unwrap(), 30);
    let out = env.ok(&env.verify_args("h.json", "ca/bundle.spiffe.json", "proof.json", REFUND));
    assert!(out.contains("ok"), "{out}");

    // Later: the proof has expired (--now).
    let late = (p["exp"].as_u64().unwrap() + 31).to_string();
    let args = env.verify_args("h.json", "ca/bundle.pem", "proof.json", REFUND);
    let e = env.fails(&format!("{args} --now {late}"), 1);
    assert!(e.starts_with("custody: refused: proof_expired: "), "{e}");

    // A different body.
    std::fs::write(env.path("body.json"), BODY.replace("12000", "99000")).unwrap();
    let e = env.fails(
        &env.verify_args("h.json", "ca/bundle.pem", "proof.txt", REFUND),
        1,
    );
    assert!(e.starts_with("custody: refused: proof_body: "), "{e}");
}

#[test]
fn a_tampered_entry_is_refused() {
    let env = Env::new();
    env.two_entries();
    env.prove("refund", "proof.txt");
    // Change entry 1's claims (amount 12000 -> 99000), keep its signature.
    let mut h = env.json("h.json");
    let history = h["workflow-history"].as_str().unwrap().to_owned();
    let mut entries: Vec<String> = history.split('~').map(str::to_owned).collect();
    let segs: Vec<&str> = entries[1].split('.').collect();
    let body = String::from_utf8(b64url_decode(segs[1])).unwrap();
    assert!(body.contains("12000"));
    let forged = format!(
        "{}.{}.{}",
        segs[0],
        b64url(body.replace("12000", "99000").as_bytes()),
        segs[2]
    );
    entries[1] = forged;
    h["workflow-history"] = serde_json::Value::String(entries.join("~"));
    std::fs::write(env.path("tampered.json"), h.to_string()).unwrap();
    let e = env.fails(
        &env.verify_args("tampered.json", "ca/bundle.pem", "proof.txt", REFUND),
        1,
    );
    assert_eq!(
        e,
        "custody: refused: signature_invalid: history entry 1 has a signature that does not verify"
    );
}

#[test]
fn the_wrong_caller_is_refused() {
    let env = Env::new();
    env.two_entries();
    // fraud-agent proves a chain that names refund-agent: prove warns...
    let out = env.run(&format!(
        "history prove --in h.json --cert fraud/svid.pem --key fraud/svid.key \
         --aud {TOOL} --body body.json --out proof.txt"
    ));
    assert!(out.status.success());
    let warning = String::from_utf8(out.stderr).unwrap();
    assert!(warning.starts_with("custody: warning: "), "{warning}");
    // ...and the verifier refuses: presented over refund-agent's mTLS, the proof is not the peer's;
    let e = env.fails(
        &env.verify_args("h.json", "ca/bundle.pem", "proof.txt", REFUND),
        1,
    );
    assert!(e.starts_with("custody: refused: proof_signer: "), "{e}");
    // over fraud-agent's own mTLS, fraud-agent is not the holder the chain names.
    let e = env.fails(
        &env.verify_args("h.json", "ca/bundle.pem", "proof.txt", FRAUD),
        1,
    );
    assert!(e.starts_with("custody: refused: proof_holder: "), "{e}");
    // A certificate with somebody else's key cannot sign at all.
    let e = env.fails(
        &format!(
            "history prove --in h.json --cert refund/svid.pem --key fraud/svid.key \
             --aud {TOOL} --body body.json"
        ),
        2,
    );
    assert!(e.contains("does not hold the key"), "{e}");
    // Nor can a signer append out of turn.
    let e = env.fails(
        &format!(
            "history append --in h.json --cert fraud/svid.pem --key fraud/svid.key \
             --step again --result approved --next {REFUND} --out h2.json"
        ),
        2,
    );
    assert!(e.contains("cannot append") && e.contains(REFUND), "{e}");
}

#[test]
fn another_trust_domain_is_refused() {
    let env = Env::new();
    env.two_entries();
    env.prove("refund", "proof.txt");
    env.ok("ca init --trust-domain other.org --out other");
    // Its bundle names other.org: no authority for example.org.
    let e = env.fails(
        &env.verify_args("h.json", "other/bundle.pem", "proof.txt", REFUND),
        1,
    );
    assert!(
        e.starts_with("custody: refused: cert_unknown_trust_domain: "),
        "{e}"
    );
    // Claimed for example.org, it is not the authority that issued the SVIDs.
    let args = env.verify_args("h.json", "other/bundle.spiffe.json", "proof.txt", REFUND);
    let e = env.fails(&format!("{args} --trust-domain {TD}"), 1);
    assert!(e.starts_with("custody: refused: cert_untrusted: "), "{e}");
    // And that CA will not issue an example.org SVID.
    let e = env.fails(&format!("ca issue --ca other --id {FRAUD} --out x"), 2);
    assert_eq!(
        e,
        format!("custody: error: {FRAUD} is not in the CA's trust domain other.org")
    );
}

#[test]
fn errors_are_one_line() {
    let env = Env::new();
    env.two_entries();
    // A missing file.
    let e = env.fails(
        &env.verify_args("missing.json", "ca/bundle.pem", "p.txt", REFUND),
        2,
    );
    assert!(e.starts_with("custody: error: missing.json: "), "{e}");
    let e = env.fails(
        &format!(
            "history append --cert nope.pem --key fraud/svid.key \
             --step s --result r --next {APPROVALS} --out x.json"
        ),
        2,
    );
    assert!(e.starts_with("custody: error: nope.pem: "), "{e}");
    // A bad SPIFFE ID (uppercase trust domain, missing scheme).
    for bad in [
        "spiffe://Example.org/x",
        "example.org/x",
        "spiffe://example.org/a/../b",
    ] {
        let e = env.fails(
            &format!(
                "history append --cert fraud/svid.pem --key fraud/svid.key \
                 --step s --result r --next {bad} --out x.json"
            ),
            2,
        );
        assert!(e.starts_with("custody: error: invalid value "), "{e}");
        assert!(e.contains(bad), "{e}");
    }
    let e = env.fails("ca issue --ca ca --id spiffe://example.org --out x", 2);
    assert!(e.contains("needs a SPIFFE ID with a path"), "{e}");
    // Bad durations, a too long proof, a --wid that is not the chain's.
    let e = env.fails(
        &format!("ca issue --ca ca --id {FRAUD} --out x --ttl 1y"),
        2,
    );
    assert!(e.contains("bad duration"), "{e}");
    let e = env.fails(
        &format!(
            "history prove --in h.json --cert refund/svid.pem --key refund/svid.key \
             --aud {TOOL} --body body.json --ttl 2m"
        ),
        2,
    );
    assert!(e.contains("proof lifetime cap of 60s"), "{e}");
    let e = env.fails(
        &format!(
            "history append --in h.json --cert refund/svid.pem --key refund/svid.key \
             --step refund --result done --next {TOOL} --wid other --out h2.json"
        ),
        2,
    );
    assert!(e.contains("differs from the chain's wid \"wf-123\""), "{e}");
    // Not a headers file; a repeated header is the verifier's header_repeated.
    std::fs::write(env.path("junk.json"), "{\"workflow_history\": \"x\"}").unwrap();
    let e = env.fails(
        &env.verify_args("junk.json", "ca/bundle.pem", "junk.json", REFUND),
        2,
    );
    assert!(e.contains("unknown member \"workflow_history\""), "{e}");
    std::fs::write(
        env.path("twice.txt"),
        "workflow-history: a.b.c\nworkflow-history: a.b.c\n",
    )
    .unwrap();
    let e = env.fails(
        &env.verify_args("twice.txt", "ca/bundle.pem", "twice.txt", REFUND),
        1,
    );
    assert!(e.starts_with("custody: refused: header_repeated: "), "{e}");
    // A usage error.
    let e = env.fails("history verify --in h.json", 2);
    assert!(
        e.starts_with("custody: error: the following required arguments"),
        "{e}"
    );
    // The CA key is private and not overwritten without --force.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca/ca.key", "fraud/svid.key"] {
            let mode = std::fs::metadata(env.path(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }
    let before = std::fs::read(env.path("ca/ca.key")).unwrap();
    let e = env.fails(&format!("ca init --trust-domain {TD} --out ca"), 2);
    assert!(e.contains("--force"), "{e}");
    assert_eq!(std::fs::read(env.path("ca/ca.key")).unwrap(), before);
    env.ok(&format!(
        "ca init --trust-domain {TD} --out ca --force --sequence 7"
    ));
    assert_ne!(std::fs::read(env.path("ca/ca.key")).unwrap(), before);
    assert_eq!(env.json("ca/bundle.spiffe.json")["spiffe_sequence"], 7);
}

fn sans(pem_path: &Path) -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(pem_path).unwrap();
    let der = pem::parse_many(text).unwrap()[0].contents().to_vec();
    let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    for n in &c
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
    {
        match n {
            x509_parser::extensions::GeneralName::URI(u) => uris.push((*u).to_owned()),
            x509_parser::extensions::GeneralName::DNSName(d) => dns.push((*d).to_owned()),
            _ => {}
        }
    }
    (uris, dns)
}

#[test]
fn server_certificates_get_dns_names_and_stay_svids() {
    let env = Env::new();
    env.ok(&format!("ca init --trust-domain {TD} --out ca"));
    env.ok("ca issue --ca ca --id spiffe://example.org/envoy \
         --dns localhost --dns envoy.example.org --out envoy");
    let (uris, dns) = sans(&env.path("envoy/svid.pem"));
    assert_eq!(uris, ["spiffe://example.org/envoy"]);
    assert_eq!(dns, ["localhost", "envoy.example.org"]);
    // It is a valid X.509-SVID: it can sign and prove a history that verifies.
    env.ok("history append --cert envoy/svid.pem --key envoy/svid.key \
         --step s --result r --next spiffe://example.org/envoy --out h.json");
    std::fs::write(env.path("body.json"), BODY).unwrap();
    env.prove("envoy", "p.txt");
    env.ok(&env.verify_args(
        "h.json",
        "ca/bundle.pem",
        "p.txt",
        "spiffe://example.org/envoy",
    ));
    // (A name with a space: the one command line given word for word.)
    let e = env.fails(
        [
            "ca", "issue", "--ca", "ca", "--id", FRAUD, "--dns", "bad name", "--out", "x",
        ]
        .as_slice(),
        2,
    );
    assert!(e.contains("not a DNS name"), "{e}");
}

#[test]
fn an_intermediate_ca_sends_its_chain() {
    use custody_history::dev_ca;
    let env = Env::new();
    env.ok(&format!("ca init --trust-domain {TD} --out root"));
    // An intermediate CA directory: ca.pem (the intermediate) and ca.key.
    let root_pem = std::fs::read_to_string(env.path("root/bundle.pem")).unwrap();
    let root_key = std::fs::read_to_string(env.path("root/ca.key")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let inter = dev_ca::issue_with(
        &root_pem,
        &root_key,
        &dev_ca::SvidOptions {
            dns: Vec::new(),
            uris: vec!["spiffe://example.org".into()],
            not_before: now - 60,
            not_after: now + 86_400,
            ca: true,
            key_pem: None,
        },
    )
    .unwrap();
    std::fs::create_dir(env.path("inter")).unwrap();
    std::fs::write(env.path("inter/ca.pem"), &inter.cert_pem).unwrap();
    std::fs::write(env.path("inter/ca.key"), &inter.key_pkcs8_pem).unwrap();
    env.issue("inter", REFUND, "refund");
    let svid = std::fs::read_to_string(env.path("refund/svid.pem")).unwrap();
    assert_eq!(
        svid.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf + intermediate"
    );
    env.ok(&format!(
        "history append --cert refund/svid.pem --key refund/svid.key \
         --step s --result r --next {REFUND} --out h.json"
    ));
    assert_eq!(
        env.json("h.json")["workflow-history-certs"]
            .as_str()
            .unwrap()
            .split('~')
            .count(),
        2
    );
    std::fs::write(env.path("body.json"), BODY).unwrap();
    env.prove("refund", "p.txt");
    let p = std::fs::read_to_string(env.path("p.txt")).unwrap();
    assert_eq!(
        p.lines().nth(2).unwrap().split('~').count(),
        2,
        "no duplicates"
    );
    env.ok(&env.verify_args("h.json", "root/bundle.pem", "p.txt", REFUND));
}

/// Every known-answer vector of docs/history-format.md §10 (the edge cases
/// included) gets its verdict from `custody history verify` too, with the
/// vectors' three trust domains given as one SPIFFE bundle map.
#[test]
fn the_cli_gives_every_vector_its_verdict() {
    let env = Env::new();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../history/testdata");
    let fixtures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{root}/fixtures.json")).unwrap())
            .unwrap();
    let vectors: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{root}/vectors.json")).unwrap())
            .unwrap();
    let cas = &fixtures["cas"];
    let map = serde_json::json!({"trust_domains": {
        "example.org": cas["example"]["cert_pem"],
        "example.org.evil": cas["evil"]["spiffe_bundle"],
        "rsa.example": cas["rsa"]["cert_pem"],
    }});
    std::fs::write(env.path("bundles.json"), map.to_string()).unwrap();
    let aud = vectors["audience"].as_str().unwrap();
    let mut checked = 0;
    for v in vectors["vectors"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let chain = serde_json::json!({
            "workflow-history": v["workflow-history"],
            "workflow-history-certs": v["workflow-history-certs"],
        });
        let proof = serde_json::json!({"workflow-history-proof": v["workflow-history-proof"]});
        std::fs::write(env.path("chain.json"), chain.to_string()).unwrap();
        std::fs::write(env.path("proof.json"), proof.to_string()).unwrap();
        std::fs::write(env.path("body.json"), v["body"].as_str().unwrap()).unwrap();
        let args = format!(
            "history verify --in chain.json --bundle bundles.json --proof-headers proof.json \
             --body body.json --peer {} --aud {aud} --now {}",
            v["peer"].as_str().unwrap(),
            v["now"],
        );
        match v["expect"].as_str().unwrap() {
            "ok" => {
                env.ok(&args);
            }
            code => {
                let line = env.fails(&args, 1);
                assert!(
                    line.starts_with(&format!("custody: refused: {code}: ")),
                    "{name}: {line}"
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 30, "{checked}");
}

#[test]
fn every_reporting_command_speaks_json() {
    let env = Env::new();
    let v = |s: String| -> serde_json::Value { serde_json::from_str(&s).unwrap() };
    let init = v(env.ok(&format!(
        "ca init --trust-domain {TD} --out ca --format json"
    )));
    assert_eq!(init["trust_domain"], TD);
    assert_eq!(init["spiffe_sequence"], 1);
    assert!(init["bundle_pem"]
        .as_str()
        .unwrap()
        .ends_with("ca/bundle.pem"));
    assert!(init["ca_key"].as_str().unwrap().ends_with("ca/ca.key"));
    assert!(init["not_after"].as_u64().unwrap() > 1_700_000_000);
    let issued = v(env.ok(&format!(
        "ca issue --ca ca --id {FRAUD} --out fraud --dns localhost --format json"
    )));
    assert_eq!(issued["spiffe_id"], FRAUD);
    assert_eq!(issued["dns"], serde_json::json!(["localhost"]));
    assert!(issued["svid"].as_str().unwrap().ends_with("fraud/svid.pem"));
    env.issue("ca", REFUND, "refund");
    let appended = v(env.ok(&format!(
        "history append --cert fraud/svid.pem --key fraud/svid.key \
         --step fraud_check_passed --result approved --next {REFUND} --wid wf-9 \
         --out h.json --format json"
    )));
    assert_eq!(appended["seq"], 0);
    assert_eq!(appended["signer"], FRAUD);
    assert_eq!(appended["next"], REFUND);
    assert_eq!(appended["workflow"], "wf-9");
    assert_eq!(appended["out"], "h.json");
    std::fs::write(env.path("body.json"), BODY).unwrap();
    env.prove("refund", "proof.txt");
    let args = env.verify_args("h.json", "ca/bundle.pem", "proof.txt", REFUND);
    let verified = v(env.ok(&format!("{args} --format json")));
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["workflow"], "wf-9");
    assert_eq!(verified["entries"][0]["step"], "fraud_check_passed");
    assert_eq!(verified["proof"]["signer"], REFUND);
    assert_eq!(verified["replay_checked"], false);
    // A refusal: a JSON verdict on stdout, the one-line refusal on stderr, exit 1.
    let args = env.verify_args("h.json", "ca/bundle.pem", "proof.txt", FRAUD);
    let out = env.run(&format!("{args} --format json"));
    assert_eq!(out.status.code(), Some(1));
    let refused = v(String::from_utf8(out.stdout).unwrap());
    assert_eq!(
        (refused["ok"].as_bool(), refused["reason"].as_str()),
        (Some(false), Some("proof_signer"))
    );
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .starts_with("custody: refused: proof_signer: "));
}

#[test]
fn every_file_flag_reads_standard_input_for_a_dash_once() {
    let env = Env::new();
    env.two_entries();
    env.prove("refund", "proof.txt");
    let read = |p: &str| std::fs::read(env.path(p)).unwrap();
    let verified = |args: &str, stdin: &[u8]| {
        let out = env.run_with_stdin(args, Some(stdin));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // Each input of verify in turn from standard input.
    for (flag, file) in [
        ("--in", "h.json"),
        ("--bundle", "ca/bundle.pem"),
        ("--proof-headers", "proof.txt"),
        ("--body", "body.json"),
    ] {
        let args = env.verify_args("h.json", "ca/bundle.pem", "proof.txt", REFUND);
        let args = from_stdin(&args, flag);
        assert!(
            verified(&args, &read(file)).contains("ok (replay"),
            "{flag}"
        );
    }
    // The key of a signer from standard input (a secret manager's pipe), claims too.
    let appended = verified(
        &format!(
            "history append --in h.json --cert refund/svid.pem --key - \
             --step refund_issued --result done --next {FRAUD} --out h2.json"
        ),
        &read("refund/svid.key"),
    );
    assert!(appended.starts_with("entry 2 "), "{appended}");
    verified(
        &format!(
            "history append --cert fraud/svid.pem --key fraud/svid.key \
             --step s --result r --next {REFUND} --claims @- --out h3.json"
        ),
        br#"{"amount": 5}"#,
    );
    let h3: serde_json::Value = serde_json::from_slice(&read("h3.json")).unwrap();
    let entry = h3["workflow-history"].as_str().unwrap();
    assert_eq!(payload(entry)["claims"], serde_json::json!({"amount": 5}));
    // Standard input is read once: a second `-` is an error (exit 2), never an empty file.
    let args = env.verify_args("-", "ca/bundle.pem", "proof.txt", REFUND);
    let out = env.run_with_stdin(&from_stdin(&args, "--body"), Some(&read("h.json")));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("standard input was already read"));
    // A missing file is exit 2, as docs/cli.md says.
    let args = env.verify_args("nope.json", "ca/bundle.pem", "proof.txt", REFUND);
    let line = env.fails(&args, 2);
    assert!(line.starts_with("custody: error: nope.json: "), "{line}");
}
