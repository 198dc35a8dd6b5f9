//! The real detector with a configuration that follows an audit log file and adds static
//! fields: audit events written to the file and a real `cat /etc/shadow` both alert with the
//! cluster name, and after a restart the file is read on from where it stopped. Needs root
//! (skips with a notice; fails under CI=true).

mod detect_support;

use std::io::Write as _;
use std::process::Command;
use std::time::Duration;

use detect_support::*;

const WAIT: Duration = Duration::from_secs(15);

const AUDIT_RULE: &str = r#"
- rule: Secret read
  desc: a secret was read
  condition: ka.target.resource = secrets and ka.verb = get
  output: secret %ka.target.name read by %ka.user.name (id=%ka.auditid)
  priority: NOTICE
  source: k8s_audit
"#;

fn event(id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","verb":"get","user":{{"username":"alice"}},"objectRef":{{"resource":"secrets","namespace":"default","name":"db"}},"responseStatus":{{"code":200}},"stageTimestamp":"2024-03-18T16:50:00.123456Z"}}"#
    ) + "\n"
}

#[test]
fn audit_log_file_and_static_fields_on_the_real_detector() {
    if !privileged() {
        return;
    }
    let dir = scratch("auditfile");
    let log = dir.join("audit.log");
    let rules = dir.join("audit_rules.yaml");
    std::fs::write(&rules, AUDIT_RULE).unwrap();
    let config = format!(
        "static_fields:\n  k8s.cluster.name: lab-1\nappend_output:\n  - extra_output: \"cluster=%k8s.cluster.name\"\n\
         k8s_audit:\n  files: [{}]\n  state_dir: {}\n  poll_interval_ms: 100\n",
        log.display(),
        dir.join("state").display()
    );
    let all = [repo_root().join("config/rules/aerie_rules.yaml"), rules];
    let append = |text: &str| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    let mut f = Failures::default();

    append(&event("e1"));
    let d = Detector::start_with_config(&all, &dir, &config);
    let a = d.wait_for("Secret read", WAIT, |a| a.output.contains("id=e1"));
    f.check(a.is_some(), "audit line e1: no alert");
    if let Some(a) = &a {
        f.check(
            a.field_str("k8s.cluster.name") == Some("lab-1") && a.output.ends_with("cluster=lab-1"),
            format!("static field on the audit alert: {a:?}"),
        );
    }
    let missing = dir.join("missing");
    run(Command::new("cat").arg("/etc/shadow").arg(&missing));
    let a = d.wait_for(
        "Shadow or Sudoers File Read by Unexpected Program",
        WAIT,
        |a| {
            a.field_str("proc.cmdline")
                .is_some_and(|c| c.ends_with("/missing"))
        },
    );
    f.check(
        a.as_ref()
            .is_some_and(|a| a.field_str("k8s.cluster.name") == Some("lab-1")),
        format!("static field on the syscall alert: {a:?}"),
    );
    f.check(d.stop(), "first detector did not stop cleanly");

    // Written while the detector is down; the restart reads only the new line.
    append(&event("e2"));
    let d = Detector::start_with_config(&all, &dir, &config);
    let a = d.wait_for("Secret read", WAIT, |a| a.output.contains("id=e2"));
    f.check(a.is_some(), "audit line e2 after the restart: no alert");
    let ids: Vec<String> = d
        .alerts()
        .iter()
        .filter(|a| a.rule == "Secret read")
        .map(|a| a.field_str("ka.auditid").unwrap_or("?").to_owned())
        .collect();
    f.check(ids == ["e1", "e2"], format!("each event once: {ids:?}"));
    f.finish(d);
    let _ = std::fs::remove_dir_all(&dir);
}
