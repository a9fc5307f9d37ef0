//! etcd's JSON gateway (etcd 3.5, `POST /v3/...`): the one transaction
//! that claims every key of a request, and the lease grants that expire
//! them. In that JSON, keys and values are base64 and 64-bit integers are
//! strings; proto3 leaves out `false` and `0`. An answer of any other shape
//! is [`Answer::Unavailable`]: the request is refused, never allowed.
//!
//! The transaction: for every key, `create_revision == 0` (it does not
//! exist); if all hold, put every key (value: its horizon) with its bucket's
//! lease; if any fails, nothing is written and a count-only range of every
//! key says which existed.

use super::lease::Bucket;
use super::{Answer, Claim};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

pub const TXN_PATH: &str = "/v3/kv/txn";
pub const LEASE_GRANT_PATH: &str = "/v3/lease/grant";
/// The largest answer read: a transaction's is about 100 bytes per claim.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The gateway's error text when a transaction names a lease etcd lacks.
const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
/// ... and when a lease grant names an id that exists.
const LEASE_EXISTS: &str = "etcdserver: lease already exists";
/// Longest piece of an etcd error kept for the log line.
const MAX_ERROR_CHARS: usize = 160;

/// The full etcd key of a claim.
pub fn key(prefix: &str, claim: &Claim) -> String {
    format!("{prefix}{}", claim.key())
}

/// The transaction claiming `claims`, each with the lease of its bucket
/// (`buckets[i]` for `claims[i]`, see [`super::lease::buckets`]).
pub fn txn_body(prefix: &str, claims: &[Claim], buckets: &[Bucket]) -> Vec<u8> {
    let b64 = |s: &str| STANDARD.encode(s.as_bytes());
    let mut compare = Vec::with_capacity(claims.len());
    let mut success = Vec::with_capacity(claims.len());
    let mut failure = Vec::with_capacity(claims.len());
    for (claim, bucket) in claims.iter().zip(buckets) {
        let k = b64(&key(prefix, claim));
        compare
            .push(json!({"target": "CREATE", "result": "EQUAL", "key": k, "create_revision": "0"}));
        success.push(json!({"request_put": {
            "key": k,
            "value": b64(&claim.horizon.to_string()),
            "lease": bucket.lease_id(prefix).to_string(),
        }}));
        failure.push(json!({"request_range": {"key": k, "count_only": true}}));
    }
    json!({"compare": compare, "success": success, "failure": failure})
        .to_string()
        .into_bytes()
}

/// etcd's answer to [`txn_body`] for `claims` claims: the HTTP status (none
/// when the call failed: connection refused or reset, timeout) and body.
pub fn parse_txn(status: Option<u32>, body: &[u8], claims: usize) -> Answer {
    let unavailable = |why: String| Answer::Unavailable(format!("etcd transaction: {why}"));
    let doc = match answer(status, body) {
        Ok(doc) => doc,
        Err(Failure::Status(404, error)) if error == LEASE_NOT_FOUND => {
            return Answer::LeaseMissing
        }
        Err(failure) => return unavailable(failure.to_string()),
    };
    let succeeded = match doc.get("succeeded") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return unavailable("`succeeded` is not a boolean".into()),
    };
    let responses = match doc.get("responses") {
        Some(Value::Array(r)) if r.len() == claims => r,
        _ => return unavailable(format!("not {claims} responses")),
    };
    let op = if succeeded {
        "response_put"
    } else {
        "response_range"
    };
    let mut taken = Vec::new();
    for (i, response) in responses.iter().enumerate() {
        let Some(inner) = only_member(response, op) else {
            return unavailable(format!("response {i} is not a {op}"));
        };
        if succeeded {
            continue;
        }
        match count(inner) {
            Some(0) => {}
            Some(_) => taken.push(i),
            None => return unavailable(format!("response {i} has no valid count")),
        }
    }
    match (succeeded, taken.is_empty()) {
        (true, _) => Answer::Claimed,
        (false, false) => Answer::Taken(taken),
        (false, true) => unavailable("refused, yet every key is absent".into()),
    }
}

