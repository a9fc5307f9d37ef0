//! The one place that defines refusal reasons: their stable code, HTTP status,
//! JSON-RPC error code and human message. Tests, logs, counters and docs all
//! refer to [`Reason::code`].

use custody_history::Code;

/// Why a request was refused. The codes are a stable interface: agents, logs,
/// counters (`custody_denied_<code>`) and dashboards key on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The plugin configuration did not load; every request is refused.
    ConfigInvalid,
    /// No verified client certificate with exactly one valid SPIFFE ID.
    NoIdentity,
    /// HTTP method other than POST, GET or DELETE.
    MethodNotAllowed,
    /// Request path not among the configured MCP paths.
    PathNotAllowed,
    /// POST without `content-type: application/json`.
    UnsupportedMediaType,
    /// Body larger than `limits.max_body_bytes`.
    BodyTooLarge,
    /// Body is not well-formed UTF-8 JSON.
    MalformedJson,
    /// A JSON object has the same member twice.
    DuplicateKey,
    /// JSON nested deeper than `limits.max_json_depth`.
    JsonTooDeep,
    /// Well-formed JSON that is not a JSON-RPC 2.0 message MCP allows.
    InvalidRequest,
    /// A JSON-RPC batch (array); MCP 2025-06-18 removed batching.
    BatchRefused,
    /// No rule allows this caller, method and target.
    NoRule,
    /// A rule applies, but the verified history lacks a required step.
    MissingStep,
    /// The required step is there, signed by a workload the rule does not accept.
    StepSigner,
    /// The required step is there, with another result than the rule requires.
    StepResult,
    /// The required step is there, but older than the rule's `within`.
    StaleStep,
    /// The required step is `single_use` and already authorised a request.
    StepConsumed,
    /// A `single_use` step would stay acceptable longer than the ledger
    /// remembers consumed steps (`ledger::MAX_SINGLE_USE_SECS`).
    SingleUseTooLong,
    /// The shared ledger (etcd) did not answer, or not usably, in time.
    LedgerUnavailable,
    /// The required step is there, but bound (`binds: call`) to another call.
    StepCallMismatch,
    /// History headers were sent, but no `audience`/`trust_domains` are configured.
    HistoryUnconfigured,
    /// The rule's Rego rule is `false`, undefined or not `true`.
    RegoDenied,
    /// The rule's Rego rule failed to evaluate.
    RegoError,
    /// A list response that cannot be read with certainty (response side).
    ListMalformed,
    /// A compressed list response (response side).
    ListEncoded,
    /// A list response (or one of its SSE events) over `limits.max_list_bytes`.
    ListTooLarge,
    /// The signed workflow history or its proof failed a check; the code is
    /// the history verifier's own (see docs/history-format.md).
    History(Code),
}

impl Reason {
    pub const ALL: [Reason; 26] = [
        Reason::ConfigInvalid,
        Reason::NoIdentity,
        Reason::MethodNotAllowed,
        Reason::PathNotAllowed,
        Reason::UnsupportedMediaType,
        Reason::BodyTooLarge,
        Reason::MalformedJson,
        Reason::DuplicateKey,
        Reason::JsonTooDeep,
        Reason::InvalidRequest,
        Reason::BatchRefused,
        Reason::NoRule,
        Reason::MissingStep,
        Reason::StepSigner,
        Reason::StepResult,
        Reason::StaleStep,
        Reason::StepConsumed,
        Reason::SingleUseTooLong,
        Reason::LedgerUnavailable,
        Reason::StepCallMismatch,
        Reason::HistoryUnconfigured,
        Reason::RegoDenied,
        Reason::RegoError,
        Reason::ListMalformed,
        Reason::ListEncoded,
        Reason::ListTooLarge,
    ];

    /// Every reason, including each code of the history verifier.
    pub fn all() -> impl Iterator<Item = Reason> {
        Reason::ALL
            .into_iter()
            .chain(Code::ALL.iter().map(|&code| Reason::History(code)))
    }

