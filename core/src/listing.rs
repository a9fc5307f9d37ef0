//! The response side of list filtering, as a pure state machine the filter
//! drives from its response callbacks: [`plan`] reads the response headers,
//! then a [`ListResponse`] turns the body (`application/json`, buffered
//! whole) or the event stream (`text/event-stream`, chunk by chunk, events
//! other than responses passed byte for byte) into what the client receives.
//! On any failure the client receives a JSON-RPC error instead of the list,
//! and nothing after it.

use crate::lists::{Expect, ListError, Listing};
use crate::reason::Reason;
use crate::reply;
use crate::sse::{self, Splitter};
use serde_json::Value;

/// How a response body is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Sse,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Sse => "sse",
        }
    }
}

/// What to do with a response, from its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Not a 2xx: clients read no result from it.
    Pass,
    Filter(Format),
    /// Refused before the body: compressed, or neither JSON nor SSE.
    Refuse(ListError),
}

/// The plan for a response to a list request (or a resumed stream).
pub fn plan(status: u32, content_type: Option<&str>, content_encoding: Option<&str>) -> Plan {
    if !(200..300).contains(&status) {
        return Plan::Pass;
    }
    let encoded = content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .is_some_and(|e| !e.is_empty() && e != "identity");
    if encoded {
        return Plan::Refuse(ListError::Encoded);
    }
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    match media.as_deref() {
        Some("application/json") => Plan::Filter(Format::Json),
        Some("text/event-stream") => Plan::Filter(Format::Sse),
        _ => Plan::Refuse(ListError::Malformed(
            "a 2xx response that is neither application/json nor text/event-stream",
        )),
    }
}

/// How a list response ended, for the log line and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every response in it was filtered (or carried no list).
    Filtered,
    Refused(ListError),
}

/// One response being filtered.
#[derive(Debug)]
pub struct ListResponse {
    expect: Expect,
    format: Format,
    /// `false` in `mode: audit`: everything is checked and counted, nothing changed.
    enforce: bool,
    decision_id: String,
    splitter: Splitter,
    pub kept: usize,
    pub removed: usize,
    /// JSON-RPC responses seen (SSE: events carrying one).
    pub responses: usize,
    pub refused: Option<ListError>,
}

impl ListResponse {
    pub fn new(expect: Expect, format: Format, enforce: bool, decision_id: &str) -> Self {
        ListResponse {
            expect,
            format,
            enforce,
            decision_id: decision_id.to_owned(),
            splitter: Splitter::default(),
            kept: 0,
            removed: 0,
            responses: 0,
            refused: None,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn outcome(&self) -> Outcome {
        self.refused.map_or(Outcome::Filtered, Outcome::Refused)
    }

    /// Whether the client receives what was decided (enforce), or the
    /// server's bytes (audit).
    pub fn enforces(&self) -> bool {
        self.enforce
    }

    /// A whole `application/json` body: what the client receives.
    pub fn json(&mut self, listing: &Listing, body: &[u8], max_bytes: usize) -> Vec<u8> {
        if body.len() > max_bytes {
            return self.refuse(ListError::TooLarge, body);
        }
        match listing.message(body, &self.expect, true) {
            Ok(rewritten) => {
                self.responses += 1;
                match rewritten {
                    Some(r) => {
                        self.kept += r.kept;
                        self.removed += r.removed;
                        if self.enforce {
                            r.text
                        } else {
                            body.to_vec()
                        }
                    }
                    None => body.to_vec(),
                }
            }
            Err(e) => self.refuse(e, body),
        }
    }

    /// The next chunk of an event stream: what the client receives instead.
    /// After a refusal nothing more passes (in enforce mode).
    pub fn sse(&mut self, listing: &Listing, chunk: &[u8], end: bool, max_bytes: usize) -> Vec<u8> {
        if self.refused.is_some() {
            return if self.enforce {
                Vec::new()
            } else {
                chunk.to_vec()
            };
        }
        let events = match self.splitter.push(chunk, end, max_bytes) {
            Ok(events) => events,
            Err(_) => return self.refuse(ListError::TooLarge, chunk),
        };
        let mut out = Vec::with_capacity(chunk.len());
        for event in events {
            // Comments, ids, retry, empty data (a priming event): no message.
            let Some(data) = event.data().filter(|d| !d.is_empty()) else {
                out.extend_from_slice(&event.raw);
                continue;
            };
            match listing.message(&data, &self.expect, false) {
                Ok(None) => out.extend_from_slice(&event.raw),
                Ok(Some(r)) => {
                    self.responses += 1;
                    self.kept += r.kept;
                    self.removed += r.removed;
                    out.extend_from_slice(&event.with_data(&r.text));
                }
                Err(e) => {
                    let error = self.refuse(e, &[]);
                    if self.enforce {
                        out.extend_from_slice(&error);
                        return out;
                    }
                }
            }
        }
        // A client never dispatches an event the stream did not end: it is
        // dropped, so that a lenient client cannot read an unchecked one.
        if !self.enforce {
            return chunk.to_vec();
        }
        out
    }

    /// Records the refusal; returns what the client receives in place of
    /// the rest of the response (in audit mode: `passed`, unchanged).
    pub fn refuse(&mut self, error: ListError, passed: &[u8]) -> Vec<u8> {
        if self.refused.is_none() {
            self.refused = Some(error);
        }
        if !self.enforce {
            return passed.to_vec();
        }
        let id = match &self.expect {
            Expect::Response { id, .. } => id.as_ref(),
            Expect::Replay => None,
        };
        let body = reply::error_body(error.reason(), id, &self.decision_id);
        match self.format {
            Format::Json => body,
            // Once the list's response was delivered the client needs no error.
            Format::Sse if self.responses > 0 => Vec::new(),
            Format::Sse => sse::data_event(&body),
        }
    }

    /// The reason a refusal is logged and counted with.
    pub fn reason(&self) -> Option<Reason> {
        self.refused.map(ListError::reason)
    }

    /// The id the refusal names (the list request's).
    pub fn request_id(&self) -> Option<&Value> {
        match &self.expect {
            Expect::Response { id, .. } => id.as_ref(),
            Expect::Replay => None,
        }
    }
}
