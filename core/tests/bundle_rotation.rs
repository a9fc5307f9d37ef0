//! A bundle endpoint rotating example.org's bundle under one VM's live
//! caches, with real signatures (the fixture CA and SVIDs of
//! history/testdata): nothing is trusted before the first bundle, a newer
//! bundle takes effect for history signers and callers alike, a removed
//! authority does not survive in the verification caches, and an older
//! bundle changes nothing. Runs natively and on wasm32.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use custody_core::bundle_fetch as fetch;
use custody_core::bundles::{self, Held, Merge, Record, Watch};
use custody_core::config::Config;
use custody_core::decide::on_head;
use custody_core::identity::{from_peer_certificate, CertCache, PeerFacts};
use custody_core::proof::{ProofEnv, CERTS_HEADER, HISTORY_HEADER, PROOF_HEADER};
use custody_core::reason::Reason;
use custody_core::transport::Head;
use custody_core::SpiffeId;
use custody_history::sign::{append_entry, certs_header, make_proof, EntryFields, ProofFields};
use custody_history::{Code, Limits, P256Verifier, ReplayCache, TrustBundle, VerifyCache};
use serde_json::json;

use custody_testkit::{ca_spiffe_bundle, cert_der, sa, signer, AUD, NOW};

const TD: &str = "example.org";
const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"refund"}}"#;

fn config() -> Config {
    let c = json!({
        "audience": AUD,
        "trust_domains": {TD: {"bundle_endpoint": {"cluster": "spire_bundle", "refresh_seconds": 60}}},
        "policy": {"rules": [{"name": "refunds", "callers": [sa("refund-agent")], "methods": ["tools/call"],
            "tools": ["refund"], "require": [{"step": "human_approval", "by": [sa("approvals")]}]}]},
    });
    Config::from_json(c.to_string().as_bytes()).unwrap()
}

/// The fixture CA (it issued every fixture SVID) at this sequence.
fn fixture_ca(sequence: u64) -> Vec<u8> {
    let mut b: serde_json::Value = serde_json::from_str(&ca_spiffe_bundle("example")).unwrap();
    b["spiffe_sequence"] = sequence.into();
    b.to_string().into_bytes()
}

/// Another example.org authority, which issued none of them.
fn other_ca(sequence: u64) -> Vec<u8> {
    let pem = include_str!("../testdata/peer/example-ca.pem");
    let der = der::pem::decode_vec(pem.as_bytes()).unwrap().1;
    let x5c = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
    json!({"spiffe_sequence": sequence, "keys": [{"use": "x509-svid", "kty": "EC", "x5c": [x5c]}]})
        .to_string()
        .into_bytes()
}

/// One VM: its watch, the shared record, and its caches (which live across
/// rotations, as in the filter).
struct Vm {
    config: Config,
    watch: Watch,
    record: Option<Record>,
    trust: TrustBundle,
    cache: VerifyCache,
    certs: CertCache,
    jti: u8,
}

impl Vm {
    fn new() -> Vm {
        let config = config();
        let (_, endpoint) = config.bundle_endpoints().next().unwrap();
        let watch = Watch::new(TD, endpoint, None, NOW * 1000);
        let (trust, errors) =
            bundles::trust_in_effect(&config, std::slice::from_ref(&watch), NOW * 1000);
        assert!(errors.is_empty());
        Vm {
            config,
            watch,
            record: None,
            trust,
            cache: VerifyCache::new(64, 64),
            certs: CertCache::new(64),
            jti: 0,
        }
    }

    /// The endpoint answers 200 with `body`, as the filter handles it.
    fn fetched(&mut self, body: &[u8]) -> Result<(), String> {
        let now = NOW * 1000;
        let bundle = fetch::answer(TD, Some(200), Some(body))?;
        let offered = Held::fetched(bundle, now).record().unwrap();
        match bundles::merge(self.record.as_ref(), &offered) {
            Merge::Replace(r) | Merge::Confirm(r) => self.record = Some(r),
            Merge::Keep => {}
            Merge::Older { recorded, offered } => {
                return Err(format!("{offered} is lower than {recorded}"))
            }
        }
        self.watch.adopt(self.record.as_ref().unwrap())?;
        self.trust =
            bundles::trust_in_effect(&self.config, std::slice::from_ref(&self.watch), now).0;
        Ok(())
    }

