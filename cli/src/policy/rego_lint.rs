//! Lints over a policy's Rego modules for what regorus accepts when it
//! loads them but fails (or silently leaves undefined) at every evaluation:
//! a call to a function that is neither a builtin of the filter's engine
//! (regorus with the features of core/Cargo.toml) nor defined by the
//! modules; a `default` value that is not a constant (`default allow :=
//! fals`); a `data.` reference to a rule no module defines (the filter
//! loads no data documents).

use crate::finding::Finding;
use crate::yaml_pos::Pos;
use regorus::unstable::{Expr, Literal, Module, Query, Rule, RuleHead, BUILTINS};
use regorus::utils::get_path_string;
use std::collections::{BTreeMap, BTreeSet};

/// Rules and functions the modules define, by full path (`data.pkg.name`).
struct Defined {
    rules: BTreeSet<String>,
    functions: BTreeSet<String>,
    packages: BTreeSet<String>,
}

/// Lints every module of `modules` (name → source). `file_of` maps a module
/// name to the path shown. A module regorus cannot parse is reported by the
/// compile step, not here.
pub fn lint(modules: &BTreeMap<String, String>, file_of: &dyn Fn(&str) -> String) -> Vec<Finding> {
    let mut engine = regorus::Engine::new();
    for (name, source) in modules {
        if engine.add_policy(name.clone(), source.clone()).is_err() {
            return Vec::new();
        }
    }
    let parsed: Vec<regorus::unstable::Ref<Module>> = engine.get_modules().clone();
    let mut defined = Defined {
        rules: BTreeSet::new(),
        functions: BTreeSet::new(),
        packages: BTreeSet::new(),
    };
    for module in &parsed {
        let Ok(package) = get_path_string(&module.package.refr, Some("data")) else {
            continue;
        };
        defined.packages.insert(package.clone());
        for rule in &module.policy {
            let (refr, function) = match &**rule {
                Rule::Spec {
                    head: RuleHead::Func { refr, .. },
                    ..
                } => (refr, true),
                Rule::Spec {
                    head: RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. },
                    ..
                } => (refr, false),
                Rule::Default { refr, args, .. } => (refr, !args.is_empty()),
            };
            if let Some(name) = rule_name(refr) {
                let full = format!("{package}.{name}");
                if function {
                    defined.functions.insert(full);
                } else {
                    defined.rules.insert(full);
                }
            }
        }
    }
    let mut out = Vec::new();
    for module in &parsed {
        let Ok(package) = get_path_string(&module.package.refr, Some("data")) else {
            continue;
        };
        let file = file_of(module.package.span.source.get_path());
        let mut imports = BTreeMap::new();
        for import in &module.imports {
            if let Ok(target) = get_path_string(&import.refr, None) {
                let alias = import
                    .r#as
                    .as_ref()
                    .map(|a| a.text().to_owned())
                    .or_else(|| target.rsplit('.').next().map(str::to_owned))
                    .unwrap_or_default();
                imports.insert(alias, target);
            }
        }
        let mut walker = Walker {
            defined: &defined,
            package: &package,
            imports: &imports,
            file: &file,
            out: &mut out,
        };
        for rule in &module.policy {
            walker.rule(rule);
        }
    }
    out
}

/// The name a rule head defines: its path's first component (`allow` of
/// `allow`, `p` of `p.q[x]`).
fn rule_name(refr: &Expr) -> Option<String> {
    let mut e = refr;
    loop {
        match e {
            Expr::Var { span, .. } => return Some(span.text().to_owned()),
            Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } => e = refr,
            _ => return None,
        }
    }
}

struct Walker<'a> {
    defined: &'a Defined,
    package: &'a str,
    imports: &'a BTreeMap<String, String>,
    file: &'a str,
    out: &'a mut Vec<Finding>,
}

fn pos_of(span: &regorus::unstable::Span) -> Option<Pos> {
    Some(Pos {
        line: span.line as usize,
        column: span.col as usize,
    })
}

