//! One HTTP request through the filter, top to bottom:
//! headers → (identity, transport) → body → (mcp, decide) → ledger → forward or refuse;
//! then, for a list request only, its response (`crate::response`). With the
//! etcd ledger, a request that must claim something waits (paused) for etcd's
//! answer in `on_http_call_response`.

use crate::host;
use crate::ledger::{self, Next, Waiting};
use crate::replay::SharedReplay;
use crate::response::ListCall;
use crate::shared::Shared;
use custody_core::act::{self, CALLER_HEADER, OWN_HEADER_PREFIX};
use custody_core::config::{Config, IdentitySource, Lists, Mode};
use custody_core::decide::{self, Pending};
use custody_core::decision::Decision;
use custody_core::identity::{self, IdentityError, PeerFacts};
use custody_core::ledger::{Judged, Plan};
use custody_core::lists::{Expect, ListKind};
use custody_core::peer_chain::XFCC_HEADER;
use custody_core::proof::ProofEnv;
use custody_core::reason::Reason;
use custody_core::transport::Head;
use custody_core::{log, reply, SpiffeId};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use std::rc::Rc;

pub struct RequestContext {
    shared: Rc<Shared>,
    decision_id: String,
    /// Set once the head passed and the body is awaited.
    pending: Option<Pending>,
    /// Set while the decision waits for etcd.
    waiting: Option<Waiting>,
    /// Time spent in this filter's callbacks, for the decision log.
    busy_us: u64,
    /// The headers went upstream before the decision (`headers: stream`).
    headers_sent: bool,
    /// The request resumes an event stream (`last-event-id`).
    resumes: bool,
    /// A forwarded list request (or resumed stream): its response is filtered.
    list: Option<ListCall>,
}

impl RequestContext {
    pub fn new(shared: Rc<Shared>) -> Self {
        RequestContext {
            shared,
            decision_id: host::random_id(),
            pending: None,
            waiting: None,
            busy_us: 0,
            headers_sent: false,
            resumes: false,
            list: None,
        }
    }
}

impl Context for RequestContext {
    /// etcd answered (or the call failed): go on waiting, or decide.
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let started = host::now_micros();
        let shared = Rc::clone(&self.shared);
        let (Ok(config), Some(waiting)) = (&shared.config, self.waiting.take()) else {
            return;
        };
        let next = ledger::answered(&shared, config, waiting, token, body_size);
        if let Action::Continue = self.wait_or_finish(config, next, started) {
            host::resume_request();
        }
    }
}

impl HttpContext for RequestContext {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let started = host::now_micros();
        #[cfg(feature = "test-panic")]
        test_panic();
        let shared = Rc::clone(&self.shared);
        match &shared.config {
            Err(_) => self.finish(None, Decision::refuse(Reason::ConfigInvalid), started),
            Ok(config) => self.on_head(config, end_of_stream, started),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let started = host::now_micros();
        let shared = Rc::clone(&self.shared);
        let (Ok(config), Some(pending)) = (&shared.config, self.pending.as_ref()) else {
            return Action::Continue; // already decided
        };
        if let Err(refusal) = pending.check_size(config, body_size) {
            self.pending = None;
            return self.finish(Some(config), *refusal, started);
        }
        if !end_of_stream {
            return Action::Pause; // Envoy buffers until the whole body is here
        }
        let body = host::request_body(body_size).unwrap_or_default();
        let judged = judge_body(&shared, config, pending, &body, started);
        self.pending = None;
        self.settle(config, judged, started)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        match self.list.as_mut() {
            None => Action::Continue, // not a list: untouched, unbuffered
            Some(list) => list.on_headers(&self.shared, end_of_stream),
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self.list.as_mut() {
            None => Action::Continue,
            Some(list) => list.on_body(&self.shared, body_size, end_of_stream),
        }
    }

    /// The stream is over: a list response cut short (a client that closed
    /// an event stream after its response) is logged now.
    fn on_log(&mut self) {
        if let Some(list) = self.list.as_mut() {
            list.on_end(&self.shared);
        }
    }
}

impl RequestContext {
    fn on_head(&mut self, config: &Config, end_of_stream: bool, started: u64) -> Action {
        let headers = host::request_headers();
        strip_own_headers(&headers);
        self.resumes = headers.iter().any(|(n, _)| n == "last-event-id");
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        let head = Head {
            method: value(":method").unwrap_or_default(),
            path: value(":path").unwrap_or_default(),
            content_type: value("content-type"),
            content_length: value("content-length"),
        };
        let identity = caller_identity(&self.shared, config, value(XFCC_HEADER), started);
        match decide::on_head(config, identity, &head, &headers) {
            Err(refusal) => self.finish(Some(config), *refusal, started),
            Ok(pending) if end_of_stream => {
                let judged = judge_body(&self.shared, config, &pending, b"", started);
                self.settle(config, judged, started)
            }
            Ok(pending) => {
                let caller = pending.caller.to_string();
                self.pending = Some(pending);
                self.busy_us += host::now_micros().saturating_sub(started);
                if self.shared.hold_headers {
                    // Held until the body is complete: Envoy's wasm filter
                    // config must set `allow_on_headers_stop_iteration: true`.
                    return Action::Pause;
                }
                // Streaming: the headers go now (with the verified caller);
                // the body is still held until the decision.
                host::set_request_header(CALLER_HEADER, Some(&caller));
                self.headers_sent = true;
                Action::Continue
            }
        }
    }

