//! `aerie-detector check-config`: load the configuration and the rules exactly as `run` does
//! and check the files it names, attaching nothing. Used before a rollout (the Helm chart's
//! CI runs it on the rendered args and environment) and by operators after an edit.

use std::path::{Path, PathBuf};

use aerie_detector::config::DetectorConfig;
use aerie_rules::EngineConfig;
use anyhow::Context as _;

/// What `run` would start with; prints a one-line summary on success.
pub fn check(cfg: &DetectorConfig) -> anyhow::Result<()> {
    let engine_cfg = EngineConfig {
        min_priority: cfg.min_priority,
        ..EngineConfig::default()
    };
    let engine = aerie_detector::run::load_rules(&cfg.rules, &engine_cfg)?;
    let http = &cfg.http_output;
    let files: [(&str, &Option<PathBuf>); 4] = [
        ("http_output.bearer_token_file", &http.bearer_token_file),
        ("http_output.tls.ca_file", &http.tls.ca_file),
        (
            "http_output.tls.client_cert_file",
            &http.tls.client_cert_file,
        ),
        ("http_output.tls.client_key_file", &http.tls.client_key_file),
    ];
    for (key, path) in files {
        if let Some(path) = path {
            readable(key, path)?;
        }
    }
    let outs: Vec<String> = cfg.outputs.iter().map(ToString::to_string).collect();
    println!(
        "aerie-detector: configuration OK: {} rules ({} enabled) from {}; alerts to {}",
        engine.rules().len(),
        engine.enabled_rules(),
        cfg.rules
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        outs.join(", ")
    );
    Ok(())
}

/// The file exists and this user can read it (a mounted Secret with the wrong mode fails here,
/// not at the first alert).
fn readable(key: &str, path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)
        .map(drop)
        .with_context(|| format!("{key}: cannot read {}", path.display()))
}
