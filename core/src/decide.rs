//! Stages 1-5 put together. The filter calls [`on_head`] when the request
//! headers arrive and, unless that already decided, [`Pending::judge`] once
//! the whole body is buffered: a decision final except for what it must
//! claim in the ledger ([`crate::ledger`]). [`Pending::on_body`] settles
//! those claims in a local store at once. All return plain data; the filter
//! only applies it.

use crate::call;
use crate::config::Config;
use crate::decision::Decision;
use crate::explain::Outcome;
use crate::identity::IdentityError;
use crate::input::{self, InputSource};
use crate::ledger::{self, Claim, Claims, Judged};
use crate::mcp;
use crate::policy::{Query, Step, Verdict};
use crate::proof::{self, HistoryHeaders, ProofEnv};
use crate::reason::Reason;
use crate::transport::{self, Head, HttpKind};
use crate::SpiffeId;
use custody_history::VerifiedHistory;
use serde_json::Value;

/// What the head established, carried until the body is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub caller: SpiffeId,
    pub kind: HttpKind,
    /// The workflow history headers, verified once the body is complete.
    pub history: HistoryHeaders,
    pub http_method: String,
    pub path: String,
    /// Request headers for the Rego input (kept only if the policy uses Rego
    /// or `debug.log_input` is set;
    /// without the history headers, which reach Rego verified, as `history`).
    pub headers: Vec<(String, String)>,
}

