//! The rule subcommands, driven through their clap definitions against real files.

#[allow(dead_code)]
#[path = "../src/rules_cli/mod.rs"]
mod rules_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: rules_cli::RulesCommand,
}

fn run(args: &[&str]) -> (ExitCode, String) {
    let cli = Cli::try_parse_from(std::iter::once("aerie-detector").chain(args.iter().copied()))
        .expect("arguments parse");
    let mut out = Vec::new();
    let code = rules_cli::run_to(cli.cmd, &mut out).expect("command runs");
    (code, String::from_utf8(out).expect("utf-8 output"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Falco's upstream rules, or `None` (skip) when absent outside CI.
fn falco_rules() -> Option<PathBuf> {
    let dir = repo().join("../shared/falco-rules");
    if dir.join("falco_rules.yaml").exists() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("falco rules not found at {}", dir.display());
    }
    eprintln!("notice: {} not found; skipping", dir.display());
    None
}

fn tmp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aerie-rules-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn validate_json_reports_notice_counts() {
    let Some(dir) = falco_rules() else { return };
    let files: Vec<String> = [
        "falco_rules.yaml",
        "falco-incubating_rules.yaml",
        "falco-sandbox_rules.yaml",
        "k8s_audit_rules.yaml",
    ]
    .iter()
    .map(|f| dir.join(f).display().to_string())
    .collect();
    let mut args = vec!["validate", "--json", "--rules"];
    args.extend(files.iter().map(String::as_str));
    let (code, out) = run(&args);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let results = v["falco_load_results"].as_array().unwrap();
    let counts: Vec<(u64, u64, u64, u64)> = results
        .iter()
        .map(|r| {
            assert_eq!(r["successful"], true);
            assert!(r["errors"].as_array().unwrap().is_empty());
            let c = &r["counts"];
            (
                c["rules"].as_u64().unwrap(),
                c["macros"].as_u64().unwrap(),
                c["lists"].as_u64().unwrap(),
                c["disabled_rules"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            (25, 87, 49, 0),
            (31, 82, 54, 0),
            (37, 183, 60, 12),
            (48, 45, 18, 0)
        ]
    );
}

#[test]
fn validate_reports_located_errors_and_fails() {
    let bad = tmp(
        "bad.yaml",
        "- macro: m\n  condition: proc.name = x\n- rule: r\n  desc: d\n  condition: m and fd.nmae = y\n  output: o\n  priority: info\n",
    );
    let (code, out) = run(&["validate", "--json", "--rules", bad.to_str().unwrap()]);
    assert_eq!(code, ExitCode::FAILURE);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &v["falco_load_results"][0];
    assert_eq!(r["successful"], false);
    let e = &r["errors"][0];
    assert_eq!(e["code"], "LOAD_ERR_COMPILE_CONDITION");
    assert_eq!(e["item"], "r");
    assert_eq!(e["line"], 5);
    assert!(e["message"].as_str().unwrap().contains("fd.nmae"));
    assert!(e["file"].as_str().unwrap().ends_with("bad.yaml"));

    let (code, out) = run(&["validate", "--rules", bad.to_str().unwrap()]);
    assert_eq!(code, ExitCode::FAILURE);
    assert!(out.contains("Invalid") && out.contains("fd.nmae"), "{out}");
}

#[test]
fn validate_shows_the_open_path_filter_the_rules_allow() {
    let bounded = tmp(
        "bounded.yaml",
        "- rule: shadow\n  desc: d\n  condition: evt.type = openat and fd.name = /etc/shadow\n  output: o\n  priority: info\n",
    );
    let (code, out) = run(&["validate", "--rules", bounded.to_str().unwrap()]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(
        out.contains("open path filter: on, 1 prefixes [/etc/shadow] and 0 suffixes []"),
        "{out}"
    );
    let broad = tmp(
        "broad.yaml",
        "- rule: cat opens\n  desc: d\n  condition: evt.type = openat and proc.name = cat\n  output: o\n  priority: info\n",
    );
    let (code, out) = run(&["validate", "--rules", broad.to_str().unwrap()]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(
        out.contains("open path filter: off, every open is sent: rule \"cat opens\""),
        "{out}"
    );
}

#[test]
fn test_rules_on_stable_rules() {
    let Some(dir) = falco_rules() else { return };
    let rules = dir.join("falco_rules.yaml").display().to_string();
    let cases = repo()
        .join("config/rules/tests/falco_rules_cases.yaml")
        .display()
        .to_string();
    let (code, out) = run(&["test-rules", "--rules", &rules, &cases]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(
        out.contains("PASS cat reads /etc/shadow on the host"),
        "{out}"
    );
    assert!(out.contains("PASS cat reads /etc/hostname"), "{out}");
    assert!(out.contains("5 cases, 5 passed, 0 failed"), "{out}");
}

#[test]
fn test_rules_on_k8s_audit_rules() {
    let Some(dir) = falco_rules() else { return };
    let rules = dir.join("k8s_audit_rules.yaml").display().to_string();
    let cases = repo()
        .join("config/rules/tests/k8s_audit_cases.yaml")
        .display()
        .to_string();
    let (code, out) = run(&["test-rules", "--rules", &rules, &cases]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.contains("2 cases, 2 passed, 0 failed"), "{out}");
}

#[test]
fn test_rules_reports_failures() {
    let rules = tmp(
        "r.yaml",
        "- rule: Cat\n  desc: d\n  condition: evt.type = execve and proc.name = cat\n  output: o\n  priority: info\n",
    );
    let cases = tmp(
        "cases.yaml",
        "- name: wrong expectation\n  event: {fields: {evt.type: execve, proc.name: cat}}\n  expect_not: [Cat]\n- name: right\n  event: {fields: {evt.type: execve, proc.name: cat}}\n  expect: [Cat]\n",
    );
    let (code, out) = run(&[
        "test-rules",
        "--rules",
        rules.to_str().unwrap(),
        cases.to_str().unwrap(),
    ]);
    assert_eq!(code, ExitCode::FAILURE);
    assert!(out.contains("FAIL wrong expectation"), "{out}");
    assert!(out.contains("expected not to fire, fired: Cat"), "{out}");
    assert!(out.contains("fired: [Cat]"), "{out}");
    assert!(out.contains("PASS right"), "{out}");
}

/// `test-rules` cannot pass cases that test nothing: each of these exited 0 before.
#[test]
fn test_rules_refuses_cases_that_test_nothing() {
    let rules = tmp(
        "vacuous-rules.yaml",
        "- rule: Cat\n  desc: d\n  condition: evt.type = execve and proc.name = cat\n  output: o\n  priority: info\n",
    );
    let rules = rules.to_str().unwrap();
    let bad = [
        (
            "misspelt-field",
            "- name: c\n  event: {fields: {evt.type: execve, proc.nmae: cat}}\n  expect_not: [Cat]\n",
            "2:38: case \"c\": \"proc.nmae\" is not a field of source syscall",
        ),
        (
            "unknown-source",
            "- name: c\n  event: {source: sycall, fields: {evt.type: execve}}\n  expect_not: [Cat]\n",
            "case \"c\": unknown source \"sycall\"",
        ),
        (
            "misspelt-case-key",
            "- name: c\n  event: {fields: {evt.type: execve, proc.name: cat}}\n  expect: [Cat]\n  expect_nto: [Cat]\n",
            "4:3: case \"c\": unknown key \"expect_nto\"",
        ),
        (
            "misspelt-event-key",
            "- name: c\n  event: {feilds: {evt.type: execve}}\n  expect_not: [Cat]\n",
            "case \"c\": unknown event key \"feilds\"",
        ),
        ("empty", "# nothing yet\n", "no test cases"),
    ];
    for (name, text, want) in bad {
        let cases = tmp(&format!("{name}.yaml"), text);
        let cli = Cli::try_parse_from([
            "aerie-detector",
            "test-rules",
            "--rules",
            rules,
            cases.to_str().unwrap(),
        ])
        .unwrap();
        let mut out = Vec::new();
        let err = rules_cli::run_to(cli.cmd, &mut out).expect_err(name);
        let msg = format!("{err:#}");
        assert!(msg.contains(want), "{name}: {msg}");
        assert!(msg.contains(&format!("{name}.yaml")), "{name}: {msg}");
    }
    // Fields with arguments, dotted keys and times are fields.
    let ok = tmp(
        "args-ok.yaml",
        "- name: c\n  event:\n    time: \"2024-05-01T10:20:30Z\"\n    fields:\n      evt.type: execve\n      proc.name: cat\n      proc.aname[2]: sh\n      evt.arg.flags: O_RDONLY\n      k8s.pod.label.app: web\n  expect: [Cat]\n",
    );
    let (code, out) = run(&["test-rules", "--rules", rules, ok.to_str().unwrap()]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
}

#[test]
fn replay_prints_falco_json_alerts() {
    let rules = tmp(
        "replay.yaml",
        "- rule: Shadow\n  desc: d\n  condition: evt.type = openat and fd.name = /etc/shadow\n  output: read %fd.name by %proc.name parent=%proc.aname[1] user=%user.name\n  priority: warning\n  tags: [fs]\n",
    );
    let events = tmp(
        "events.jsonl",
        concat!(
            r#"{"source":"syscall","time":"2024-05-01T10:20:30.000000001Z","fields":{"evt.type":"openat","fd.name":"/etc/shadow","proc.name":"cat","proc.aname":["bash","sshd"]}}"#,
            "\n",
            r#"{"source":"syscall","fields":{"evt.type":"openat","fd.name":"/etc/hostname","proc.name":"cat"}}"#,
            "\n"
        ),
    );
    let (code, out) = run(&[
        "replay",
        "--hostname",
        "node-7",
        "--rules",
        rules.to_str().unwrap(),
        events.to_str().unwrap(),
    ]);
    assert_eq!(code, ExitCode::SUCCESS);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let a = aerie_alert::decode_alert(lines[0].as_bytes()).unwrap();
    assert_eq!(a.rule, "Shadow");
    assert_eq!(a.hostname, "node-7");
    assert_eq!(
        a.output,
        "10:20:30.000000001: Warning read /etc/shadow by cat parent=bash user=<NA>"
    );
    assert_eq!(a.output_fields["user.name"], serde_json::Value::Null);
    assert_eq!(a.tags, ["fs"]);
}

#[test]
fn describe_list_rules_and_fields() {
    let rules = tmp(
        "desc.yaml",
        "- list: shells\n  items: [bash, sh]\n- macro: spawned\n  condition: evt.type in (execve, execveat)\n- rule: Shell spawned\n  desc: a shell\n  condition: spawned and proc.name in (shells)\n  output: o\n  priority: notice\n",
    );
    let (code, out) = run(&[
        "describe-rule",
        "--rules",
        rules.to_str().unwrap(),
        "Shell spawned",
    ]);
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(
        out.contains(
            "expanded condition: evt.type in (execve, execveat) and proc.name in (bash, sh)"
        ),
        "{out}"
    );
    assert!(out.contains("event types: execve, execveat"), "{out}");

    let (_, out) = run(&["list-rules", "--json", "--rules", rules.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["name"], "Shell spawned");
    assert_eq!(v["priority"], "Notice");

    let (_, out) = run(&["list-fields", "--source", "k8s_audit"]);
    assert!(out.contains("ka.verb\t"), "{out}");
    assert!(!out.contains("proc.name\t"));
    let (_, out) = run(&["list-fields"]);
    assert!(out.contains("proc.aname[ARG]\tCHARBUF"));
}