impl Walker<'_> {
    fn rule(&mut self, rule: &Rule) {
        match rule {
            Rule::Default { refr, value, .. } => {
                let name = rule_name(refr).unwrap_or_default();
                if let Some(var) = first_var(value) {
                    self.out.push(Finding::error(
                        self.file,
                        pos_of(var_span(var)),
                        &format!("{}.{name}", self.package),
                        format!(
                            "the default value must be a constant, but `{}` is a variable{}",
                            var_span(var).text(),
                            match var_span(var).text() {
                                "fals" | "flase" | "fasle" => " (did you mean false?)",
                                "ture" | "treu" => " (did you mean true?)",
                                _ => "",
                            }
                        ),
                    ));
                }
                self.expr(value);
            }
            Rule::Spec { head, bodies, .. } => {
                match head {
                    RuleHead::Compr { refr, assign, .. } => {
                        self.expr(refr);
                        if let Some(a) = assign {
                            self.expr(&a.value);
                        }
                    }
                    RuleHead::Set { refr, key, .. } => {
                        self.expr(refr);
                        if let Some(k) = key {
                            self.expr(k);
                        }
                    }
                    RuleHead::Func { assign, .. } => {
                        if let Some(a) = assign {
                            self.expr(&a.value);
                        }
                    }
                }
                for body in bodies {
                    if let Some(a) = &body.assign {
                        self.expr(&a.value);
                    }
                    self.query(&body.query);
                }
            }
        }
    }

    fn query(&mut self, q: &Query) {
        for stmt in &q.stmts {
            match &stmt.literal {
                Literal::SomeVars { .. } => {}
                Literal::SomeIn {
                    key,
                    value,
                    collection,
                    ..
                } => self.membership(key.as_deref(), value, collection),
                Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => self.expr(expr),
                Literal::Every { domain, query, .. } => {
                    self.expr(domain);
                    self.query(query);
                }
            }
            for w in &stmt.with_mods {
                self.expr(&w.r#as);
            }
        }
    }

    fn expr(&mut self, e: &Expr) {
        match e {
            Expr::String { .. }
            | Expr::RawString { .. }
            | Expr::Number { .. }
            | Expr::Bool { .. }
            | Expr::Null { .. }
            | Expr::Var { .. } => {}
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                items.iter().for_each(|i| self.expr(i))
            }
            Expr::Object { fields, .. } => {
                for (_, k, v) in fields {
                    self.expr(k);
                    self.expr(v);
                }
            }
            Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                self.expr(term);
                self.query(query);
            }
            Expr::ObjectCompr {
                key, value, query, ..
            } => {
                self.expr(key);
                self.expr(value);
                self.query(query);
            }
            Expr::Call { fcn, params, .. } => {
                self.call(leftmost(fcn), fcn);
                params.iter().for_each(|p| self.expr(p));
            }
            Expr::UnaryExpr { expr, .. } => self.expr(expr),
            Expr::RefDot { .. } | Expr::RefBrack { .. } => {
                self.reference(leftmost(e), e);
            }
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. }
            | Expr::AssignExpr { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            Expr::Membership {
                key,
                value,
                collection,
                ..
            } => self.membership(key.as_deref(), value, collection),
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// `key, value in collection`: a `some … in` or a membership expression.
    fn membership(&mut self, key: Option<&Expr>, value: &Expr, collection: &Expr) {
        if let Some(k) = key {
            self.expr(k);
        }
        self.expr(value);
        self.expr(collection);
    }

    /// A function call: a builtin of the engine, `print`, or a function the
    /// modules define (directly, by `data.` path or through an import).
    fn call(&mut self, span: &regorus::unstable::Span, fcn: &Expr) {
        let Ok(path) = get_path_string(fcn, None) else {
            return;
        };
        if path == "print" || BUILTINS.contains_key(path.as_str()) {
            return;
        }
        let full = self.resolve(&path);
        if self.defined.functions.contains(&full) || self.defined.rules.contains(&full) {
            return;
        }
        let group = path.split('.').next().unwrap_or_default();
        let why = if matches!(
            group,
            "regex"
                | "time"
                | "glob"
                | "http"
                | "net"
                | "uuid"
                | "semver"
                | "json"
                | "yaml"
                | "crypto"
                | "io"
                | "jwt"
                | "graph"
                | "opa"
                | "rand"
        ) && path.contains('.')
        {
            format!(
                "'{path}' is not a builtin of the filter's Rego engine (regorus without its optional builtin groups, such as {group}.*): every evaluation would fail (rego_error)"
            )
        } else {
            format!(
                "'{path}' is neither a builtin of the filter's Rego engine nor a function of the policy's modules: every evaluation would fail (rego_error)"
            )
        };
        self.out
            .push(Finding::error(self.file, pos_of(span), &path, why));
    }

    /// `x.y` → `data.pkg.x.y` for a name of this package, or through an import.
    fn resolve(&self, path: &str) -> String {
        if path.starts_with("data.") {
            return path.to_owned();
        }
        let (first, rest) = path.split_once('.').unwrap_or((path, ""));
        match self.imports.get(first) {
            Some(target) if rest.is_empty() => target.clone(),
            Some(target) => format!("{target}.{rest}"),
            None => format!("{}.{path}", self.package),
        }
    }

    /// A reference: `data.…` must reach a rule or package of the modules;
    /// index expressions inside it are walked.
    fn reference(&mut self, span: &regorus::unstable::Span, e: &Expr) {
        let mut parts = Vec::new();
        let mut cur = e;
        let root = loop {
            match cur {
                Expr::RefDot { refr, field, .. } => {
                    parts.push(Some(field.0.text().to_owned()));
                    cur = refr;
                }
                Expr::RefBrack { refr, index, .. } => {
                    match &**index {
                        Expr::String { value, .. } => {
                            parts.push(value.as_string().ok().map(|s| s.to_string()))
                        }
                        other => {
                            parts.push(None);
                            self.expr(other);
                        }
                    }
                    cur = refr;
                }
                Expr::Var { span, .. } => break Some(span.text().to_owned()),
                other => {
                    self.expr(other);
                    break None;
                }
            }
        };
        parts.reverse();
        let root = match root.as_deref() {
            Some("data") => "data".to_owned(),
            Some(alias) => match self.imports.get(alias) {
                Some(target) if target.starts_with("data.") => target.clone(),
                _ => return,
            },
            None => return,
        };
        // The static prefix: data.a.b.c until the first computed index.
        let mut path = root;
        for part in parts {
            let Some(p) = part else { break };
            path.push('.');
            path.push_str(&p);
        }
        self.check_data(span, &path);
    }

    fn check_data(&mut self, span: &regorus::unstable::Span, path: &str) {
        let d = self.defined;
        let known =
            |p: &str| d.rules.contains(p) || d.functions.contains(p) || d.packages.contains(p);
        // Some prefix of the path is a rule (what follows indexes its value),
        // or the path is a package or a prefix of one.
        let mut prefix = String::new();
        for part in path.split('.') {
            if !prefix.is_empty() {
                prefix.push('.');
            }
            prefix.push_str(part);
            if d.rules.contains(&prefix) || d.functions.contains(&prefix) {
                return;
            }
        }
        let under = format!("{path}.");
        if path == "data" || known(path) || d.packages.iter().any(|p| p.starts_with(&under)) {
            return;
        }
        self.out.push(Finding::error(
            self.file,
            pos_of(span),
            path,
            format!(
                "'{path}' is not defined by the policy's modules (the filter loads no data documents): it is always undefined"
            ),
        ));
    }
}