    /// Claims what the decision needs in the ledger, then applies it. A
    /// request whose claims go to etcd stays paused until etcd answers.
    fn settle(&mut self, config: &Config, judged: Judged, started: u64) -> Action {
        let now = started / 1_000_000;
        let next = match custody_core::ledger::plan(config, judged, &mut SharedReplay, now) {
            Plan::Done(decision) => Next::Done(decision),
            Plan::Ask(asking) => ledger::start(&self.shared, config, asking),
        };
        self.wait_or_finish(config, next, started)
    }

    fn wait_or_finish(&mut self, config: &Config, next: Next, started: u64) -> Action {
        match next {
            Next::Wait(waiting) => {
                self.waiting = Some(waiting);
                self.busy_us += host::now_micros().saturating_sub(started);
                Action::Pause
            }
            Next::Done(decision) => self.finish(Some(config), decision, started),
        }
    }

    /// Applies a decision as `core::act` says: count it, record it in filter
    /// state, forward or refuse, and write the decision line.
    fn finish(&mut self, config: Option<&Config>, decision: Decision, started: u64) -> Action {
        let mode = config.map_or(Mode::Enforce, |c| c.mode);
        let outcome = act::act(&decision, mode, &self.decision_id);
        for (name, value) in log::filter_state(&decision, &self.decision_id) {
            host::set_property(&[name], value.as_bytes());
        }
        let next = match outcome.action {
            act::Action::Forward { headers } => {
                self.list = config.and_then(|c| self.list_call(c, &decision));
                // Headers already sent upstream (`headers: stream`) cannot change.
                if !self.headers_sent {
                    for (name, value) in &headers {
                        host::add_request_header(name, value);
                    }
                    if self.list.is_some() {
                        // A compressed list could not be filtered: ask for none.
                        host::set_request_header("accept-encoding", Some("identity"));
                    }
                }
                Action::Continue
            }
            act::Action::Refuse { status, body } => {
                if !host::send_reply(status, &reply::ERROR_HEADERS, &body) {
                    host::log(LogLevel::Error, "could not send the refusal reply");
                }
                Action::Pause // the local reply is sent after this callback returns
            }
        };
        self.busy_us += host::now_micros().saturating_sub(started);
        self.shared.metrics.decided(outcome.count, self.busy_us);
        // Only the lines `log.decisions` asks for (a filter that cannot load
        // its configuration logs its refusals), and only if Envoy writes them.
        let wanted = config.is_none_or(|c| c.log.decisions.wants(decision.is_allowed()));
        if wanted && host::logs(LogLevel::Info) {
            let ctx = log::Context {
                decision_id: &self.decision_id,
                latency_us: self.busy_us,
                http_status: outcome.status,
            };
            host::log(LogLevel::Info, &log::decision_line(&decision, mode, &ctx));
        }
        next
    }
}

impl RequestContext {
    /// Whether the response of this forwarded request is a list to filter:
    /// a list method, or a resumed stream (which may replay one).
    fn list_call(&self, config: &Config, decision: &Decision) -> Option<ListCall> {
        if config.lists != Lists::Filter {
            return None;
        }
        let method = decision.method.as_deref()?;
        let expect = match ListKind::of_method(method) {
            Some(kind) => Expect::Response {
                id: decision.id.clone(),
                kind,
            },
            None if self.resumes => Expect::Replay,
            None => return None,
        };
        // Only a refusal has no caller; in audit mode it is forwarded as is.
        let caller = SpiffeId::parse(decision.caller.as_deref()?).ok()?;
        Some(ListCall::new(expect, method, caller, &self.decision_id))
    }
}

/// Stages 3-5, with this VM's caches and the ECDSA verifier; the claims are
/// left to [`RequestContext::settle`]. `started`: the callback's clock reading.
fn judge_body(
    shared: &Shared,
    config: &Config,
    pending: &Pending,
    body: &[u8],
    started: u64,
) -> Judged {
    let mut verified = shared.verified.borrow_mut();
    let mut input = shared.input.borrow_mut();
    let trust = shared.trust.borrow();
    let mut replay = SharedReplay;
    let mut env = ProofEnv {
        now: started / 1_000_000,
        trust: &trust,
        ecdsa: shared.ecdsa.as_ref(),
        cache: Some(&mut verified),
        input: Some(&mut input),
        replay: &mut replay,
    };
    pending.judge(config, body, &mut env)
}

/// Only in `--features test-panic` builds (integration/test_fail_closed.py).
#[cfg(feature = "test-panic")]
#[allow(clippy::panic)]
fn test_panic() {
    if host::request_headers()
        .iter()
        .any(|(n, _)| n == "x-custody-test-panic")
    {
        panic!("test panic requested");
    }
}

fn strip_own_headers(headers: &[(String, Vec<u8>)]) {
    for (name, _) in headers
        .iter()
        .filter(|(n, _)| n.starts_with(OWN_HEADER_PREFIX))
    {
        host::set_request_header(name, None);
    }
}

fn caller_identity(
    shared: &Shared,
    config: &Config,
    forwarded_cert: Option<&str>,
    started: u64,
) -> Result<SpiffeId, IdentityError> {
    let mut certs = shared.certs.borrow_mut();
    // A certificate already parsed is found by its digest (64 bytes) without
    // fetching its PEM (1.3 KB) again.
    let digest = host::property(&["connection", "sha256_peer_certificate_digest"]);
    let pem = match &digest {
        Some(d) if certs.knows(d) => None,
        _ => host::property(&["connection", "peer_certificate"]),
    };
    let mut peer = PeerFacts {
        certificate_pem: pem.as_deref(),
        certificate_digest: digest.as_deref(),
        forwarded_cert: forwarded_cert.map(str::as_bytes),
        ..Default::default()
    };
    match config.identity {
        IdentitySource::PeerCertificate => {
            peer.validated = host::property_bool(&["connection", "peer_certificate_valid"]);
            // A validated peer certificate is an mTLS peer; ask only otherwise.
            peer.mtls = peer.validated || host::property_bool(&["connection", "mtls"]);
            let limits = config.history.verifier_limits();
            let now = started / 1_000_000;
            let trust = shared.trust.borrow();
            let authorities =
                config.caller_authorities(&trust, &limits, shared.ecdsa.as_ref(), now);
            identity::from_peer_certificate(&peer, authorities.as_ref(), &mut certs)
        }
        IdentitySource::IstioPeerPrincipal => {
            peer.mtls = host::property_bool(&["connection", "mtls"]);
            let principal = host::property(&["filter_state", "io.istio.peer_principal"]);
            peer.istio_principal = principal.as_deref();
            identity::from_istio_principal(&peer, &mut certs)
        }
    }
}
