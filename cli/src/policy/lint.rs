//! Lints over a policy that the filter would load but that cannot do what
//! its author meant: a rule or clause that can never match. Errors for what
//! can never match; warnings where a person may mean it (a custom MCP
//! method, `tools: []`), errors too under `--strict`.

use super::mcp_methods::{self as mcp, Kind};
use crate::finding::{Finding, Severity};
use crate::yaml_pos::{Pos, Positions};
use custody_core::glob::Glob;
use custody_core::policy::{Policy, Rule};
use std::collections::BTreeSet;

/// Every lint over `policy`, read from `file` whose nodes are at `at`.
pub fn lint(policy: &Policy, file: &str, at: &Positions) -> Vec<Finding> {
    let mut out = Vec::new();
    if policy.rules.is_empty() {
        out.push(Finding::error(
            file,
            at.key("rules"),
            "rules",
            "the policy has no rules: it would refuse every request".into(),
        ));
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        lint_rule(rule, &format!("rules[{i}]"), file, at, &mut out);
    }
    out
}

fn lint_rule(rule: &Rule, path: &str, file: &str, at: &Positions, out: &mut Vec<Finding>) {
    // What the rule's methods can carry, and which of them carry nothing listed.
    let mut carried: BTreeSet<Kind> = BTreeSet::new();
    let methods: Vec<String> = rule.methods.iter().cloned().map(String::from).collect();
    let mut literal = Vec::new();
    for (j, m) in methods.iter().enumerate() {
        let p = format!("{path}.methods[{j}]");
        let matched = method(m, file, at.node(&p), &p, out);
        for known in &matched {
            carried.extend(mcp::targets(known));
        }
        if !m.contains('*') {
            literal.push((m.as_str(), p));
        }
    }
    let lists = [
        (Kind::Tool, rule.tools.len()),
        (Kind::Resource, rule.resources.len()),
        (Kind::Prompt, rule.prompts.len()),
    ];
    // A finding at the key of the rule's list of `kind` (`rules[0].tools`).
    let on_list = |kind: Kind, severity: Severity, message: String| {
        let p = format!("{path}.{}", kind.key());
        Finding::new(severity, file, at.key(&p), &p, message)
    };
    for (kind, len) in lists {
        if len == 0 && at.node(&format!("{path}.{}", kind.key())).is_some() {
            out.push(on_list(
                kind,
                Severity::Warning,
                format!(
                    "`{}: []` is the same as leaving it out: the rule then covers every target of its methods",
                    kind.key()
                ),
            ));
        }
    }
    let listed: Vec<Kind> = lists
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, _)| *k)
        .collect();
    if listed.is_empty() {
        return;
    }
    if !listed.iter().any(|k| carried.contains(k)) {
        let k = listed.first().copied().unwrap_or(Kind::Tool);
        out.push(on_list(
            k,
            Severity::Error,
            format!(
                "rule '{}' lists {} but none of its methods ({}) carries {}, so it can never match ({} do)",
                rule.name,
                listed.iter().map(|k| k.key()).collect::<Vec<_>>().join(" and "),
                methods.join(", "),
                listed.iter().map(|k| format!("a {}", k.noun())).collect::<Vec<_>>().join(" or "),
                carriers(&listed),
            ),
        ));
        return;
    }
    for k in listed.iter().filter(|k| !carried.contains(k)) {
        out.push(on_list(
            *k,
            Severity::Warning,
            format!(
                "none of rule '{}''s methods carries a {}, so `{}` never applies",
                rule.name,
                k.noun(),
                k.key()
            ),
        ));
    }
    for (m, p) in literal {
        let kinds = mcp::targets(m);
        if mcp::matchable().any(|known| known == m) && !listed.iter().any(|k| kinds.contains(k)) {
            out.push(Finding::warning(
                file,
                at.node(&p),
                &p,
                format!(
                    "{m} carries no {}, so rule '{}' (which lists {}) never matches it: put it in a rule without target lists",
                    listed.iter().map(|k| k.noun()).collect::<Vec<_>>().join(" or "),
                    rule.name,
                    listed.iter().map(|k| k.key()).collect::<Vec<_>>().join(" and "),
                ),
            ));
        }
    }
}