    /// Stable snake_case code, sent as `error.data.reason`.
    pub fn code(self) -> &'static str {
        self.row().0
    }

    /// HTTP status of the local reply.
    pub fn http_status(self) -> u32 {
        self.row().1
    }

    /// JSON-RPC `error.code`: -32700/-32600 for parse/invalid, else the server range.
    pub fn jsonrpc_code(self) -> i64 {
        self.row().2
    }

    /// Short human sentence, sent as `error.message`.
    pub fn message(self) -> &'static str {
        self.row().3
    }

    fn row(self) -> (&'static str, u32, i64, &'static str) {
        match self {
            Reason::ConfigInvalid => (
                "config_invalid",
                503,
                -32010,
                "Authorization filter is not configured; request refused",
            ),
            Reason::NoIdentity => (
                "no_identity",
                403,
                -32001,
                "Caller has no verified SPIFFE identity",
            ),
            Reason::MethodNotAllowed => (
                "method_not_allowed",
                405,
                -32002,
                "HTTP method not allowed for MCP",
            ),
            Reason::PathNotAllowed => (
                "path_not_allowed",
                404,
                -32002,
                "No MCP endpoint at this path",
            ),
            Reason::UnsupportedMediaType => (
                "unsupported_media_type",
                415,
                -32002,
                "MCP requests must be sent as application/json",
            ),
            Reason::BodyTooLarge => ("body_too_large", 413, -32002, "Request body is too large"),
            Reason::MalformedJson => (
                "malformed_json",
                400,
                -32700,
                "Request body is not valid JSON",
            ),
            Reason::DuplicateKey => (
                "duplicate_key",
                400,
                -32700,
                "Request body has a duplicate JSON member",
            ),
            Reason::JsonTooDeep => (
                "json_too_deep",
                400,
                -32700,
                "Request body is nested too deeply",
            ),
            Reason::InvalidRequest => (
                "invalid_request",
                400,
                -32600,
                "Request is not a valid JSON-RPC 2.0 message",
            ),
            Reason::BatchRefused => (
                "batch_refused",
                400,
                -32600,
                "JSON-RPC batches are not accepted",
            ),
            Reason::NoRule => (
                "no_rule",
                403,
                -32003,
                "Caller is not allowed to make this MCP request",
            ),
            Reason::MissingStep => (
                "missing_step",
                403,
                -32005,
                "Workflow history lacks a step this request requires",
            ),
            Reason::StepSigner => (
                "step_signer",
                403,
                -32005,
                "A required workflow step was signed by a workload the policy does not accept",
            ),
            Reason::StepResult => (
                "step_result",
                403,
                -32005,
                "A required workflow step has another result than the policy requires",
            ),
            Reason::StaleStep => (
                "stale_step",
                403,
                -32005,
                "A required workflow step is older than the policy allows",
            ),
            Reason::StepConsumed => (
                "step_consumed",
                403,
                -32005,
                "A required single-use workflow step was already used",
            ),
            Reason::SingleUseTooLong => (
                "single_use_too_long",
                403,
                -32005,
                "A required single-use workflow step stays valid for too long",
            ),
            // Not the caller's fault: the ledger shared by the replicas did
            // not answer usably. Never an allow. Retry later.
            Reason::LedgerUnavailable => (
                "ledger_unavailable",
                503,
                -32011,
                "The replay ledger is unavailable; retry shortly",
            ),
            Reason::StepCallMismatch => (
                "step_call_mismatch",
                403,
                -32005,
                "A required workflow step approved another call than this one",
            ),
            Reason::HistoryUnconfigured => (
                "history_unconfigured",
                403,
                -32004,
                "This server does not accept workflow history",
            ),
            Reason::RegoDenied => (
                "rego_denied",
                403,
                -32006,
                "Policy does not allow this request in its context",
            ),
            Reason::RegoError => (
                "rego_error",
                403,
                -32006,
                "Policy could not be evaluated; request refused",
            ),
            // Response side: the server's list cannot be filtered, so the
            // caller gets this error instead of it (502 when the response
            // headers are still held, else in the body of the upstream's 2xx).
            Reason::ListMalformed => (
                "list_malformed",
                502,
                -32007,
                "The server's list response could not be filtered; withheld",
            ),
            Reason::ListEncoded => (
                "list_encoded",
                502,
                -32007,
                "The server's list response is compressed and could not be filtered; withheld",
            ),
            Reason::ListTooLarge => (
                "list_too_large",
                502,
                -32007,
                "The server's list response is too large to filter; withheld",
            ),
            // Not the caller's fault: every live proof id is remembered, and
            // the cache is full of them. Retry later.
            Reason::History(Code::ReplayCacheFull) => (
                "replay_cache_full",
                503,
                -32004,
                "Too many recent proofs; retry shortly",
            ),
            Reason::History(code) => (
                code.as_str(),
                403,
                -32004,
                "Workflow history or its proof was refused",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn codes_are_unique_snake_case_and_statuses_are_errors() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::all() {
            assert!(seen.insert(r.code()), "duplicate code {}", r.code());
            assert!(r
                .code()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            assert!((400..600).contains(&r.http_status()));
            let c = r.jsonrpc_code();
            assert!(
                c == -32700 || c == -32600 || (-32099..=-32000).contains(&c),
                "{c}"
            );
            assert!(!r.message().is_empty());
        }
    }

    #[test]
    fn statuses_follow_the_contract() {
        assert_eq!(Reason::MalformedJson.http_status(), 400);
        assert_eq!(Reason::BodyTooLarge.http_status(), 413);
        assert_eq!(Reason::UnsupportedMediaType.http_status(), 415);
        assert_eq!(Reason::NoRule.http_status(), 403);
        assert_eq!(Reason::NoIdentity.http_status(), 403);
        assert_eq!(Reason::MalformedJson.jsonrpc_code(), -32700);
        assert_eq!(Reason::InvalidRequest.jsonrpc_code(), -32600);
    }
}
