//! The aerie-router binary: check-config and routes test.

mod common;

use std::process::Command;

use common::{FALCO_DOC_ALERT, temp_dir, templates_dir};

fn router() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aerie-router"))
}

fn repo_config() -> String {
    format!("{}/../../config/router.yaml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn shipped_config_and_templates_check_out() {
    let out = router()
        .args(["check-config", "--config", &repo_config()])
        .current_dir(format!("{}/../..", env!("CARGO_MANIFEST_DIR")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_names_file_and_line_of_a_broken_template() {
    let dir = temp_dir("cli-tpl");
    std::fs::write(
        dir.join("slack.hbs"),
        "{\n  \"text\": \"{{alert.rule}}\",\n  \"x\": \"{{#if alert.rule}}\"\n}\n",
    )
    .unwrap();
    let cfg = dir.join("r.yaml");
    std::fs::write(
        &cfg,
        format!(
            "templates_dir: {}\noutputs:\n  - {{name: s, type: slack, webhook_url: \"http://127.0.0.1:9/\"}}\n",
            dir.display()
        ),
    )
    .unwrap();
    let out = router()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("slack.hbs:"), "{err}");

    // A template that compiles but renders invalid JSON is also refused.
    std::fs::write(dir.join("slack.hbs"), "{\"text\": {{alert.rule}} }").unwrap();
    let out = router()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid JSON"));
}

#[test]
fn check_config_names_file_field_and_line_of_a_config_error() {
    let dir = temp_dir("cli-cfg");
    let cfg = dir.join("r.yaml");
    std::fs::write(
        &cfg,
        "outputs:\n  - name: a\n    type: stdout\n    min_priority: urgent\n",
    )
    .unwrap();
    let out = router()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:4: outputs[0].min_priority", cfg.display())),
        "{err}"
    );
}

#[test]
fn routes_test_shows_routes_outputs_and_what_would_be_held() {
    let dir = temp_dir("cli-routes");
    let cfg = dir.join("r.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"templates_dir: {}
dedup: {{ window: 10m }}
outputs:
  - {{name: pager, type: stdout, min_priority: critical, rate_limit: {{per_minute: 1, burst: 1}}}}
  - {{name: chat, type: stdout}}
  - {{name: archive, type: stdout}}
routes:
  - name: page
    match: {{ priority: ">= critical", tags_any: [container] }}
    outputs: [pager, chat]
    continue: true
  - name: all
    outputs: [archive]
"#,
            templates_dir()
        ),
    )
    .unwrap();
    let alerts = dir.join("alerts.ndjson");
    let other = FALCO_DOC_ALERT.replace(
        "sh -c clear; (bash || ash || sh)\",\"proc.name",
        "bash\",\"proc.name",
    );
    std::fs::write(
        &alerts,
        format!("{FALCO_DOC_ALERT}\n{FALCO_DOC_ALERT}\n{other}\n"),
    )
    .unwrap();
    let out = router()
        .args(["routes", "test", "--config"])
        .arg(&cfg)
        .arg(&alerts)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blocks: Vec<&str> = text.split("alert #").skip(1).collect();
    assert_eq!(blocks.len(), 3, "{text}");
    assert!(blocks[0].contains("routes: page -> all"));
    assert!(
        blocks[0].contains("-> output pager (stdout) via route page: deliver"),
        "{text}"
    );
    assert!(blocks[0].contains("-> output archive (stdout) via route all: deliver"));
    assert!(blocks[0].contains("output_fields.proc.cmdline=\"sh -c clear; (bash || ash || sh)\""));
    assert!(
        blocks[1].contains("-> output pager (stdout) via route page: SUPPRESSED by dedup"),
        "{text}"
    );
    assert!(
        blocks[2].contains("-> output pager (stdout) via route page: HELD by rate limit"),
        "{text}"
    );
    assert!(blocks[2].contains("-> output chat (stdout) via route page: deliver"));
}

/// Runs check-config on `yaml` and returns (success, stdout + stderr).
fn check(name: &str, yaml: &str) -> (bool, String) {
    let dir = temp_dir(name);
    let cfg = dir.join("r.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let out = router()
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success(),
        text.replace(&cfg.display().to_string(), "r.yaml"),
    )
}

#[test]
fn check_config_points_at_the_line_of_each_error() {
    let head = "outputs:\n  - name: a\n    type: stdout\n    min_priority: warning\n  - name: b\n    type: stdout\n";
    // An unknown key inside the second output: line 7, not line 1 (nor line 4, the first
    // `min_priority`).
    let (ok, out) = check("cli-line-1", &format!("{head}    min_priorty: error\n"));
    assert!(!ok);
    assert!(out.contains("r.yaml:7:"), "{out}");
    assert!(out.contains("min_priorty"), "{out}");
    // A value of the wrong type.
    let (ok, out) = check("cli-line-2", &format!("{head}    rate_limit: fast\n"));
    assert!(!ok);
    assert!(out.contains("r.yaml:7:"), "{out}");
    assert!(out.contains("rate_limit"), "{out}");
    // An invalid value in a nested key, written after the same key elsewhere.
    let yaml = "outputs:\n  - {name: a, type: stdout, retry: {initial_backoff: 1s}}\n  - name: b\n    type: stdout\n    retry:\n      initial_backoff: soon\n";
    let (ok, out) = check("cli-line-3", yaml);
    assert!(!ok);
    assert!(out.contains("r.yaml:6:"), "{out}");
    // A templates_dir that does not exist is an error, not a silent fall-back.
    let (ok, out) = check(
        "cli-line-4",
        "outputs:\n  - {name: a, type: stdout}\ntemplates_dir: /nonexistent/aerie-templates\n",
    );
    assert!(!ok, "{out}");
    assert!(out.contains("r.yaml:3: templates_dir"), "{out}");
}

#[test]
fn check_config_warns_about_routes_that_can_reach_no_output() {
    let yaml = "outputs:\n  - {name: pd, type: stdout, min_priority: critical}\n  - {name: all, type: stdout}\nroutes:\n  - name: page\n    match: { priority: \">= warning\" }\n    outputs: [pd]\n  - name: fine\n    match: { priority: \">= critical\" }\n    outputs: [pd]\n  - outputs: [all]\n";
    let (ok, out) = check("cli-warn", yaml);
    assert!(ok, "{out}");
    assert!(out.contains("warning: r.yaml:5: route page"), "{out}");
    assert!(!out.contains("route fine"), "{out}");
}
