//! The Kubernetes audit webhook end to end on loopback: an `EventList` posted as the API
//! server's webhook backend posts it becomes Falco JSON alerts (`source: k8s_audit`) in the
//! file output; unreadable and oversized bodies are refused with a reason.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aerie_detector::config::{HttpOutputConfig, K8sAuditConfig, OutputSpec};
use aerie_detector::k8s_audit::{AuditSource, serve};
use aerie_detector::metrics::Metrics;
use aerie_detector::output::Outputs;
use aerie_rules::{EngineConfig, RuleLoader};

const RULES: &str = r#"
- rule: Exec into pod
  desc: someone ran a command in a pod
  condition: ka.target.subresource = exec and ka.verb in (create, get)
  output: exec into %ka.target.namespace/%ka.target.name by %ka.user.name (command=%ka.uri.param[command])
  priority: NOTICE
  source: k8s_audit
  tags: [k8s, mitre_execution]
"#;

fn exec_event(user: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a-{user}","stage":"ResponseStarted",
        "requestURI":"/api/v1/namespaces/prod/pods/web-1/exec?command=cat&command=%2Fetc%2Fshadow&stdin=true",
        "verb":"create","user":{{"username":"{user}"}},
        "objectRef":{{"resource":"pods","namespace":"prod","name":"web-1","subresource":"exec"}},
        "stageTimestamp":"2024-03-18T16:50:00.123456Z"}}"#
    )
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aerie-audit-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn audit_events_become_alerts_and_bad_bodies_are_refused() {
    let dir = tmp("e2e");
    let out_file = dir.join("alerts.jsonl");
    let metrics = Arc::new(Metrics::default());
    let outputs = Outputs::start(
        &[OutputSpec::File(out_file.clone())],
        &HttpOutputConfig::default(),
        metrics.clone(),
    )
    .await
    .unwrap();
    let mut loader = RuleLoader::new();
    loader.load_str("audit_rules.yaml", RULES);
    let engine = loader.compile(&EngineConfig::default());
    assert!(!loader.has_errors());
    let cfg = K8sAuditConfig {
        enabled: true,
        listen: "127.0.0.1:0".parse().unwrap(),
        max_body_bytes: 64 * 1024,
        ..K8sAuditConfig::default()
    };
    let source = Arc::new(AuditSource {
        engine: Arc::new(engine),
        hostname: "node-7".into(),
        outputs: outputs.sender(),
        metrics: metrics.clone(),
    });
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let (addr, task) = serve(&cfg, source, async move {
        let _ = stop_rx.changed().await;
    })
    .await
    .unwrap();
    let url = format!("http://{addr}/k8s-audit");
    let client = reqwest::Client::new();

    let list = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{},{}]}}"#,
        exec_event("mallory"),
        exec_event("trent")
    );
    let resp = client.post(&url).body(list).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v, serde_json::json!({"events": 2, "alerts": 2}));

    for (body, status, says) in [
        ("{not json".to_owned(), 400, "invalid JSON"),
        (r#"{"kind":"Pod"}"#.to_owned(), 400, "kind"),
        ("x".repeat(100 * 1024), 413, ""),
    ] {
        let resp = client.post(&url).body(body).send().await.unwrap();
        assert_eq!(resp.status(), status);
        let text = resp.text().await.unwrap();
        assert!(text.contains(says), "{text}");
    }
    assert_eq!(metrics.k8s_audit_events(), 2);

    let _ = stop_tx.send(true);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the server stops")
        .unwrap();
    outputs.shutdown(Duration::from_secs(1)).await;

    let text = std::fs::read_to_string(&out_file).unwrap();
    let alerts: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(alerts.len(), 2, "{text}");
    let a = &alerts[0];
    assert_eq!(a["rule"], "Exec into pod");
    assert_eq!(a["source"], "k8s_audit");
    assert_eq!(a["priority"], "Notice");
    assert_eq!(a["hostname"], "node-7");
    assert_eq!(a["time"], "2024-03-18T16:50:00.123456000Z");
    assert_eq!(a["output_fields"]["ka.user.name"], "mallory");
    assert_eq!(a["output_fields"]["ka.uri.param[command]"], "cat");
    assert_eq!(a["tags"], serde_json::json!(["k8s", "mitre_execution"]));
    assert!(
        a["output"]
            .as_str()
            .unwrap()
            .ends_with("Notice exec into prod/web-1 by mallory (command=cat)"),
        "{a}"
    );
    assert_eq!(alerts[1]["output_fields"]["ka.user.name"], "trent");
}
