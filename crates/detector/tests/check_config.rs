//! `aerie-detector check-config`: the configuration and rules `run` would start with, checked
//! without a kernel; every problem ends the command with a non-zero status and file:line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A directory removed when the test ends.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let p =
            std::env::temp_dir().join(format!("aerie-check-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        Dir(p)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run `check-config` with only the given `AERIE_DETECTOR__…` variables.
fn check(args: &[&Path], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aerie-detector"));
    cmd.arg("check-config").args(args).current_dir(repo());
    for (k, _) in std::env::vars() {
        if k.starts_with("AERIE_DETECTOR") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("aerie-detector runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_shipped_config_and_rules_pass() {
    let out = check(
        &[Path::new("--config"), Path::new("config/detector.yaml")],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout.contains("configuration OK") && stdout.contains("aerie_rules.yaml"),
        "{stdout}"
    );
}

#[test]
fn bad_yaml_is_named_with_its_line() {
    let dir = Dir::new("yaml");
    // Line 3 maps a key inside a list item's scalar: a syntax error there.
    let cfg = dir.write(
        "detector.yaml",
        "rules:\n  - a.yaml\n  bad: [x\nmetrics:\n  enabled: true\n",
    );
    let out = check(&[Path::new("--config"), &cfg], &[]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("detector.yaml") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_from_the_environment_is_refused() {
    let dir = Dir::new("envkey");
    let cfg = dir.write("detector.yaml", "rules: []\n");
    let out = check(
        &[Path::new("--config"), &cfg],
        &[("AERIE_DETECTOR__HTTP_OUTPUT__NO_SUCH_KEY", "1")],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no_such_key"), "{err}");
}

#[test]
fn a_rule_compile_error_fails_with_file_and_line() {
    let dir = Dir::new("compile");
    // Valid YAML and a well-formed rule item; only compiling finds the unknown field.
    let rules = dir.write(
        "bad_rules.yaml",
        "- rule: Good rule\n  desc: ok\n  condition: evt.type = open\n  output: ok %proc.name\n  priority: WARNING\n\
         \n\
         - rule: Bad field\n  desc: names a field that does not exist\n  condition: evt.type = open and proc.no_such_field = x\n  output: bad\n  priority: WARNING\n",
    );
    let out = check(&[Path::new("--rules"), &rules], &[]);
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "a rule that does not compile must fail: {err}"
    );
    assert!(
        err.contains("bad_rules.yaml:9:"),
        "file:line of the condition: {err}"
    );
    assert!(err.contains("proc.no_such_field"), "{err}");
}

#[test]
fn an_unreadable_token_file_is_named() {
    let dir = Dir::new("token");
    let out = check(
        &[Path::new("--config"), Path::new("config/detector.yaml")],
        &[(
            "AERIE_DETECTOR__HTTP_OUTPUT__BEARER_TOKEN_FILE",
            dir.0.join("missing-token").to_str().expect("utf-8 path"),
        )],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("http_output.bearer_token_file") && err.contains("missing-token"),
        "{err}"
    );
}
