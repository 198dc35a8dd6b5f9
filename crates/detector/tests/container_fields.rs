//! Every `container.*` and `k8s.*` field that Falco's upstream stable, incubating and sandbox
//! rule files use is extracted (none is left unsupported), and `list-fields` says which
//! fields need a container runtime. Needs `../shared/falco-rules` (skips with a notice;
//! fails under CI=true).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

fn upstream() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/falco-rules");
    if dir.join("falco_rules.yaml").exists() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{} is missing, and CI=true requires this test to run",
            dir.display()
        );
    }
    eprintln!("notice: skipping: {} is missing", dir.display());
    None
}

/// `container.x.y` / `k8s.x.y` names (without `[arg]`) in `text`.
fn field_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    for prefix in ["container.", "k8s."] {
        let mut from = 0;
        while let Some(i) = text[from..].find(prefix) {
            let start = from + i;
            from = start + prefix.len();
            // A whole word: not `ka.req.container.image` nor `containers.`.
            if start > 0
                && (bytes[start - 1].is_ascii_alphanumeric()
                    || bytes[start - 1] == b'.'
                    || bytes[start - 1] == b'_')
            {
                continue;
            }
            let end = text[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
                .map_or(text.len(), |e| start + e);
            let name = text[start..end].trim_end_matches('.');
            // Prose ("a container.") and image names such as k8s.gcr.io are not fields.
            if !name.contains('.')
                || name.contains("gcr")
                || name == "k8s.io"
                || name.ends_with(".io")
            {
                continue;
            }
            out.insert(name.to_owned());
        }
    }
    out
}

#[test]
fn every_container_and_k8s_field_of_the_upstream_rules_is_extracted() {
    let Some(dir) = upstream() else { return };
    let supported: BTreeSet<&str> = aerie_detector::fields::supported_fields().collect();
    let mut used = BTreeSet::new();
    for f in [
        "falco_rules.yaml",
        "falco-incubating_rules.yaml",
        "falco-sandbox_rules.yaml",
    ] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        used.extend(field_names(&text));
    }
    assert!(
        used.contains("k8s.ns.name") && used.contains("container.mount.dest"),
        "the scan finds the fields: {used:?}"
    );
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !supported.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "used upstream but not extracted: {missing:?}"
    );
}

#[test]
fn list_fields_says_which_fields_need_a_runtime() {
    let out = Command::new(env!("CARGO_BIN_EXE_aerie-detector"))
        .arg("list-fields")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split(['\t', '[']).next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed"))
            .to_owned()
    };
    for runtime in [
        "container.name",
        "container.image.repository",
        "container.privileged",
        "container.mount.dest",
        "k8s.pod.name",
        "k8s.ns.name",
        "k8s.pod.labels",
    ] {
        assert!(
            line(runtime).contains("needs a container runtime"),
            "{}",
            line(runtime)
        );
    }
    // container.id comes from the cgroup, proc.name from the kernel.
    for own in ["container.id", "proc.name"] {
        assert!(
            !line(own).contains("needs a container runtime"),
            "{}",
            line(own)
        );
    }
}