/// The grant of a bucket's lease, alive until [`Bucket::expires`].
pub fn grant_body(prefix: &str, bucket: &Bucket, now: u64) -> Vec<u8> {
    json!({"ID": bucket.lease_id(prefix).to_string(), "TTL": bucket.ttl(now).to_string()})
        .to_string()
        .into_bytes()
}

/// etcd's answer to [`grant_body`]: the lease exists now, granted by this
/// call or by another Envoy before it.
pub fn parse_grant(
    status: Option<u32>,
    body: &[u8],
    prefix: &str,
    bucket: &Bucket,
) -> Result<(), String> {
    let id = bucket.lease_id(prefix).to_string();
    match answer(status, body) {
        Ok(doc) if doc.get("ID").and_then(Value::as_str) == Some(id.as_str()) => Ok(()),
        Ok(_) => Err(format!(
            "etcd lease grant: the answer does not name lease {id}"
        )),
        Err(Failure::Status(400, error)) if error == LEASE_EXISTS => Ok(()),
        Err(failure) => Err(format!("etcd lease grant: {failure}")),
    }
}

/// Why an answer is not a usable document.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// No HTTP answer at all.
    NoAnswer,
    /// A status other than 200, with etcd's error text (if any).
    Status(u32, String),
    /// 200, but not a JSON object with a `header`.
    Malformed(&'static str),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NoAnswer => write!(f, "no answer (unreachable, reset or timed out)"),
            Failure::Status(status, error) if error.is_empty() => write!(f, "HTTP {status}"),
            Failure::Status(status, error) => write!(f, "HTTP {status}: {error}"),
            Failure::Malformed(what) => write!(f, "{what}"),
        }
    }
}

/// A 200 answer's JSON object (with etcd's response `header`), or why not.
fn answer(status: Option<u32>, body: &[u8]) -> Result<Map<String, Value>, Failure> {
    let status = status.ok_or(Failure::NoAnswer)?;
    if body.len() > MAX_ANSWER_BYTES {
        return Err(Failure::Malformed("answer too large"));
    }
    // Duplicate members would let two readers of one answer disagree.
    let doc = match custody_json::parse_strict(body, 16) {
        Ok(Value::Object(doc)) => Some(doc),
        _ => None,
    };
    if status != 200 {
        let error = doc
            .as_ref()
            .and_then(|d| d.get("error"))
            .and_then(Value::as_str)
            .map(|e| e.chars().take(MAX_ERROR_CHARS).collect())
            .unwrap_or_default();
        return Err(Failure::Status(status, error));
    }
    let doc = doc.ok_or(Failure::Malformed("answer is not a JSON object"))?;
    if !doc.get("header").is_some_and(Value::is_object) {
        return Err(Failure::Malformed("answer has no header"));
    }
    Ok(doc)
}

/// The value of `value`'s single member `name`, an object.
fn only_member<'a>(value: &'a Value, name: &str) -> Option<&'a Map<String, Value>> {
    match value.as_object() {
        Some(o) if o.len() == 1 => o.get(name)?.as_object(),
        _ => None,
    }
}

