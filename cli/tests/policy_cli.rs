//! `custody policy compile | eval | test` through the built binary, over the
//! shipped policies (policies/) and broken copies of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use custody_testkit::NOW;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn custody(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn the_shipped_policies_pass_their_tests() {
    let out = custody(&["policy", "test", "policies/"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let summary = stdout.lines().last().unwrap();
    assert!(summary.starts_with("PASS: "), "{stdout}");
    let (passed, total) = summary["PASS: ".len()..].split_once('/').unwrap();
    assert_eq!(passed, total);
    assert!(passed.parse::<usize>().unwrap() >= 60, "{summary}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn verbose_lists_every_test_and_case() {
    let out = custody(&["policy", "test", "policies/payments", "-v"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(
        "PASS policies/payments/refund_test.rego: data.payments.refund_test.test_denies_more_than_approved"
    ));
    assert!(stdout.contains(
        "PASS policies/payments/payments.cases.yaml: another agent presents the refund agent's history"
    ));
}

#[test]
fn a_broken_expectation_fails_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let payments = dir.path().join("payments");
    copy_dir(&root().join("policies/payments"), &payments);
    let cases = payments.join("payments.cases.yaml");
    let original = std::fs::read_to_string(&cases).unwrap();
    let name = "- name: refund above the approved amount\n";
    let at = original.find(name).expect("the case exists");
    let rest = &original[at..];
    let expect = "expect: {decision: deny, reason: rego_denied}";
    let end = at + rest.find(expect).unwrap();
    let broken = format!(
        "{}expect: {{decision: allow}}{}",
        &original[..end],
        &original[end + expect.len()..]
    );
    std::fs::write(&cases, broken).unwrap();

    let out = custody(&["policy", "test", dir.path().to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let fail = stdout
        .lines()
        .find(|l| l.starts_with("FAIL "))
        .expect("a failure line");
    assert!(
        fail.contains("refund above the approved amount")
            && fail.contains("expected allow, got deny (rego_denied)"),
        "{fail}"
    );
    assert_eq!(stdout.lines().filter(|l| l.starts_with("FAIL ")).count(), 1);
    assert!(
        stdout.lines().last().unwrap().starts_with("FAIL: 1/"),
        "{stdout}"
    );
}

#[test]
fn a_failing_rego_test_fails() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("policies/payments"), dir.path());
    let tests = dir.path().join("refund_test.rego");
    let mut source = std::fs::read_to_string(&tests).unwrap();
    source.push_str(
        "\ntest_more_than_approved if {\n\trefund.allow with input as request(20000, [approval(15000, agent, 60)])\n}\n",
    );
    std::fs::write(&tests, source).unwrap();
    let out = custody(&["policy", "test", dir.path().to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("data.payments.refund_test.test_more_than_approved: undefined"),
        "{stdout}"
    );
}

#[test]
fn test_needs_a_policy() {
    let dir = tempfile::tempdir().unwrap();
    let out = custody(&["policy", "test", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no policy.yaml found"));
}

const REFUND_AGENT: &str = "spiffe://example.org/ns/payments/sa/refund-agent";

fn refund_input(amount: u64) -> String {
    serde_json::json!({
        "calling_agent": REFUND_AGENT,
        "now": NOW,
        "mcp": {"method": "tools/call", "id": 7, "tool": "refund", "arguments": {"amount": amount}},
        "workflow": "wf-1",
        "history": [
            {"seq": 0, "step": "fraud_check_passed", "result": "approved",
             "agent": "spiffe://example.org/ns/payments/sa/fraud-agent",
             "next": "spiffe://example.org/ns/payments/sa/approvals",
             "iat": NOW - 600, "age": 600, "claims": {}},
            {"seq": 1, "step": "human_approval", "result": "approved",
             "agent": "spiffe://example.org/ns/payments/sa/approvals",
             "next": REFUND_AGENT, "iat": NOW - 300, "age": 300,
             "claims": {"amount": 15000}}
        ]
    })
    .to_string()
}

#[test]
fn eval_allows_and_denies() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.json");
    let out = custody(&[
        "policy",
        "compile",
        "policies/payments/policy.yaml",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
    assert!(json["modules"]["refund.rego"].is_string());
    assert!(json["modules"].get("refund_test.rego").is_none());

    let input = dir.path().join("input.json");
    let eval = |format: &str| {
        custody(&[
            "policy",
            "eval",
            "--bundle",
            bundle.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--format",
            format,
        ])
    };

    std::fs::write(&input, refund_input(12_000)).unwrap();
    let out = eval("text");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "allow (rule refunds)\n");
    let out = eval("json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"decision": "allow", "rule": "refunds"})
    );

    std::fs::write(&input, refund_input(20_000)).unwrap();
    let out = eval("text");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "deny (rego_denied)\n");
    let out = eval("json");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"decision": "deny", "reason": "rego_denied"})
    );

    // The require clauses apply to the document's history.
    let mut stale: serde_json::Value = serde_json::from_str(&refund_input(12_000)).unwrap();
    stale["history"][1]["iat"] = serde_json::json!(NOW - 1801);
    std::fs::write(&input, stale.to_string()).unwrap();
    assert_eq!(text(&eval("text").stdout), "deny (stale_step)\n");

    // An input that is not a decision's document is an error (exit 2).
    std::fs::write(&input, r#"{"mcp": {"method": "ping"}}"#).unwrap();
    let out = eval("text");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("calling_agent"));
    assert!(out.stdout.is_empty());
}

#[test]
fn eval_reads_a_policy_yaml_too() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    std::fs::write(&input, refund_input(15_000)).unwrap();
    let out = custody(&[
        "policy",
        "eval",
        "--policy",
        "policies/payments/policy.yaml",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert_eq!(text(&out.stdout), "allow (rule refunds)\n");
}

#[test]
fn eval_explain_prints_the_input_and_every_rule_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    let explain = |format: &str| {
        let out = custody(&[
            "policy",
            "eval",
            "--policy",
            "policies/payments/policy.yaml",
            "--input",
            input.to_str().unwrap(),
            "--explain",
            "--format",
            format,
        ]);
        (out.status.code(), text(&out.stdout))
    };
    // A stale approval: the closest rule, the clause, and by how much.
    let mut stale: serde_json::Value = serde_json::from_str(&refund_input(12_000)).unwrap();
    stale["history"][1]["iat"] = serde_json::json!(NOW - 1860);
    stale["history"][1].as_object_mut().unwrap().remove("age");
    std::fs::write(&input, stale.to_string()).unwrap();
    let (code, out) = explain("text");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.starts_with("input:\n  {\n"), "{out}");
    // The document as completed: `age` filled in from `iat`.
    assert!(out.contains("\"age\": 1860"), "{out}");
    assert!(
        out.contains("  lifecycle: does not apply (caller yes, method no, target yes)\n"),
        "{out}"
    );
    assert!(
        out.contains("    require fraud_check_passed: met by history[0]\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "    require human_approval: stale_step: human_approval is 1860 s old, within 1800 s\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("    rego data.payments.refund.allow: not evaluated\n"),
        "{out}"
    );
    assert!(out.ends_with(
        "deny (stale_step), closest rule refunds: human_approval is 1860 s old, within 1800 s\n"
    ), "{out}");
    // Over the approved amount: the Rego verdict.
    std::fs::write(&input, refund_input(20_000)).unwrap();
    let (code, out) = explain("json");
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["reason"], "rego_denied");
    assert_eq!(v["closest_rule"], "refunds");
    assert_eq!(v["detail"], "data.payments.refund.allow is false");
    assert_eq!(v["input"]["mcp"]["arguments"]["amount"], 20_000);
    let refunds = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "refunds")
        .unwrap();
    assert_eq!(refunds["applies"], true);
    assert_eq!(
        refunds["require"][1],
        serde_json::json!({"step": "human_approval", "met": true, "entry": 1})
    );
    assert_eq!(refunds["rego"]["result"], "false");
    assert_eq!(refunds["verdict"], "rego_denied");
    // Allowed: no closest rule, no detail.
    std::fs::write(&input, refund_input(12_000)).unwrap();
    let (code, out) = explain("json");
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["rule"].as_str(), v["closest_rule"].is_null()),
        (Some("refunds"), true)
    );
    assert_eq!(v["rules"][1]["rego"]["result"], "true");
}