/// The span of a reference's root (`data` of `data.x.y`, `regex` of `regex.match`).
fn leftmost(e: &Expr) -> &regorus::unstable::Span {
    match e {
        Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } => leftmost(refr),
        other => other.span(),
    }
}

fn first_var(e: &Expr) -> Option<&Expr> {
    match e {
        Expr::Var { .. } => Some(e),
        Expr::Array { items, .. } | Expr::Set { items, .. } => {
            items.iter().find_map(|i| first_var(i))
        }
        Expr::Object { fields, .. } => fields
            .iter()
            .find_map(|(_, k, v)| first_var(k).or_else(|| first_var(v))),
        Expr::UnaryExpr { expr, .. } => first_var(expr),
        Expr::RefDot { .. } | Expr::RefBrack { .. } | Expr::Call { .. } => Some(e),
        _ => None,
    }
}

fn var_span(e: &Expr) -> &regorus::unstable::Span {
    e.span()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn findings(source: &str) -> Vec<Finding> {
        let modules = BTreeMap::from([("x.rego".to_owned(), source.to_owned())]);
        lint(&modules, &|name| format!("dir/{name}"))
    }

    fn one(source: &str) -> Finding {
        crate::finding::only(findings(source))
    }

    const HEAD: &str = "package x\nimport rego.v1\n";

    #[test]
    fn a_default_that_is_not_a_constant() {
        let f = one(&format!("{HEAD}default allow := fals\nallow if input.a\n"));
        assert_eq!(f.file, "dir/x.rego");
        assert_eq!(
            f.pos,
            Some(Pos {
                line: 3,
                column: 18
            })
        );
        assert!(f.message.contains("did you mean false"), "{}", f.message);
        assert_eq!(
            findings(&format!(
                "{HEAD}default allow := false\ndefault n := 1\ndefault o := {{\"a\": [1]}}\n"
            )),
            []
        );
    }

    #[test]
    fn builtins_the_engine_lacks() {
        let f = one(&format!("{HEAD}allow if regex.match(\"a\", input.x)\n"));
        assert_eq!(
            f.pos,
            Some(Pos {
                line: 3,
                column: 10
            })
        );
        assert!(
            f.message.contains("'regex.match' is not a builtin"),
            "{}",
            f.message
        );
        let f = one(&format!("{HEAD}allow if time.now_ns() > 0\n"));
        assert!(f.message.contains("time.now_ns"), "{}", f.message);
        let f = one(&format!("{HEAD}allow if fo(1)\nf(x) := x\n"));
        assert!(f.message.contains("'fo'"), "{}", f.message);
        // Builtins the engine has, print, and the modules' own functions.
        assert_eq!(
            findings(&format!(
                "{HEAD}f(x) := x + 1\nallow if {{ startswith(input.a, \"b\"); count([1]) == 1; f(1) == 2; data.x.f(1) == 2; print(1) }}\n"
            )),
            []
        );
    }

    #[test]
    fn data_references_to_rules_no_module_defines() {
        let f = one(&format!("{HEAD}allow if data.x.alow\nallw if true\n"));
        assert!(
            f.message.contains("'data.x.alow' is not defined"),
            "{}",
            f.message
        );
        assert_eq!(
            f.pos,
            Some(Pos {
                line: 3,
                column: 10
            })
        );
        let f = one(&format!("{HEAD}allow if data.y.allow\n"));
        assert!(f.message.contains("data.y.allow"), "{}", f.message);
        assert_eq!(
            findings(&format!(
                "{HEAD}limits := {{\"a\": 1}}\nallow if {{ data.x.limits.a == 1; data.x.limits[input.k] == 1; some r in data.x; r }}\n"
            )),
            []
        );
        // Through an import.
        let modules = BTreeMap::from([
            ("a.rego".to_owned(), "package lib.a\nimport rego.v1\nok if true\nf(x) := x\n".to_owned()),
            ("b.rego".to_owned(), "package b\nimport rego.v1\nimport data.lib.a\nallow if { a.ok; a.f(1) == 1; a.nope }\n".to_owned()),
        ]);
        let f = lint(&modules, &|n| n.to_owned());
        assert_eq!(f.len(), 1, "{f:#?}");
        assert!(f[0].message.contains("data.lib.a.nope"), "{}", f[0].message);
    }
}