/// A range's `count`: absent is 0; else a string of digits.
fn count(range: &Map<String, Value>) -> Option<u64> {
    match range.get("count") {
        None => Some(0),
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::ledger::{lease, Kind};
    use custody_testkit::NOW;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const HEADER: &str =
        r#""header":{"cluster_id":"1","member_id":"2","revision":"7","raft_term":"2"}"#;

    fn claims() -> Vec<Claim> {
        vec![
            Claim::proof("jti-1", NOW + 60, 30),
            Claim {
                kind: Kind::Step,
                digest: [9; 32],
                horizon: NOW + 7_200,
            },
        ]
    }

    #[test]
    fn the_transaction_creates_every_key_only_if_all_are_absent() {
        let claims = claims();
        let buckets = lease::buckets(&claims, NOW);
        let body: Value = serde_json::from_slice(&txn_body("custody/", &claims, &buckets)).unwrap();
        let keys: Vec<String> = claims
            .iter()
            .map(|c| STANDARD.encode(key("custody/", c)))
            .collect();
        assert_eq!(
            body["compare"],
            json!([
                {"target": "CREATE", "result": "EQUAL", "key": keys[0], "create_revision": "0"},
                {"target": "CREATE", "result": "EQUAL", "key": keys[1], "create_revision": "0"},
            ])
        );
        for (i, c) in claims.iter().enumerate() {
            let put = &body["success"][i]["request_put"];
            assert_eq!(put["key"], keys[i]);
            assert_eq!(put["value"], STANDARD.encode(c.horizon.to_string()));
            assert_eq!(put["lease"], buckets[i].lease_id("custody/").to_string());
            assert_eq!(
                body["failure"][i],
                json!({"request_range": {"key": keys[i], "count_only": true}})
            );
        }
        assert_ne!(buckets[0].width, buckets[1].width, "a proof and a far step");
        let text = String::from_utf8(txn_body("custody/", &claims, &buckets)).unwrap();
        let decoded = STANDARD.decode(keys[0].as_bytes()).unwrap();
        assert!(String::from_utf8(decoded)
            .unwrap()
            .starts_with("custody/jti/"));
        assert!(!text.contains("jti-1"), "no claim text in etcd");
    }

    #[test]
    fn answers_as_etcd_35_sends_them() {
        let ok = format!(
            r#"{{{HEADER},"succeeded":true,"responses":[{{"response_put":{{"header":{{"revision":"7"}}}}}},{{"response_put":{{"header":{{"revision":"7"}}}}}}]}}"#
        );
        assert_eq!(parse_txn(Some(200), ok.as_bytes(), 2), Answer::Claimed);
        let taken = format!(
            r#"{{{HEADER},"responses":[{{"response_range":{{"header":{{"revision":"7"}}}}}},{{"response_range":{{"header":{{"revision":"7"}},"count":"1"}}}}]}}"#
        );
        assert_eq!(
            parse_txn(Some(200), taken.as_bytes(), 2),
            Answer::Taken(vec![1])
        );
        let lost = br#"{"error":"etcdserver: requested lease not found","code":5,"message":"etcdserver: requested lease not found"}"#;
        assert_eq!(parse_txn(Some(404), lost, 2), Answer::LeaseMissing);
    }

    #[test]
    fn anything_else_is_unavailable_never_an_allow() {
        let range = |count: &str| format!(r#"{{"response_range":{{"header":{{}}{count}}}}}"#);
        let put = r#"{"response_put":{"header":{}}}"#;
        let cases: Vec<(Option<u32>, String, &str)> = vec![
            (None, String::new(), "no answer"),
            (
                Some(503),
                r#"{"error":"etcdserver: request timed out","code":14}"#.into(),
                "HTTP 503: etcdserver: request timed out",
            ),
            (Some(504), "upstream request timeout".into(), "HTTP 504"),
            (
                Some(500),
                r#"{"error":"context deadline exceeded","code":2}"#.into(),
                "HTTP 500",
            ),
            (
                Some(404),
                r#"{"error":"not found"}"#.into(),
                "HTTP 404: not found",
            ),
            (Some(200), String::new(), "not a JSON object"),
            (Some(200), "[]".into(), "not a JSON object"),
            (
                Some(200),
                format!(r#"{{"succeeded":true,"responses":[{put},{put}]}}"#),
                "no header",
            ),
            (
                Some(200),
                format!(r#"{{{HEADER},"succeeded":"true","responses":[{put},{put}]}}"#),
                "not a boolean",
            ),
            (
                Some(200),
                format!(r#"{{{HEADER},"succeeded":true,"responses":[{put}]}}"#),
                "not 2 responses",
            ),
            (
                Some(200),
                format!(r#"{{{HEADER},"succeeded":true}}"#),
                "not 2 responses",
            ),
            (
                Some(200),
                format!(
                    r#"{{{HEADER},"succeeded":true,"responses":[{put},{}]}}"#,
                    range("")
                ),
                "response 1 is not a response_put",
            ),
            (
                Some(200),
                format!(r#"{{{HEADER},"responses":[{put},{put}]}}"#),
                "response 0 is not a response_range",
            ),
            (
                Some(200),
                format!(r#"{{{HEADER},"responses":[{},{}]}}"#, range(""), range("")),
                "every key is absent",
            ),
            (
                Some(200),
                format!(
                    r#"{{{HEADER},"responses":[{},{}]}}"#,
                    range(r#","count":"0""#),
                    range("")
                ),
                "every key is absent",
            ),
            (
                Some(200),
                format!(
                    r#"{{{HEADER},"responses":[{},{}]}}"#,
                    range(r#","count":1"#),
                    range("")
                ),
                "no valid count",
            ),
            (
                Some(200),
                format!(
                    r#"{{{HEADER},"responses":[{},{}]}}"#,
                    range(r#","count":"-1""#),
                    range("")
                ),
                "no valid count",
            ),
            (
                Some(200),
                format!(
                    r#"{{{HEADER},"responses":[{},{}]}}"#,
                    range(r#","count":"""#),
                    range("")
                ),
                "no valid count",
            ),
            (
                Some(200),
                format!(
                    r#"{{{HEADER},"succeeded":true,"succeeded":false,"responses":[{put},{put}]}}"#
                ),
                "not a JSON object",
            ),
            (
                Some(200),
                format!(
                    r#"{{{HEADER},"responses":[{{"response_range":{{}},"response_put":{{}}}},{}]}}"#,
                    range("")
                ),
                "not a response_range",
            ),
        ];
        for (status, body, why) in cases {
            match parse_txn(status, body.as_bytes(), 2) {
                Answer::Unavailable(detail) => assert!(detail.contains(why), "{body}: {detail}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        let huge = format!(r#"{{{HEADER},"pad":"{}"}}"#, "x".repeat(MAX_ANSWER_BYTES));
        assert!(
            matches!(parse_txn(Some(200), huge.as_bytes(), 2), Answer::Unavailable(d) if d.contains("too large"))
        );
        let long_error = format!(r#"{{"error":"{}"}}"#, "e".repeat(10_000));
        let Answer::Unavailable(detail) = parse_txn(Some(503), long_error.as_bytes(), 2) else {
            panic!()
        };
        assert!(detail.len() < 300, "etcd's error text is cut for the log");
    }

    #[test]
    fn a_lease_exists_once_granted_by_anyone() {
        let b = Bucket::covering(NOW + 90, NOW);
        let id = b.lease_id("custody/").to_string();
        let body: Value = serde_json::from_slice(&grant_body("custody/", &b, NOW)).unwrap();
        assert_eq!(body, json!({"ID": id, "TTL": b.ttl(NOW).to_string()}));
        let granted = format!(r#"{{{HEADER},"ID":"{id}","TTL":"{}"}}"#, b.ttl(NOW));
        assert_eq!(
            parse_grant(Some(200), granted.as_bytes(), "custody/", &b),
            Ok(())
        );
        let exists = br#"{"error":"etcdserver: lease already exists","code":9,"message":"etcdserver: lease already exists"}"#;
        assert_eq!(parse_grant(Some(400), exists, "custody/", &b), Ok(()));
        let other = format!(r#"{{{HEADER},"ID":"12","TTL":"60"}}"#);
        assert!(parse_grant(Some(200), other.as_bytes(), "custody/", &b).is_err());
        assert!(parse_grant(
            Some(400),
            br#"{"error":"etcdserver: too many requests"}"#,
            "custody/",
            &b
        )
        .is_err());
        assert!(parse_grant(None, b"", "custody/", &b).is_err());
        assert!(parse_grant(Some(503), exists, "custody/", &b).is_err());
    }
}