/// A policy directory with one rule naming `rego` and one module.
fn policy_dir(rego_rule: &str, module: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        format!(
            "rules:\n- name: r\n  callers: [\"spiffe://example.org/a\"]\n  methods: [ping]\n  rego: {rego_rule}\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("x.rego"), module).unwrap();
    dir
}

fn compile_fails(dir: &Path) -> String {
    let out = custody(&[
        "policy",
        "compile",
        dir.join("policy.yaml").to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(out.stdout.is_empty());
    stderr
}

#[test]
fn compile_refuses_a_missing_rego_rule() {
    let dir = policy_dir("data.x.allow", "package x\nimport rego.v1\nallw if true\n");
    let err = compile_fails(dir.path());
    assert!(
        err.contains(
            "policy.yaml:5:3: rules[0]: rule 'r': rego rule 'data.x.allow' is not defined"
        ),
        "{err}"
    );
}

#[test]
fn compile_refuses_a_rego_syntax_error() {
    let dir = policy_dir("data.x.allow", "package x\nimport rego.v1\nallow if {\n");
    let err = compile_fails(dir.path());
    assert!(
        err.starts_with("custody: error: ")
            && err.contains("/x.rego:4:1: ")
            && err.contains("expecting"),
        "{err}"
    );
}

#[test]
fn compile_ignores_test_files_and_keeps_plain_policies_as_they_were() {
    let dir = policy_dir("data.x.allow", "package x\nimport rego.v1\nallow if true\n");
    // A broken test file does not break the bundle.
    std::fs::write(dir.path().join("x_test.rego"), "package x_test\nnot rego {").unwrap();
    let out = custody(&[
        "policy",
        "compile",
        dir.path().join("policy.yaml").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["modules"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["x.rego"]
    );

    let out = custody(&["policy", "compile", "policies/demo/policy.yaml"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("modules").is_none());
    assert_eq!(v["rules"][1]["name"], "calculator");
}

/// One duration grammar: `1d` is a policy `within` as it is a CLI `--ttl`.
#[test]
fn within_takes_the_cli_duration_grammar() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "rules:\n- name: r\n  callers: [\"spiffe://example.org/a\"]\n  methods: [tools/call]\n  require:\n  - step: approval\n    by: [\"spiffe://example.org/b\"]\n    within: 1d\n";
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = custody(&["policy", "compile", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bundle: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bundle["rules"][0]["require"][0]["within"], "1d");
    std::fs::write(&path, yaml.replace("1d", "31d")).unwrap();
    let out = custody(&["policy", "compile", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("between 1s and 30d"),
        "{}",
        text(&out.stderr)
    );
}

/// Issue 14 item 4: each policy that can never match is refused at its line
/// (or, for a custom method, warned about), through the built binary.
#[test]
fn compile_refuses_what_can_never_match_at_its_line() {
    let head = "rules:\n- name: r\n  callers: [\"spiffe://example.org/a\"]\n";
    for (body, rego, want) in [
        ("  methods: [tool/call]\n", None, ":4:13: rules[0].methods[0]: unknown MCP method 'tool/call' (did you mean 'tools/call'?)"),
        ("  methods:\n  - ping\n  - tools/Call\n", None, ":6:5: rules[0].methods[1]: unknown MCP method 'tools/Call' (did you mean 'tools/call'?)"),
        ("  methods: [\"http:get\"]\n", None, ":4:13: rules[0].methods[0]: unknown pseudo-method 'http:get' (did you mean 'http:GET'?)"),
        ("  methods: [jsonrpc:reponse]\n", None, ":4:13: rules[0].methods[0]: unknown pseudo-method 'jsonrpc:reponse' (did you mean 'jsonrpc:response'?)"),
        ("  methods: [tools/list]\n  tools: [add]\n", None, ":5:3: rules[0].tools: rule 'r' lists tools but none of its methods (tools/list) carries a tool"),
        ("  methods: [ping]\n  rego: data.x.allow\n", Some("package x\nimport rego.v1\ndefault allow := fals\nallow if input.a\n"), "/x.rego:3:18: data.x.allow: the default value must be a constant, but `fals` is a variable (did you mean false?)"),
        ("  methods: [ping]\n  rego: data.x.allow\n", Some("package x\nimport rego.v1\nallow if regex.match(\"^a\", input.a)\n"), "/x.rego:3:10: regex.match: 'regex.match' is not a builtin of the filter's Rego engine"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!("{head}{body}");
        std::fs::write(dir.path().join("policy.yaml"), &yaml).unwrap();
        if let Some(module) = rego {
            std::fs::write(dir.path().join("x.rego"), module).unwrap();
        }
        let err = compile_fails(dir.path());
        assert!(err.starts_with("custody: error: "), "{err}");
        assert!(err.contains(want), "{yaml}: {err}");
    }
    // An empty rule set.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), "default: deny\nrules: []\n").unwrap();
    let err = compile_fails(dir.path());
    assert!(
        err.contains("policy.yaml:2:1: rules: the policy has no rules"),
        "{err}"
    );
}

#[test]
fn a_custom_method_is_a_warning_and_strict_makes_it_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, "rules:\n- name: r\n  callers: [\"spiffe://example.org/a\"]\n  methods: [ping, acme/frobnicate, \"notifications/*\"]\n").unwrap();
    let out = custody(&["policy", "compile", path.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.starts_with("custody: warning: "), "{stderr}");
    assert!(
        stderr.contains(
            "policy.yaml:4:19: rules[0].methods[1]: 'acme/frobnicate' is not a method of MCP"
        ),
        "{stderr}"
    );
    let bundle: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bundle["rules"][0]["methods"][2], "notifications/*");
    let out = custody(&["policy", "compile", "--strict", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("custody: warning: "));
    // JSON findings: one object per line on standard error.
    let out = custody(&[
        "policy",
        "compile",
        "--format",
        "json",
        path.to_str().unwrap(),
    ]);
    let finding: serde_json::Value = serde_json::from_str(text(&out.stderr).trim()).unwrap();
    assert_eq!(finding["severity"], "warning");
    assert_eq!(
        (finding["line"].as_u64(), finding["column"].as_u64()),
        (Some(4), Some(19))
    );
    assert_eq!(finding["path"], "rules[0].methods[1]");
}

#[test]
fn bundle_and_plugin_configuration_flags_read_standard_input() {
    use std::io::Write;
    let run = |args: &[&str], stdin: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_custody"))
            .args(args)
            .current_dir(root())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    };
    let bundle = custody(&["policy", "compile", "policies/payments/policy.yaml"]).stdout;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    std::fs::write(&input, refund_input(12_000)).unwrap();
    let out = run(
        &[
            "policy",
            "eval",
            "--bundle",
            "-",
            "--input",
            input.to_str().unwrap(),
        ],
        &bundle,
    );
    assert_eq!(
        text(&out.stdout),
        "allow (rule refunds)\n",
        "{}",
        text(&out.stderr)
    );
    let out = run(
        &[
            "policy",
            "render",
            "policies/payments/policy.yaml",
            "--as",
            "plugin-json",
            "--config",
            "-",
        ],
        br#"{"mode": "audit"}"#,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "audit", "{}", text(&out.stderr));
    // `-` for both the bundle and the input: standard input is read once.
    let out = run(
        &["policy", "eval", "--bundle", "-", "--input", "-"],
        &bundle,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("standard input was already read"),
        "{}",
        text(&out.stderr)
    );
}