/// The methods that carry any of `kinds`.
fn carriers(kinds: &[Kind]) -> String {
    mcp::CLIENT
        .iter()
        .filter(|m| mcp::targets(m).iter().any(|k| kinds.contains(k)))
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks one `methods` pattern; returns the known methods it matches.
fn method(
    m: &str,
    file: &str,
    pos: Option<Pos>,
    path: &str,
    out: &mut Vec<Finding>,
) -> Vec<&'static str> {
    if m.contains('*') {
        let matched: Vec<&'static str> = match Glob::new(m) {
            Ok(g) => mcp::matchable().filter(|k| g.matches(k)).collect(),
            Err(_) => Vec::new(),
        };
        if matched.is_empty() {
            out.push(Finding::warning(
                file,
                pos,
                path,
                format!(
                    "'{m}' matches no method of MCP {} and no pseudo-method: only custom methods",
                    mcp::VERSIONS
                ),
            ));
        }
        return matched;
    }
    if mcp::matchable().any(|k| k == m) {
        return mcp::CLIENT
            .iter()
            .chain(mcp::PSEUDO)
            .copied()
            .filter(|k| *k == m)
            .collect();
    }
    let hint = |s: Option<&str>| {
        s.map(|k| format!(" (did you mean '{k}'?)"))
            .unwrap_or_default()
    };
    let message = if mcp::SERVER_ONLY.contains(&m) {
        Some(format!(
            "'{m}' is sent by servers to clients, never in a request the filter sees; a client's answer to it is matched as jsonrpc:response"
        ))
    } else if m.contains(':') {
        Some(format!(
            "unknown pseudo-method '{m}'{}: the pseudo-methods are {}, and no POSTed method contains ':'",
            hint(mcp::closest(m)),
            mcp::PSEUDO.join(", ")
        ))
    } else {
        mcp::closest(m).map(|k| format!("unknown MCP method '{m}'{}", hint(Some(k))))
    };
    match message {
        Some(message) => out.push(Finding::error(file, pos, path, message)),
        None => out.push(Finding::warning(
            file,
            pos,
            path,
            format!(
                "'{m}' is not a method of MCP {}: the rule matches it only if clients send this custom method",
                mcp::VERSIONS
            ),
        )),
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn findings(yaml: &str) -> Vec<Finding> {
        let policy: Policy = serde_norway::from_str(yaml).unwrap();
        let at = Positions::of_documents(yaml);
        lint(&policy, "p.yaml", &at[0])
    }

    fn one(yaml: &str) -> Finding {
        crate::finding::only(findings(yaml))
    }

    const HEAD: &str = "rules:\n- name: r\n  callers: [\"spiffe://example.org/a\"]\n";

    #[test]
    fn misspelt_methods_are_errors_at_their_item() {
        for (m, want) in [
            ("tool/call", "did you mean 'tools/call'"),
            ("tools/Call", "did you mean 'tools/call'"),
            ("http:get", "did you mean 'http:GET'"),
            ("jsonrpc:reponse", "did you mean 'jsonrpc:response'"),
            ("http:POST", "unknown pseudo-method"),
            ("sampling/createMessage", "sent by servers"),
        ] {
            let f = one(&format!("{HEAD}  methods:\n  - ping\n  - {m}\n"));
            assert_eq!(f.severity, Severity::Error, "{m}");
            assert_eq!(f.path, "rules[0].methods[1]");
            assert_eq!(f.pos, Some(Pos { line: 6, column: 5 }), "{m}");
            assert!(f.message.contains(want), "{m}: {}", f.message);
        }
    }

    #[test]
    fn custom_methods_and_globs_that_match_nothing_are_warnings() {
        let f = one(&format!("{HEAD}  methods: [acme/frobnicate]\n"));
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.message.contains("custom method"), "{}", f.message);
        let f = one(&format!("{HEAD}  methods: [\"acme/*\"]\n"));
        assert_eq!(f.severity, Severity::Warning);
        for ok in ["notifications/*", "**", "tools/*", "http:*", "*"] {
            assert_eq!(
                findings(&format!("{HEAD}  methods: [\"{ok}\"]\n")),
                [],
                "{ok}"
            );
        }
    }

    #[test]
    fn target_lists_on_methods_that_carry_none() {
        let f = one(&format!("{HEAD}  methods: [tools/list]\n  tools: [add]\n"));
        assert_eq!(f.severity, Severity::Error);
        assert_eq!(f.path, "rules[0].tools");
        assert_eq!(f.pos, Some(Pos { line: 5, column: 3 }));
        assert!(f.message.contains("can never match"), "{}", f.message);
        // Some methods carry the target: the others are named, as warnings.
        let f = one(&format!(
            "{HEAD}  methods: [tools/call, tools/list]\n  tools: [add]\n"
        ));
        assert_eq!(
            (f.severity, f.path.as_str()),
            (Severity::Warning, "rules[0].methods[1]")
        );
        let f = one(&format!(
            "{HEAD}  methods: [tools/call]\n  tools: [add]\n  resources: [\"file:///x\"]\n"
        ));
        assert_eq!(
            (f.severity, f.path.as_str()),
            (Severity::Warning, "rules[0].resources")
        );
        assert_eq!(
            findings(&format!(
                "{HEAD}  methods: [completion/complete]\n  prompts: [p]\n  resources: [r]\n"
            )),
            []
        );
        assert_eq!(
            findings(&format!("{HEAD}  methods: [\"**\"]\n  tools: [add]\n")),
            []
        );
        let f = one(&format!("{HEAD}  methods: [tools/call]\n  tools: []\n"));
        assert_eq!(
            (f.severity, f.path.as_str()),
            (Severity::Warning, "rules[0].tools")
        );
    }

    #[test]
    fn an_empty_rule_set_is_an_error() {
        let f = one("default: deny\nrules: []\n");
        assert_eq!(f.severity, Severity::Error);
        assert_eq!(f.pos, Some(Pos { line: 2, column: 1 }));
        assert_eq!(
            f.to_string(),
            "p.yaml:2:1: rules: the policy has no rules: it would refuse every request"
        );
    }

    #[test]
    fn the_shipped_methods_pass() {
        let yaml = format!("{HEAD}  methods: [server/discover, initialize, ping, \"notifications/*\", tools/list, jsonrpc:response, \"http:GET\", \"http:DELETE\"]\n");
        assert_eq!(findings(&yaml), []);
    }
}
