//! The default ruleset (config/rules/aerie_rules.yaml), with Falco's tutorial rule loaded
//! next to it, against real actions on the host, and a clean stop that leaves no eBPF program loaded. Needs root (skips with a notice; fails
//! under CI=true).

mod detect_support;

use std::process::Command;
use std::time::Duration;

use detect_support::*;

const WAIT: Duration = Duration::from_secs(10);

/// The custom rule of Falco's tutorial, verbatim.
const TUTORIAL_RULE: &str = r#"- rule: Access to Sensitive Files
  desc: Detect access to sensitive files
  condition: open_read and (fd.name = "/etc/shadow" or fd.name = "/etc/passwd")
  output: "Sensitive file accessed (user=%user.name file=%fd.name command=%proc.cmdline)"
  priority: WARNING
"#;
const TUTORIAL: &str = "Access to Sensitive Files";

#[test]
fn default_rules_fire_on_real_actions_and_stop_cleanly() {
    if !privileged() {
        return;
    }
    let rules = repo_root().join("config/rules/aerie_rules.yaml");
    let dir = scratch("default");
    // Falco's tutorial rule, verbatim, next to the defaults: it uses their `open_read`.
    let tutorial = dir.join("tutorial_rules.yaml");
    std::fs::write(&tutorial, TUTORIAL_RULE).unwrap();
    let d = Detector::start(&[rules, tutorial], &dir);
    let mut f = Failures::default();
    let me = my_comm();

    let missing = dir.join("missing");
    run(Command::new("cat").arg("/etc/shadow").arg(&missing));
    let cmd = format!("cat /etc/shadow {}", missing.display());
    let a = d.wait_for(
        "Shadow or Sudoers File Read by Unexpected Program",
        WAIT,
        |a| a.field_str("proc.cmdline") == Some(&cmd),
    );
    f.check(a.is_some(), "cat /etc/shadow: no alert");
    if let Some(a) = a {
        f.check(
            a.field_str("fd.name") == Some("/etc/shadow"),
            format!("file: {a:?}"),
        );
        f.check(
            a.field_str("user.name") == Some("root"),
            format!("user: {a:?}"),
        );
        f.check(
            a.field_str("proc.pname") == Some(&me),
            format!("parent: {a:?}"),
        );
        f.check(
            a.priority == aerie_alert::Priority::Warning,
            format!("priority: {a:?}"),
        );
        f.check(
            a.tags.iter().any(|t| t == "mitre_credential_access"),
            format!("tags: {a:?}"),
        );
    }

    // The default config alerts on every matching rule: the tutorial rule is not hidden by
    // the default rule that matched the same read.
    let a = d.wait_for(TUTORIAL, WAIT, |a| {
        a.field_str("proc.cmdline") == Some(&cmd)
    });
    f.check(a.is_some(), "cat /etc/shadow: no tutorial alert");
    if let Some(a) = a {
        let want =
            format!("Warning Sensitive file accessed (user=root file=/etc/shadow command={cmd})");
        f.check(a.output.ends_with(&want), format!("tutorial output: {a:?}"));
    }

    run(Command::new("cat")
        .arg("/proc/1/root/etc/hostname")
        .arg(&missing));
    let a = d.wait_for("Host Root Accessed Through /proc/1/root", WAIT, |a| {
        a.field_str("fd.name") == Some("/proc/1/root/etc/hostname")
    });
    f.check(a.is_some(), "cat /proc/1/root/etc/hostname: no alert");

    // Benign: the same tool on ordinary files.
    run(Command::new("cat").arg("/etc/hostname").arg(&missing));
    let benign = format!("cat /etc/hostname {}", missing.display());
    std::thread::sleep(Duration::from_millis(500));
    let noisy: Vec<String> = d
        .alerts()
        .iter()
        .filter(|a| a.field_str("proc.cmdline") == Some(&benign))
        .map(|a| a.to_json())
        .collect();
    f.check(noisy.is_empty(), format!("benign cat alerted: {noisy:?}"));
    f.finish(d);
    let _ = std::fs::remove_dir_all(&dir);
}
