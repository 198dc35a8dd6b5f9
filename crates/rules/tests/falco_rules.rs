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
