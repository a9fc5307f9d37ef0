//! The response to a list request (or a resumed event stream), through the
//! filter: headers → plan; body → `core::listing`, which says what the client
//! receives. Responses to other requests never reach this module.
//!
//! - `application/json`: the body is buffered (`Pause`) to its end, then
//!   replaced. With `headers: hold` the response headers wait too, so the
//!   new `content-length` (and on refusal status 502) can be set; otherwise
//!   `content-length` is removed when the headers pass.
//! - `text/event-stream`: each chunk is replaced as it passes; events other
//!   than responses go through byte for byte; `content-length` is removed.
//! - In `mode: audit` nothing is changed: the same checks run and are logged.

use crate::host;
use crate::shared::Shared;
use custody_core::act::Count;
use custody_core::config::{Config, Mode};
use custody_core::listing::{self, Format, ListResponse, Plan};
use custody_core::lists::{Expect, ListError, Listing};
use custody_core::{log, reply, SpiffeId};
use proxy_wasm::types::{Action, LogLevel};

/// A forwarded request whose response is to be filtered.
pub struct ListCall {
    expect: Expect,
    /// The request's method (`tools/list`, …, or `http:GET` for a resumed stream).
    method: String,
    caller: SpiffeId,
    decision_id: String,
    response: Option<ListResponse>,
    /// The client-visible status, for the log line.
    status: u32,
    /// The response headers are held until the body is decided.
    held: bool,
    /// The error that replaces a list refused before its body, sent at its end.
    pending_error: Option<Vec<u8>>,
    busy_us: u64,
    done: bool,
}

impl ListCall {
    pub fn new(expect: Expect, method: &str, caller: SpiffeId, decision_id: &str) -> Self {
        ListCall {
            expect,
            method: method.to_owned(),
            caller,
            decision_id: decision_id.to_owned(),
            response: None,
            status: 0,
            held: false,
            pending_error: None,
            busy_us: 0,
            done: false,
        }
    }

    pub fn on_headers(&mut self, shared: &Shared, end_of_stream: bool) -> Action {
        let started = host::now_micros();
        let Ok(config) = &shared.config else {
            return Action::Continue;
        };
        self.status = host::response_header(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let plan = listing::plan(
            self.status,
            host::response_header("content-type").as_deref(),
            host::response_header("content-encoding").as_deref(),
        );
        let enforce = config.mode == Mode::Enforce;
        let format = match plan {
            Plan::Pass => {
                self.done = true;
                return Action::Continue;
            }
            Plan::Filter(format) => format,
            Plan::Refuse(_) => Format::Json,
        };
        let mut response =
            ListResponse::new(self.expect.clone(), format, enforce, &self.decision_id);
        if let Plan::Refuse(error) = plan {
            self.pending_error = Some(response.refuse(error, b""));
        } else if end_of_stream {
            let _ = response.refuse(
                ListError::Malformed("a 2xx list response without a body"),
                b"",
            );
        }
        let refused = response.refused.is_some();
        self.response = Some(response);
        if enforce && refused {
            self.refusal_headers(None);
        } else if enforce && format == Format::Json && shared.hold_headers {
            self.held = true;
        } else if enforce {
            host::set_response_header("content-length", None);
        }
        if end_of_stream {
            self.finish(shared, config);
        }
        self.busy_us += host::now_micros().saturating_sub(started);
        if self.held {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    pub fn on_body(&mut self, shared: &Shared, body_size: usize, end_of_stream: bool) -> Action {
        let started = host::now_micros();
        let (Ok(config), Some(response), false) =
            (&shared.config, self.response.as_mut(), self.done)
        else {
            return Action::Continue;
        };
        let listing = Listing {
            policy: &config.policy,
            caller: &self.caller,
            max_depth: config.limits.max_json_depth,
        };
        let max = config.limits.max_list_bytes;
        let enforce = response.enforces();
        let action = if response.refused.is_some() && response.format() == Format::Json {
            // Refused earlier: nothing more passes; an error decided at the
            // headers is sent at the end.
            if enforce {
                let out = match end_of_stream {
                    true => self.pending_error.take().unwrap_or_default(),
                    false => Vec::new(),
                };
                host::set_response_body(body_size, &out);
            }
            Action::Continue
        } else if response.format() == Format::Sse {
            let chunk = host::response_body(body_size);
            let out = response.sse(&listing, &chunk, end_of_stream, max);
            if enforce && out != chunk {
                host::set_response_body(body_size, &out);
            }
            Action::Continue
        } else if body_size > max {
            let out = response.refuse(ListError::TooLarge, &[]);
            if enforce {
                host::set_response_body(body_size, &out);
                self.refusal_headers(Some(out.len()));
                self.held = false; // Continue sends the headers
            }
            Action::Continue
        } else if !end_of_stream {
            Action::Pause // Envoy buffers the body
        } else {
            let body = host::response_body(body_size);
            let out = response.json(&listing, &body, max);
            if enforce {
                if out != body {
                    host::set_response_body(body_size, &out);
                }
                if response.refused.is_some() {
                    self.refusal_headers(Some(out.len()));
                } else if self.held {
                    host::set_response_header("content-length", Some(&out.len().to_string()));
                }
                self.held = false; // Continue sends the headers
            }
            Action::Continue
        };
        if end_of_stream {
            self.finish(shared, config);
        }
        self.busy_us += host::now_micros().saturating_sub(started);
        action
    }

    /// The stream ended (Envoy's access-log callback): count and log a
    /// response whose body never reached its end.
    pub fn on_end(&mut self, shared: &Shared) {
        if let (false, Ok(config)) = (self.done, &shared.config) {
            self.finish(shared, config);
        }
    }

    /// The headers of a refused list: a JSON-RPC error, 502 if they are
    /// still ours to change (always at header time; with `held` later).
    fn refusal_headers(&mut self, length: Option<usize>) {
        let at_headers = length.is_none();
        if !at_headers && !self.held {
            return; // already sent: the error goes in the body of the 2xx
        }
        self.status = 502;
        host::set_response_header(":status", Some("502"));
        for (name, value) in reply::ERROR_HEADERS {
            host::set_response_header(name, Some(value));
        }
        host::set_response_header("content-encoding", None);
        host::set_response_header("content-length", length.map(|n| n.to_string()).as_deref());
    }

    /// The body ended: count it and write the list line.
    fn finish(&mut self, shared: &Shared, config: &Config) {
        self.done = true;
        let Some(response) = &self.response else {
            return;
        };
        for (name, value) in log::list_filter_state(response) {
            host::set_property(&[name], value.as_bytes());
        }
        match (response.reason(), config.mode) {
            (None, _) => shared.metrics.count_list(response.removed),
            (Some(reason), Mode::Enforce) => shared.metrics.count(Count::Denied(reason)),
            (Some(reason), Mode::Audit) => shared.metrics.count(Count::AuditForwarded(reason)),
        }
        if host::logs(LogLevel::Info) {
            let ctx = log::Context {
                decision_id: &self.decision_id,
                latency_us: self.busy_us,
                http_status: Some(self.status),
            };
            let line = log::list_line(response, &self.method, config.mode, self.status, &ctx);
            host::log(LogLevel::Info, &line);
        }
    }
}
