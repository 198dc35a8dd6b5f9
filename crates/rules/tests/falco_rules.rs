//! Falco's upstream rule files load unmodified, with the item counts NOTICE gives.

use std::path::PathBuf;

use aerie_rules::{EngineConfig, RuleLoader};

/// `../shared/falco-rules` relative to the repository root; `None` (test skipped) when absent
/// outside CI.
fn rules_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/falco-rules");
    if dir.join("falco_rules.yaml").exists() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("falco rules not found at {}", dir.display());
    }
    eprintln!("notice: {} not found; skipping", dir.display());
    None
}

#[test]
fn upstream_files_validate_with_notice_counts() {
    let Some(dir) = rules_dir() else { return };
    let mut loader = RuleLoader::new();
    for f in [
        "falco_rules.yaml",
        "falco-incubating_rules.yaml",
        "falco-sandbox_rules.yaml",
        "k8s_audit_rules.yaml",
    ] {
        loader.load_file(&dir.join(f));
    }
    let engine = loader.compile(&EngineConfig::default());
    for r in loader.results() {
        for e in &r.errors {
            eprintln!("{e}");
        }
    }
    assert!(!loader.has_errors());
    let counts: Vec<_> = loader
        .results()
        .iter()
        .map(|r| {
            (
                r.counts.rules,
                r.counts.macros,
                r.counts.lists,
                r.counts.disabled_rules,
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
    assert_eq!(engine.rules().len(), 25 + 31 + 37 + 48);
}

/// The stable rules bound the opens they can match by path, so the detector can keep the
/// rest in the kernel; the sandbox and incubating rules include some that cannot.
#[test]
fn stable_rules_bound_opens_by_path() {
    use aerie_rules::{OpenPathFilter, OpenPathNeed};
    let Some(dir) = rules_dir() else { return };
    let mut loader = RuleLoader::new();
    loader.load_file(&dir.join("falco_rules.yaml"));
    let engine = loader.compile(&EngineConfig::default());
    let OpenPathNeed::Paths(f) = engine.open_path_need() else {
        panic!(
            "stable rules need every open: {:?}",
            engine.open_path_need()
        );
    };
    eprintln!(
        "prefixes [{}] suffixes [{}]",
        OpenPathFilter::atoms_text(&f.prefixes),
        OpenPathFilter::atoms_text(&f.suffixes)
    );
    let admits = |p: &str| {
        f.prefixes.iter().any(|a| p.as_bytes().starts_with(a))
            || f.suffixes.iter().any(|a| p.as_bytes().ends_with(a))
    };
    for p in [
        "/etc/shadow",
        "/etc/pam.d/sshd",
        "/sys/fs/cgroup/x/release_agent",
        "/var/log/syslog",
    ] {
        assert!(admits(p), "{p} must be sent");
    }
    for p in [
        "/tmp/x/target",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/proc/self/stat",
        "/etc/ld.so.cache",
    ] {
        assert!(!admits(p), "{p} needs no rule");
    }
    let mut loader = RuleLoader::new();
    for file in [
        "falco_rules.yaml",
        "falco-incubating_rules.yaml",
        "falco-sandbox_rules.yaml",
    ] {
        loader.load_file(&dir.join(file));
    }
    // "Delete or rename shell history" checks `fd.name contains "fish_read_history"`: no
    // prefix or suffix bounds it.
    let all = loader.compile(&EngineConfig::default()).open_path_need();
    assert!(
        matches!(&all, OpenPathNeed::All { rule, .. } if rule == "Delete or rename shell history"),
        "{all:?}"
    );
}
