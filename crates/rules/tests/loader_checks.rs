//! What the loader refuses or accepts as Falco 0.44 does: the engine version, plugin
//! requirements, a byte-order mark, and load time that stays linear in the number of rules.

use std::time::{Duration, Instant};

use aerie_rules::loader::{BUILTIN_PLUGINS, ENGINE_VERSION, PluginRequirement, Version};
use aerie_rules::{EngineConfig, ErrorCode, RuleLoader};

const RULE: &str = r#"
- rule: Shell
  desc: a shell
  condition: evt.type = execve and proc.name = bash
  output: shell %proc.name
  priority: WARNING
"#;

/// Load one text; the errors as `code message @line`.
fn errors(text: &str) -> Vec<String> {
    let mut loader = RuleLoader::new();
    loader.load_str("r.yaml", text);
    loader.compile(&EngineConfig::default());
    loader
        .results()
        .iter()
        .flat_map(|r| r.errors.iter())
        .map(|e| format!("{} {} @{}", e.code.as_str(), e.message, e.context.line))
        .collect()
}

#[test]
fn a_newer_engine_version_is_refused_with_falcos_words() {
    let text = format!("- required_engine_version: 999.0.0\n{RULE}");
    assert_eq!(
        errors(&text),
        ["LOAD_ERR_VALIDATE Rules require engine version 999.0.0, but engine version is 0.62.0 @1"]
    );
    // A bare number N is 0.N.0 (k8s_audit_rules.yaml says 15).
    assert_eq!(
        errors("- required_engine_version: 63\n"),
        ["LOAD_ERR_VALIDATE Rules require engine version 63, but engine version is 0.62.0 @1"]
    );
    for ok in ["0.57.0", "15", "0.62.0"] {
        assert_eq!(
            errors(&format!("- required_engine_version: {ok}\n{RULE}")),
            Vec::<String>::new(),
            "{ok}"
        );
    }
    assert_eq!(ENGINE_VERSION.to_string(), "0.62.0");
}

#[test]
fn plugin_requirements_are_checked_against_what_is_built_in() {
    let req = |body: &str| format!("- required_plugin_versions:\n{body}{RULE}");
    // What the upstream files ask for loads.
    assert!(errors(&req("    - name: container\n      version: 0.4.0\n")).is_empty());
    assert!(
        errors(&req(
            "    - name: k8saudit-eks\n      version: 0.1.0\n      alternatives:\n        - name: k8saudit\n          version: 0.18.0\n"
        ))
        .is_empty()
    );
    // A newer minor of a built-in plugin, or another major, is not compatible.
    let e = errors(&req("    - name: container\n      version: 0.9.0\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "LOAD_ERR_VALIDATE Plugin 'container' version '0.6.0' is not compatible with required plugin version '0.9.0' @"
        ),
        "{e:?}"
    );
    // A plugin nothing stands in for.
    let e = errors(&req(
        "    - name: cloudtrail\n      version: 0.1.0\n      alternatives:\n        - name: gcpaudit\n          version: 0.2.0\n",
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains(
            "Plugin requirement not satisfied, must load one of: cloudtrail (>= 0.1.0), gcpaudit (>= 0.2.0)"
        ),
        "{e:?}"
    );
    // Unit level: the first alternative that is loaded decides.
    let r = PluginRequirement {
        name: "json".into(),
        version: "0.7.0".into(),
        alternatives: vec![],
    };
    assert!(r.check(BUILTIN_PLUGINS).is_ok());
    assert!(r.check(&[("json", Version(0, 6, 9))]).is_err());
    assert!(r.check(&[("json", Version(1, 7, 0))]).is_err());
}

#[test]
fn a_byte_order_mark_is_skipped() {
    let text = format!("\u{feff}{RULE}");
    let mut loader = RuleLoader::new();
    loader.load_str("bom.yaml", &text);
    let engine = loader.compile(&EngineConfig::default());
    assert!(!loader.has_errors(), "{:?}", loader.results()[0].errors);
    assert_eq!(engine.enabled_rules(), 1);
    // Only at the start: a mark elsewhere is still text YAML refuses or keeps.
    assert_eq!(
        errors("- rule: x\n  \u{feff}desc: y\n")
            .first()
            .map(|e| e.starts_with(&ErrorCode::YamlValidate.as_str().to_string())),
        Some(true)
    );
}

/// `n` rules, each with its own macro and list, and one override per rule.
fn many_rules(n: usize) -> String {
    let mut s = String::with_capacity(n * 400);
    for i in 0..n {
        s.push_str(&format!(
            "- list: l{i}\n  items: [a{i}, b{i}]\n- macro: m{i}\n  condition: proc.name in (l{i})\n- rule: r{i}\n  desc: d\n  condition: evt.type = execve and m{i}\n  output: o %proc.name\n  priority: INFO\n- rule: r{i}\n  enabled: false\n  override:\n    enabled: replace\n"
        ));
    }
    s
}

fn load_time(n: usize) -> Duration {
    let text = many_rules(n);
    let t = Instant::now();
    let mut loader = RuleLoader::new();
    loader.load_str("many.yaml", &text);
    let engine = loader.compile(&EngineConfig::default());
    let took = t.elapsed();
    assert!(
        !loader.has_errors(),
        "{:?}",
        loader.results()[0].errors.first()
    );
    assert_eq!(engine.rules().len(), n);
    assert_eq!(engine.enabled_rules(), 0);
    took
}

/// Name lookups were linear scans, so loading was quadratic (32k rules took 3.3 s). Four
/// times the rules must take about four times as long, not sixteen: the bound of 8 leaves
/// room for a loaded machine and still fails a quadratic loader.
#[test]
fn load_time_is_linear_in_the_number_of_rules() {
    let _warm = load_time(500);
    let small = load_time(4_000);
    let large = load_time(16_000);
    let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-6);
    eprintln!("4k rules: {small:?}; 16k rules: {large:?}; ratio {ratio:.2}");
    assert!(ratio < 8.0, "4x the rules took {ratio:.1}x as long");
}

/// Loading goes on after an item's structural error, so one run reports every error of a
/// file, each at its own line (it stopped at the first).
#[test]
fn every_structural_error_of_a_file_is_reported() {
    let text = "\
- rule: no output
  desc: d
  condition: evt.type = execve
  priority: WARNING
- list: no items
- rule: bad priority
  desc: d
  condition: evt.type = execve
  output: o
  priority: LOUD
- macro: m
  condition: evt.type = openat
- rule: fine
  desc: d
  condition: m
  output: o
  priority: INFO
- rule: unknown field
  desc: d
  condition: evt.type = execve and proc.nmae = x
  output: o
  priority: INFO
";
    let e = errors(text);
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(
        e[0].starts_with("LOAD_ERR_YAML_VALIDATE Item has no mapping for key 'output' @1"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("LOAD_ERR_YAML_VALIDATE Item has no mapping for key 'items' @5"),
        "{e:?}"
    );
    assert!(
        e[2].starts_with("LOAD_ERR_YAML_VALIDATE Invalid priority \"LOUD\" @10"),
        "{e:?}"
    );
    assert!(e[3].starts_with("LOAD_ERR_COMPILE_CONDITION"), "{e:?}");
    assert!(e[3].contains("proc.nmae"), "{e:?}");
}
