//! Stage 6: act on a decision. A pure function from the decision and the
//! configured mode to what the host must do: forward (with the headers that
//! tell the upstream who called and what was decided) or refuse with a local
//! JSON-RPC reply, and which counter to bump. The filter only applies it.

use crate::config::{HeaderMode, Mode};
use crate::decision::Decision;
use crate::reason::Reason;
use crate::reply;

/// What the host does with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Let the request go upstream. `headers` are added to it when its
    /// headers are still held (every `x-custody-*` header the client sent
    /// was removed when the headers arrived, so adding never duplicates).
    Forward {
        headers: Vec<(&'static str, String)>,
    },
    /// Answer locally with this status and JSON-RPC error body
    /// ([`reply::ERROR_HEADERS`]); the upstream never sees the body.
    Refuse { status: u32, body: Vec<u8> },
}

/// Which counter a decision bumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Allowed,
    /// Refused with this reason (enforce mode).
    Denied(Reason),
    /// Denied with this reason, but forwarded because of `mode: audit`
    /// (counts as `custody_denied_<reason>` and `custody_audit_forwarded`).
    AuditForwarded(Reason),
}

/// Everything the host applies for one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub action: Action,
    pub count: Count,
    /// The status of the local reply, for the decision log (`None` when forwarded).
    pub status: Option<u32>,
}

/// The upstream header naming the verified caller.
pub const CALLER_HEADER: &str = "x-custody-caller";
/// The upstream header carrying the verdict.
pub const DECISION_HEADER: &str = "x-custody-decision";
/// The upstream header carrying the decision id.
pub const DECISION_ID_HEADER: &str = "x-custody-decision-id";
/// Headers the filter owns: any copy the client sent is removed first.
pub const OWN_HEADER_PREFIX: &str = "x-custody-";

/// What to do with `decision` under `mode`.
pub fn act(decision: &Decision, mode: Mode, decision_id: &str) -> Outcome {
    let Some(reason) = decision.reason() else {
        return Outcome {
            action: Action::Forward {
                headers: forward_headers(decision, decision_id, "allow".to_owned()),
            },
            count: Count::Allowed,
            status: None,
        };
    };
    match mode {
        Mode::Audit => Outcome {
            action: Action::Forward {
                headers: forward_headers(decision, decision_id, audit_verdict(decision, reason)),
            },
            count: Count::AuditForwarded(reason),
            status: None,
        },
        Mode::Enforce => Outcome {
            action: Action::Refuse {
                status: reason.http_status(),
                body: reply::error_body(reason, decision.id.as_ref(), decision_id),
            },
            count: Count::Denied(reason),
            status: Some(reason.http_status()),
        },
    }
}

/// `deny; reason=<code>; mode=audit`, then the closest rule and what it
/// lacked when known: `; rule=refunds; detail="human_approval is 1860 s old,
/// within 1800 s"`. Only policy names and numbers (`public_detail`): never
/// what the caller sent nor a Rego error text.
fn audit_verdict(decision: &Decision, reason: Reason) -> String {
    let mut verdict = format!("deny; reason={}; mode=audit", reason.code());
    if let Some(rule) = &decision.closest_rule {
        verdict.push_str(&format!("; rule={rule}"));
    }
    if let Some(detail) = &decision.public_detail {
        // A quoted-string (RFC 9110 §5.6.4) of visible ASCII: the policy's
        // names are [A-Za-z0-9._:-]; anything else is dropped, never sent raw.
        let safe: String = detail
            .chars()
            .filter(|c| (c.is_ascii_graphic() || *c == ' ') && !matches!(c, '"' | '\\'))
            .collect();
        verdict.push_str(&format!("; detail=\"{safe}\""));
    }
    verdict
}

fn forward_headers(
    decision: &Decision,
    decision_id: &str,
    verdict: String,
) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(3);
    if let Some(caller) = &decision.caller {
        headers.push((CALLER_HEADER, caller.clone()));
    }
    headers.push((DECISION_ID_HEADER, decision_id.to_owned()));
    headers.push((DECISION_HEADER, verdict));
    headers
}

