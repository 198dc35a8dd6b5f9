//! `static_fields` and `append_output` from `config/detector.yaml` on real alerts: a syscall
//! alert through the pipeline and a Kubernetes audit alert through the audit source both
//! carry the cluster name and environment; `append_output` adds text and fields only to the
//! rules its `match` selects.

mod synthetic;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aerie_detector::config::{DetectorConfig, HttpOutputConfig, OutputSpec};
use aerie_detector::k8s_audit::AuditSource;
use aerie_detector::metrics::Metrics;
use aerie_detector::output::Outputs;
use aerie_rules::RuleLoader;
use synthetic::*;

const CONFIG: &str = r#"
static_fields:
  k8s.cluster.name: ${AERIE_TEST_CLUSTER}
  environment: production
append_output:
  - match:
      source: syscall
      tags: [filesystem]
    extra_output: "on cluster %k8s.cluster.name (ppid=%proc.ppid)"
    extra_fields:
      - proc.exepath
      - team: platform
"#;

const AUDIT_RULES: &str = r#"
- rule: Secret read
  desc: a secret was read
  condition: ka.target.resource = secrets and ka.verb = get
  output: secret %ka.target.name read by %ka.user.name
  priority: NOTICE
  source: k8s_audit
"#;

fn config() -> DetectorConfig {
    let dir = std::env::temp_dir().join(format!("aerie-extras-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("detector.yaml");
    std::fs::write(&p, CONFIG).unwrap();
    DetectorConfig::load_with_env(
        &p,
        true,
        [("AERIE_TEST_CLUSTER".to_owned(), "eu-prod-1".to_owned())],
    )
    .unwrap()
}

#[test]
fn syscall_alerts_carry_static_fields_and_matching_appends() {
    let cfg = config().engine_config();
    let mut s = Scenario::with_config(&[default_rules()], &cfg);
    s.spawn(&Proc {
        pid: 30,
        exe: "/usr/bin/cat",
        argv: &["cat", "/etc/shadow"],
        ..Default::default()
    });
    // A filesystem-tagged rule: static fields, appended text and extra fields.
    let a = s.open(30, "/etc/shadow", 0, 3);
    let a = a
        .iter()
        .find(|a| a.rule == "Shadow or Sudoers File Read by Unexpected Program")
        .expect("no alert");
    assert_eq!(a.field_str("k8s.cluster.name"), Some("eu-prod-1"));
    assert_eq!(a.field_str("environment"), Some("production"));
    assert_eq!(a.field_str("team"), Some("platform"));
    assert_eq!(a.field_str("proc.exepath"), Some("/usr/bin/cat"));
    assert!(
        a.output.ends_with("on cluster eu-prod-1 (ppid=1)"),
        "{}",
        a.output
    );
    // A rule without the tag: static fields only.
    s.spawn(&Proc {
        pid: 31,
        exe: "/usr/bin/bash",
        argv: &["bash"],
        container: CONTAINER,
        ..Default::default()
    });
    let a = s.spawn(&Proc {
        pid: 32,
        ppid: 31,
        exe: "/usr/bin/nmap",
        argv: &["nmap", "10.0.0.0/24"],
        container: CONTAINER,
        ..Default::default()
    });
    let a = a
        .iter()
        .find(|a| a.rule == "Suspicious Network Tool Run in Container")
        .expect("no alert");
    assert_eq!(a.field_str("k8s.cluster.name"), Some("eu-prod-1"));
    assert_eq!(a.field_str("environment"), Some("production"));
    assert_eq!(a.field_str("team"), None);
    assert!(!a.output.contains("on cluster"), "{}", a.output);
}

#[tokio::test]
async fn audit_alerts_carry_static_fields() {
    let dir = std::env::temp_dir().join(format!("aerie-extras-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("alerts.jsonl");
    let metrics = Arc::new(Metrics::default());
    let outputs = Outputs::start(
        &[OutputSpec::File(out.clone())],
        &HttpOutputConfig::default(),
        metrics.clone(),
    )
    .await
    .unwrap();
    let mut loader = RuleLoader::new();
    loader.load_str("audit.yaml", AUDIT_RULES);
    let engine = loader.compile(&config().engine_config());
    assert!(!loader.has_errors(), "{:?}", loader.results());
    let src = AuditSource {
        engine: Arc::new(engine),
        hostname: "node-1".into(),
        outputs: outputs.sender(),
        metrics,
    };
    let ev = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"x1","stage":"ResponseComplete",
        "verb":"get","user":{"username":"mallory"},"responseStatus":{"code":200},
        "objectRef":{"resource":"secrets","namespace":"prod","name":"db-pass"},
        "stageTimestamp":"2024-03-18T16:50:00.123456Z"}"#;
    assert_eq!(src.ingest(ev.as_bytes()).unwrap(), (1, 1));
    let deadline = Instant::now() + Duration::from_secs(20);
    let alert = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if let Some(l) = text.lines().next() {
            break aerie_alert::decode_alert(l.as_bytes()).unwrap();
        }
        assert!(Instant::now() < deadline, "no alert written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(alert.source, "k8s_audit");
    assert_eq!(alert.field_str("k8s.cluster.name"), Some("eu-prod-1"));
    assert_eq!(alert.field_str("environment"), Some("production"));
    // The syscall-only append does not touch audit rules.
    assert_eq!(alert.field_str("team"), None);
    assert!(
        alert.output.ends_with("secret db-pass read by mallory"),
        "{}",
        alert.output
    );
}
