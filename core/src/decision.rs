//! A request's outcome as the stages leave it: the verdict and what the
//! log, the reply and the upstream headers say about it. Decided by
//! [`crate::decide`], claims settled by [`crate::ledger`], applied by
//! [`crate::act`].

use crate::mcp::Target;
use crate::reason::Reason;
use serde_json::Value;

/// The outcome of one request, before `mode` is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// `Ok(rule name)` or `Err(reason)`.
    pub verdict: Result<String, Reason>,
    pub caller: Option<String>,
    pub method: Option<String>,
    pub target: Option<Target>,
    /// The JSON-RPC id, echoed in a refusal.
    pub id: Option<Value>,
    /// Why, for the log (never sent to the caller).
    pub detail: Option<String>,
    /// The verified workflow id, if the request carried a history.
    pub workflow: Option<String>,
    /// Entries in the verified history.
    pub history_len: usize,
    /// For a denial by the rules: the closest rule (docs/policy.md).
    pub closest_rule: Option<String>,
    /// What the closest rule lacked, in words safe to hand the upstream
    /// (`x-custody-decision` in audit mode): policy names and numbers only.
    pub public_detail: Option<String>,
    /// The Rego input document, redacted, with `debug.log_input`.
    pub input: Option<Value>,
}

impl Decision {
    pub fn refuse(reason: Reason) -> Self {
        Decision {
            verdict: Err(reason),
            caller: None,
            method: None,
            target: None,
            id: None,
            detail: None,
            workflow: None,
            history_len: 0,
            closest_rule: None,
            public_detail: None,
            input: None,
        }
    }

    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn is_allowed(&self) -> bool {
        self.verdict.is_ok()
    }

    pub fn reason(&self) -> Option<Reason> {
        self.verdict.as_ref().err().copied()
    }
}
