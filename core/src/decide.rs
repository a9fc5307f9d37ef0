//! Stages 1-5 put together. The filter calls [`on_head`] when the request
//! headers arrive and, unless that already decided, [`on_body`] once the whole
//! body is buffered. Both return plain data; the filter only applies it.

use crate::config::Config;
use crate::identity::IdentityError;
use crate::mcp::{self, Target};
use crate::policy::{Request, Verdict};
use crate::reason::Reason;
use crate::transport::{self, Head, HttpKind};
use crate::SpiffeId;
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
        }
    }

    fn with_detail(mut self, detail: impl Into<String>) -> Self {
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

/// What the head established, carried until the body is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub caller: SpiffeId,
    pub kind: HttpKind,
}

/// Stages 1-2: identity, then the HTTP envelope. `Err` is final.
pub fn on_head(
    config: &Config,
    identity: Result<SpiffeId, IdentityError>,
    head: &Head,
) -> Result<Pending, Box<Decision>> {
    let caller = identity
        .map_err(|e| Box::new(Decision::refuse(Reason::NoIdentity).with_detail(e.to_string())))?;
    let kind = transport::check_head(head, &config.paths, config.limits.max_body_bytes).map_err(
        |reason| {
            let mut d = Decision::refuse(reason);
            d.caller = Some(caller.to_string());
            Box::new(d)
        },
    )?;
    Ok(Pending { caller, kind })
}

impl Pending {
    /// While the body streams in: a body past the cap is refused, never truncated.
    pub fn check_size(&self, config: &Config, received: usize) -> Result<(), Box<Decision>> {
        if received > config.limits.max_body_bytes {
            return Err(Box::new(self.refuse(
                Reason::BodyTooLarge,
                None,
                format!("{received} bytes received"),
            )));
        }
        Ok(())
    }

    /// Stages 3-5 over the complete body.
    pub fn on_body(&self, config: &Config, body: &[u8]) -> Decision {
        if let Err(d) = self.check_size(config, body.len()) {
            return *d;
        }
        let msg = match self.kind.pseudo_method() {
            Some(pseudo) if body.is_empty() => mcp::McpMessage {
                method: pseudo.to_owned(),
                id: None,
                target: None,
                arguments: None,
            },
            Some(_) => return self.refuse(Reason::InvalidRequest, None, "GET/DELETE with a body"),
            None => match mcp::parse(body, config.limits.max_json_depth) {
                Ok(msg) => msg,
                Err(e) => return self.refuse(e.reason, e.id, e.detail),
            },
        };
        let request = Request {
            caller: &self.caller,
            method: &msg.method,
            target: msg.target.as_ref(),
            history: &[],
            now: 0,
        };
        let verdict = match config.policy.evaluate(&request) {
            Verdict::Allow { rule } => Ok(rule.to_owned()),
            Verdict::Deny { reason } => Err(reason),
        };
        Decision {
            verdict,
            caller: Some(self.caller.to_string()),
            method: Some(msg.method),
            target: msg.target,
            id: msg.id,
            detail: None,
        }
    }

    fn refuse(&self, reason: Reason, id: Option<Value>, detail: impl Into<String>) -> Decision {
        let mut d = Decision::refuse(reason).with_detail(detail);
        d.caller = Some(self.caller.to_string());
        d.id = id;
        d
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn config() -> Config {
        Config::from_json(
            json!({"limits": {"max_body_bytes": 2048}, "policy": {"rules": [
                {"name": "life", "callers": ["spiffe://example.org/**"], "methods": ["initialize", "http:GET"]},
                {"name": "calc", "callers": ["spiffe://example.org/ns/a/sa/agent"], "methods": ["tools/call"], "tools": ["add"]}
            ]}})
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    fn agent() -> SpiffeId {
        SpiffeId::parse("spiffe://example.org/ns/a/sa/agent").unwrap()
    }

    fn post() -> Head<'static> {
        Head {
            method: "POST",
            path: "/mcp",
            content_type: Some("application/json"),
            content_length: None,
        }
    }

    #[test]
    fn allows_a_matching_tool_call() {
        let c = config();
        let p = on_head(&c, Ok(agent()), &post()).unwrap();
        let d = p.on_body(&c, br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"add","arguments":{"a":1}}}"#);
        assert_eq!(d.verdict, Ok("calc".to_owned()));
        assert_eq!(
            d.caller.as_deref(),
            Some("spiffe://example.org/ns/a/sa/agent")
        );
        assert_eq!(d.target, Some(Target::Tool("add".into())));
        assert_eq!(d.id, Some(json!(4)));
    }

    #[test]
    fn denies_with_the_id_of_the_request() {
        let c = config();
        let p = on_head(&c, Ok(agent()), &post()).unwrap();
        let d = p.on_body(
            &c,
            br#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"rm"}}"#,
        );
        assert_eq!(d.verdict, Err(Reason::NoRule));
        assert_eq!(d.id, Some(json!("x")));
        let d = p.on_body(&c, br#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"add","name":"rm"}}"#);
        assert_eq!(d.verdict, Err(Reason::DuplicateKey));
    }

    #[test]
    fn identity_is_checked_before_anything_else() {
        let c = config();
        let mut head = post();
        head.method = "PUT";
        let d = on_head(&c, Err(IdentityError::NotMtls), &head).unwrap_err();
        assert_eq!(d.verdict, Err(Reason::NoIdentity));
        assert_eq!(d.detail.as_deref(), Some("connection is not mutual TLS"));
        let d = on_head(&c, Ok(agent()), &head).unwrap_err();
        assert_eq!(d.verdict, Err(Reason::MethodNotAllowed));
    }

    #[test]
    fn body_less_requests_use_pseudo_methods() {
        let c = config();
        let get = Head {
            method: "GET",
            path: "/mcp",
            ..Default::default()
        };
        let p = on_head(&c, Ok(agent()), &get).unwrap();
        assert_eq!(p.on_body(&c, b"").verdict, Ok("life".to_owned()));
        assert_eq!(p.on_body(&c, b"{}").verdict, Err(Reason::InvalidRequest));
        let del = Head {
            method: "DELETE",
            path: "/mcp",
            ..Default::default()
        };
        let p = on_head(&c, Ok(agent()), &del).unwrap();
        assert_eq!(p.on_body(&c, b"").verdict, Err(Reason::NoRule));
    }

    #[test]
    fn bodies_over_the_cap_are_refused() {
        let c = config();
        let p = on_head(&c, Ok(agent()), &post()).unwrap();
        assert!(p.check_size(&c, 2048).is_ok());
        assert_eq!(
            p.check_size(&c, 2049).unwrap_err().verdict,
            Err(Reason::BodyTooLarge)
        );
        let big = vec![b' '; 4096];
        assert_eq!(p.on_body(&c, &big).verdict, Err(Reason::BodyTooLarge));
    }
}