/// Whether request headers are held until the decision: `hold`, or `auto`
/// outside Istio (whose WasmPlugin cannot set `allow_on_headers_stop_iteration`).
/// A configuration that did not load holds them too: nothing goes upstream.
pub fn holds_headers(configured: Option<HeaderMode>, under_istio: bool) -> bool {
    match configured {
        None | Some(HeaderMode::Hold) => true,
        Some(HeaderMode::Stream) => false,
        Some(HeaderMode::Auto) => !under_istio,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use serde_json::{json, Value};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn allowed() -> Decision {
        let mut d = Decision::refuse(Reason::NoRule);
        d.verdict = Ok("calc".into());
        d.caller = Some("spiffe://example.org/a".into());
        d
    }

    fn refused(reason: Reason) -> Decision {
        let mut d = Decision::refuse(reason);
        d.caller = Some("spiffe://example.org/a".into());
        d.id = Some(json!(9));
        d
    }

    #[test]
    fn allowed_requests_are_forwarded_with_the_caller_and_the_verdict() {
        for mode in [Mode::Enforce, Mode::Audit] {
            let out = act(&allowed(), mode, "d-1");
            assert_eq!(out.count, Count::Allowed);
            assert_eq!(out.status, None);
            assert_eq!(
                out.action,
                Action::Forward {
                    headers: vec![
                        (CALLER_HEADER, "spiffe://example.org/a".into()),
                        (DECISION_ID_HEADER, "d-1".into()),
                        (DECISION_HEADER, "allow".into()),
                    ]
                }
            );
        }
    }

    #[test]
    fn enforce_refuses_every_class_with_its_status_and_a_json_rpc_error() {
        for reason in Reason::all() {
            let out = act(&refused(reason), Mode::Enforce, "d-2");
            assert_eq!(out.count, Count::Denied(reason));
            assert_eq!(out.status, Some(reason.http_status()));
            let Action::Refuse { status, body } = out.action else {
                panic!("{reason:?} was forwarded in enforce mode");
            };
            assert_eq!(status, reason.http_status());
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["id"], 9);
            assert_eq!(v["error"]["data"]["reason"], reason.code());
            assert_eq!(v["error"]["data"]["decision_id"], "d-2");
            assert_eq!(v["error"]["code"], reason.jsonrpc_code());
        }
    }

    #[test]
    fn audit_forwards_every_class_and_says_what_enforce_would_have_done() {
        for reason in Reason::all() {
            let out = act(&refused(reason), Mode::Audit, "d-3");
            assert_eq!(out.count, Count::AuditForwarded(reason));
            assert_eq!(out.status, None);
            let Action::Forward { headers } = out.action else {
                panic!("{reason:?} was refused in audit mode");
            };
            let verdict = format!("deny; reason={}; mode=audit", reason.code());
            assert!(headers.contains(&(DECISION_HEADER, verdict)));
            assert!(headers.contains(&(DECISION_ID_HEADER, "d-3".to_owned())));
        }
    }

    #[test]
    fn audit_names_the_closest_rule_and_its_public_detail_never_the_log_detail() {
        let mut d = refused(Reason::StaleStep);
        d.closest_rule = Some("refunds".into());
        d.detail = Some("secret rego error text".into());
        d.public_detail = Some("human_approval is 1860 s old, within 1800 s\r\n\"x\\".into());
        let Action::Forward { headers } = act(&d, Mode::Audit, "d-5").action else {
            panic!("audit must forward");
        };
        let verdict = &headers
            .iter()
            .find(|(n, _)| *n == DECISION_HEADER)
            .unwrap()
            .1;
        assert_eq!(
            verdict,
            "deny; reason=stale_step; mode=audit; rule=refunds; detail=\"human_approval is 1860 s old, within 1800 sx\""
        );
        assert!(!verdict.contains("secret"));
        // Enforce mode tells the caller none of it.
        let Action::Refuse { body, .. } = act(&d, Mode::Enforce, "d-5").action else {
            panic!("enforce must refuse");
        };
        let body = String::from_utf8(body).unwrap();
        assert!(
            !body.contains("refunds") && !body.contains("1860") && !body.contains("secret"),
            "{body}"
        );
    }

    #[test]
    fn a_refusal_without_a_caller_names_none_upstream() {
        let d = Decision::refuse(Reason::NoIdentity);
        let Action::Forward { headers } = act(&d, Mode::Audit, "d-4").action else {
            panic!("audit must forward");
        };
        assert!(headers.iter().all(|(n, _)| *n != CALLER_HEADER));
    }

    #[test]
    fn headers_are_held_unless_streaming_is_asked_for_or_istio_is_detected() {
        assert!(holds_headers(Some(HeaderMode::Hold), true));
        assert!(holds_headers(None, true));
        assert!(!holds_headers(Some(HeaderMode::Stream), false));
        assert!(holds_headers(Some(HeaderMode::Auto), false));
        assert!(!holds_headers(Some(HeaderMode::Auto), true));
    }
}