/// Stages 1-2: identity, then the HTTP envelope. `Err` is final. The history
/// headers are kept for stage 4, which needs the body.
pub fn on_head(
    config: &Config,
    identity: Result<SpiffeId, IdentityError>,
    head: &Head,
    headers: &[(String, Vec<u8>)],
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
    let history = HistoryHeaders::collect(headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
    let headers = if config.policy.uses_rego() || config.debug.log_input {
        headers
            .iter()
            .filter(|(n, _)| !n.starts_with(':') && !proof::is_history_header(n))
            .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Pending {
        caller,
        kind,
        history,
        http_method: head.method.to_owned(),
        path: head.path.to_owned(),
        headers,
    })
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

    /// Stages 3-5 over the complete body, claims settled in `env.replay`
    /// (the `local` ledger; see [`ledger::settle_local`]).
    pub fn on_body(&self, config: &Config, body: &[u8], env: &mut ProofEnv) -> Decision {
        let judged = self.judge(config, body, env);
        ledger::settle_local(judged, env.replay, env.now)
    }

    /// Stages 3-5 over the complete body, with the claims still to make.
    /// `env.replay` is not touched.
    pub fn judge(&self, config: &Config, body: &[u8], env: &mut ProofEnv) -> Judged {
        let unclaimed = |decision| Judged {
            decision,
            claims: Claims::default(),
        };
        if let Err(d) = self.check_size(config, body.len()) {
            return unclaimed(*d);
        }
        let msg = match self.kind.pseudo_method() {
            Some(pseudo) if body.is_empty() => mcp::McpMessage {
                method: pseudo.to_owned(),
                id: None,
                target: None,
                arguments: None,
            },
            Some(_) => {
                return unclaimed(self.refuse(
                    Reason::InvalidRequest,
                    None,
                    "GET/DELETE with a body",
                ))
            }
            None => match mcp::parse(body, config.limits.max_json_depth) {
                Ok(msg) => msg,
                Err(e) => return unclaimed(self.refuse(e.reason, e.id, e.detail)),
            },
        };
        let mut decision = self.decision(Reason::NoRule, msg.id.clone());
        let history = match proof::verify(config, &self.history, &self.caller, body, env) {
            Ok(history) => history,
            Err((reason, detail)) => {
                decision.verdict = Err(reason);
                decision.detail = Some(detail);
                decision.method = Some(msg.method);
                decision.target = msg.target;
                return unclaimed(decision);
            }
        };
        let skew = config.history.skew_seconds;
        let mut claims = Claims {
            proof: history
                .as_ref()
                .map(|h| Claim::proof(&h.proof.jti, h.proof.exp, skew)),
            ..Claims::default()
        };
        let steps: Vec<Step> = history
            .iter()
            .flat_map(|h| &h.entries)
            .map(|e| Step {
                step: &e.step,
                result: &e.result,
                signer: e.iss.as_str(),
                iat: e.iat,
                call: e.claims.get(call::CALL_CLAIM),
            })
            .collect();
        // Only computed (JCS and SHA-256 of the arguments) when a clause binds calls.
        let call = config
            .policy
            .binds_calls()
            .then(|| call::of_message(&msg).ok())
            .flatten();
        let now = env.now;
        // Built only if a rule with `rego` is reached (or for the log).
        let input = (config.policy.uses_rego() || config.debug.log_input).then(|| {
            input::Input::new(
                input::Facts {
                    caller: &self.caller,
                    target: config.audience.as_deref(),
                    now,
                    http_method: &self.http_method,
                    path: &self.path,
                    headers: &self.headers,
                    mcp: &msg,
                    history: history.as_ref(),
                },
                env.input.as_deref_mut(),
            )
        });
        let request = Query {
            caller: &self.caller,
            method: &msg.method,
            target: msg.target.as_ref(),
            history: &steps,
            now,
            input: input.as_ref().map(|i| i as &dyn InputSource),
            call: call.as_ref(),
        };
        let outcome = config.policy.decide(&request);
        decision.verdict = match outcome.verdict {
            Verdict::Allow { rule } => {
                claims.shared = requires_history(config, rule);
                single_use(config, rule, &request, history.as_ref(), &mut claims)
                    .map(|()| rule.to_owned())
            }
            Verdict::Deny { reason } => Err(reason),
        };
        if decision.verdict.is_err() {
            explain(&mut decision, outcome);
        }
        if config.debug.log_input {
            decision.input = input
                .as_ref()
                .map(|doc| input::for_log(doc.document(), config.debug.log_claims));
        }
        if let Some(h) = &history {
            decision.workflow = Some(h.wid.clone());
            decision.history_len = h.entries.len();
        }
        decision.method = Some(msg.method);
        decision.target = msg.target;
        Judged { decision, claims }
    }

    fn refuse(&self, reason: Reason, id: Option<Value>, detail: impl Into<String>) -> Decision {
        self.decision(reason, id).with_detail(detail)
    }

    /// A decision about this caller's request, refused with `reason` until decided otherwise.
    fn decision(&self, reason: Reason, id: Option<Value>) -> Decision {
        let mut d = Decision::refuse(reason);
        d.caller = Some(self.caller.to_string());
        d.id = id;
        d
    }
}

/// Whether rule `name` has `require` clauses: its claims must then hold
/// across replicas (the etcd ledger); any other rule allows without history.
fn requires_history(config: &Config, name: &str) -> bool {
    config
        .policy
        .rules
        .iter()
        .any(|r| r.name == name && !r.require.is_empty())
}

/// Names the closest rule of a denial by the rules, and what it lacked.
/// (A `single_use` entry already used is found by the ledger, which names
/// the rule that allowed it: [`crate::ledger`].)
fn explain(decision: &mut Decision, outcome: Outcome) {
    decision.closest_rule = outcome.closest.map(str::to_owned);
    if let Some(why) = outcome.why {
        decision.detail = Some(why.log());
        decision.public_detail = Some(why.public());
    }
}

/// The entries that met the allowing rule's `single_use` clauses, to be
/// used up by the ledger. An entry that would stay acceptable past the
/// ledger's longest memory is refused rather than forgotten too early.
fn single_use(
    config: &Config,
    rule: &str,
    request: &Query,
    history: Option<&VerifiedHistory>,
    claims: &mut Claims,
) -> Result<(), Reason> {
    let Some(history) = history else {
        return Ok(());
    };
    for i in config.policy.single_use_steps(rule, request) {
        let entry = history.entries.get(i).ok_or(Reason::StepConsumed)?;
        let claim = Claim::step(entry, config.history.skew_seconds, request.now)
            .ok_or(Reason::SingleUseTooLong)?;
        claims.consume(claim);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::mcp::Target;
    use custody_history::{P256Verifier, ReplayCache};
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

    /// Decides a complete request without history headers.
    fn body(p: &Pending, c: &Config, body: &[u8]) -> Decision {
        body_with(p, c, body, None)
    }

    /// The same, with a VM's cache of Rego input values.
    fn body_with(
        p: &Pending,
        c: &Config,
        body: &[u8],
        input: Option<&mut crate::input::InputCache>,
    ) -> Decision {
        let mut replay = ReplayCache::new(16, 30);
        let mut env = ProofEnv {
            now: 1_000,
            trust: &c.trust,
            ecdsa: &P256Verifier,
            cache: None,
            input,
            replay: &mut replay,
        };
        p.on_body(c, body, &mut env)
    }

    fn start(
        c: &Config,
        identity: Result<SpiffeId, IdentityError>,
        h: &Head,
    ) -> Result<Pending, Box<Decision>> {
        on_head(c, identity, h, &[])
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
        let p = start(&c, Ok(agent()), &post()).unwrap();
        let d = body(&p, &c, br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"add","arguments":{"a":1}}}"#);
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
        let p = start(&c, Ok(agent()), &post()).unwrap();
        let d = body(
            &p,
            &c,
            br#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"rm"}}"#,
        );
        assert_eq!(d.verdict, Err(Reason::NoRule));
        assert_eq!(d.id, Some(json!("x")));
        let d = body(&p, &c, br#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"add","name":"rm"}}"#);
        assert_eq!(d.verdict, Err(Reason::DuplicateKey));
    }

    #[test]
    fn identity_is_checked_before_anything_else() {
        let c = config();
        let mut head = post();
        head.method = "PUT";
        let d = start(&c, Err(IdentityError::NotMtls), &head).unwrap_err();
        assert_eq!(d.verdict, Err(Reason::NoIdentity));
        assert_eq!(d.detail.as_deref(), Some("connection is not mutual TLS"));
        let d = start(&c, Ok(agent()), &head).unwrap_err();
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
        let p = start(&c, Ok(agent()), &get).unwrap();
        assert_eq!(body(&p, &c, b"").verdict, Ok("life".to_owned()));
        assert_eq!(body(&p, &c, b"{}").verdict, Err(Reason::InvalidRequest));
        let del = Head {
            method: "DELETE",
            path: "/mcp",
            ..Default::default()
        };
        let p = start(&c, Ok(agent()), &del).unwrap();
        assert_eq!(body(&p, &c, b"").verdict, Err(Reason::NoRule));
    }

    #[test]
    fn bodies_over_the_cap_are_refused() {
        let c = config();
        let p = start(&c, Ok(agent()), &post()).unwrap();
        assert!(p.check_size(&c, 2048).is_ok());
        assert_eq!(
            p.check_size(&c, 2049).unwrap_err().verdict,
            Err(Reason::BodyTooLarge)
        );
        let big = vec![b' '; 4096];
        assert_eq!(body(&p, &c, &big).verdict, Err(Reason::BodyTooLarge));
    }

    #[test]
    fn the_input_document_is_built_only_when_a_rego_rule_is_reached() {
        let c = Config::from_json(
            json!({"policy": {"rules": [
                {"name": "list", "callers": ["spiffe://example.org/**"], "methods": ["tools/list"]},
                {"name": "calc", "callers": ["spiffe://example.org/ns/a/sa/agent"], "methods": ["tools/call"],
                 "tools": ["add"], "rego": "data.calc.allow"}
            ], "modules": {"calc.rego": "package calc\nimport rego.v1\nallow if input.mcp.arguments.a < 5\n"}}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let mut cache = crate::input::InputCache::new(4, 1 << 20);
        let mut decide = |body: &[u8]| {
            let p = start(&c, Ok(agent()), &post()).unwrap();
            body_with(&p, &c, body, Some(&mut cache)).verdict
        };
        let list = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert_eq!(decide(list), Ok("list".to_owned()));
        let other = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"rm","arguments":{"a":1}}}"#;
        assert_eq!(decide(other), Err(Reason::NoRule));
        let call = |a: u32| {
            format!(
                r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"add","arguments":{{"a":{a}}}}}}}"#
            )
        };
        assert_eq!(decide(call(1).as_bytes()), Ok("calc".to_owned()));
        assert_eq!(decide(call(9).as_bytes()), Err(Reason::RegoDenied));
        // Only the two requests that reached the rule with `rego`.
        assert_eq!(cache.documents(), 2);
    }

    #[test]
    fn the_input_document_is_kept_for_the_log_only_when_asked() {
        let call = br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"rm","arguments":{"card":"4111"}}}"#;
        let c = config();
        let p = start(&c, Ok(agent()), &post()).unwrap();
        let d = body(&p, &c, call);
        assert_eq!(d.input, None);
        assert_eq!(d.closest_rule.as_deref(), Some("calc"));
        assert_eq!(
            d.detail.as_deref(),
            Some("tool 'rm' matches none of its patterns")
        );
        assert_eq!(
            d.public_detail.as_deref(),
            Some("the tool matches none of its patterns")
        );
        let mut c = config();
        c.debug.log_input = true;
        let p = start(&c, Ok(agent()), &post()).unwrap();
        let d = body(&p, &c, call);
        let input = d.input.unwrap();
        assert_eq!(input["calling_agent"], "spiffe://example.org/ns/a/sa/agent");
        assert_eq!(input["mcp"]["tool"], "rm");
        assert_eq!(input["mcp"]["arguments"], crate::input::REDACTED);
        c.debug.log_claims = true;
        let d = body(&p, &c, call);
        assert_eq!(
            d.input.unwrap()["mcp"]["arguments"],
            json!({"card": "4111"})
        );
    }
}