    /// approvals → refund-agent, proved by refund-agent: allowed, or why not.
    fn history(&mut self) -> Result<String, Reason> {
        let approvals = signer("approvals");
        let entry = EntryFields {
            wid: "wf-1",
            nxt: &sa("refund-agent"),
            step: "human_approval",
            result: "approved",
            iat: NOW - 10,
            exp: NOW + 3600,
            claims: None,
        };
        let history = append_entry(None, &approvals, &entry).unwrap();
        self.jti += 1;
        let proof = make_proof(
            &history,
            &signer("refund-agent"),
            BODY,
            &ProofFields {
                aud: AUD,
                iat: NOW,
                exp: NOW + 60,
                jti: &[self.jti; 16],
            },
        )
        .unwrap();
        let certs = certs_header([approvals.cert_der(), signer("refund-agent").cert_der()]);
        let headers = vec![
            (HISTORY_HEADER.to_owned(), history.into_bytes()),
            (PROOF_HEADER.to_owned(), proof.into_bytes()),
            (CERTS_HEADER.to_owned(), certs.into_bytes()),
        ];
        let head = Head {
            method: "POST",
            path: "/mcp",
            content_type: Some("application/json"),
            content_length: None,
        };
        let caller = SpiffeId::parse(&sa("refund-agent")).unwrap();
        let pending = on_head(&self.config, Ok(caller), &head, &headers).unwrap();
        let mut replay = ReplayCache::new(64, 0);
        let mut env = ProofEnv {
            now: NOW,
            trust: &self.trust,
            ecdsa: &P256Verifier,
            cache: Some(&mut self.cache),
            input: None,
            replay: &mut replay,
        };
        pending.on_body(&self.config, BODY, &mut env).verdict
    }

    /// refund-agent's certificate as the mTLS peer (a resumed session: only
    /// Custody's own path check vouches for it).
    fn caller(&mut self) -> bool {
        let der = cert_der("refund-agent");
        let pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &der).unwrap();
        let peer = PeerFacts {
            mtls: true,
            validated: false,
            certificate_pem: Some(pem.as_bytes()),
            ..Default::default()
        };
        let limits = Limits::default();
        let auth = self
            .config
            .caller_authorities(&self.trust, &limits, &P256Verifier, NOW);
        from_peer_certificate(&peer, auth.as_ref(), &mut self.certs).is_ok()
    }
}

#[test]
fn nothing_is_trusted_before_the_first_bundle() {
    let mut vm = Vm::new();
    assert_eq!(
        vm.history(),
        Err(Reason::History(Code::CertUnknownTrustDomain))
    );
    assert!(!vm.caller());
    // Answers that are not good bundles change nothing.
    for body in [
        &b"garbage"[..],
        b"{}",
        &other_ca(1)[..other_ca(1).len() - 1],
    ] {
        assert!(vm.fetched(body).is_err());
    }
    assert!(!vm.caller());
    vm.fetched(&fixture_ca(1)).unwrap();
    assert_eq!(vm.history(), Ok("refunds".to_owned()));
    assert!(vm.caller());
}

#[test]
fn a_removed_authority_does_not_survive_in_the_caches() {
    let mut vm = Vm::new();
    vm.fetched(&fixture_ca(1)).unwrap();
    assert_eq!(vm.history(), Ok("refunds".to_owned()));
    assert!(vm.caller());
    // Rotated to another authority: the same signers and caller, with every
    // cache warm, are refused.
    vm.fetched(&other_ca(2)).unwrap();
    assert_eq!(vm.history(), Err(Reason::History(Code::CertUntrusted)));
    assert!(!vm.caller());
    // An older bundle with the removed authority is ignored.
    let err = vm.fetched(&fixture_ca(1)).unwrap_err();
    assert_eq!(err, "1 is lower than 2");
    assert_eq!(vm.history(), Err(Reason::History(Code::CertUntrusted)));
    assert!(!vm.caller());
    // Only a newer one brings it back.
    vm.fetched(&fixture_ca(3)).unwrap();
    assert_eq!(vm.history(), Ok("refunds".to_owned()));
    assert!(vm.caller());
}
