//! falcosidekick parity on the HTTP surface: `GET /ping` and a JSON `/healthz` (open even
//! with a bearer token, as the falcosidekick chart's probes send none), alerts without `output`
//! (Falco with `json_include_output_property: false`), and `POST /test` reaching every output
//! of a routed config.

mod common;

use std::sync::atomic::Ordering::Relaxed;

use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "parity-token-0123456789abcdef";

#[tokio::test]
async fn ping_and_healthz_answer_like_falcosidekick_without_a_token() {
    let dir = temp_dir("parity-probes");
    let r = start_router(&format!(
        "auth: {{ bearer_token: {TOKEN} }}\noutputs:\n  - {{name: a, type: file, path: {}}}\n",
        dir.join("a.jsonl").display()
    ))
    .await;
    let ping = reqwest::get(format!("http://{}/ping", r.addr))
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    assert_eq!(ping.text().await.unwrap(), "pong\n");

    let health = reqwest::get(format!("http://{}/healthz", r.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body: Value =
        serde_json::from_str(&health.text().await.unwrap()).expect("/healthz answers JSON");
    assert_eq!(body, json!({"status": "ok"}));

    // The token still guards ingest.
    assert_eq!(post(r.addr, "/", FALCO_DOC_ALERT).await.0, 401);
    r.shutdown().await.unwrap();
}

/// A Falco alert as sent with `json_include_output_property: false`.
fn alert_without_output(rule: &str) -> Value {
    json!({"hostname":"node-1","priority":"Critical","rule":rule,"source":"syscall",
           "tags":["container"],"time":"2023-05-25T13:44:05.478445995Z",
           "output_fields":{"evt.time":1685022245478445995u64,"proc.name":"sh",
                            "k8s.ns.name":"default","fd.name":null}})
}

#[tokio::test]
async fn an_alert_without_output_is_accepted_and_rendered() {
    let slack = Receiver::start(Api::Slack).await;
    let dir = temp_dir("parity-no-output");
    let file = dir.join("alerts.jsonl");
    // Through the durable queue, which stores single alerts as received.
    let r = start_router(&format!(
        "templates_dir: {}\nqueue: {{ dir: {} }}\noutputs:\n  - {{name: archive, type: file, path: {}}}\n  - {{name: slack, type: slack, webhook_url: {}}}\n",
        templates_dir(),
        dir.join("queue").display(),
        file.display(),
        slack.url()
    ))
    .await;

    let (s, b, _) = post(r.addr, "/", alert_without_output("Shell one").to_string()).await;
    assert_eq!((s, &b), (200, &json!({"accepted": 1})));
    let batch = format!("{}\n", alert_without_output("Shell two"));
    let (s, b, _) = post(r.addr, "/v1/alerts", batch).await;
    assert_eq!((s, &b), (200, &json!({"accepted": 1})));
    // An alert that carries `output` keeps it as sent.
    assert_eq!(post(r.addr, "/", FALCO_DOC_ALERT).await.0, 200);

    let lines = wait_lines(&file, 3).await;
    for (line, rule) in lines.iter().zip(["Shell one", "Shell two"]) {
        assert_eq!(line["rule"], rule);
        assert_eq!(
            line["output"],
            format!(
                "13:44:05.478445995: Critical {rule} (fd.name=<NA> k8s.ns.name=default proc.name=sh)"
            ),
            "{line}"
        );
    }
    let doc: Value = serde_json::from_str(FALCO_DOC_ALERT).unwrap();
    assert_eq!(lines[2], doc);

    let got = slack.wait_for(3).await;
    let text = got[0].body.escape_ascii().to_string();
    assert!(
        text.contains("Critical Shell one (fd.name=&lt;NA&gt; k8s.ns.name=default proc.name=sh)"),
        "{text}"
    );
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
    r.shutdown().await.unwrap();
}

/// Slack and PagerDuty behind routes that a test alert (`Test rule`, Debug) does not match.
fn routed_yaml(slack: &Receiver, pd: &Receiver, file: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
templates_dir: {tpl}
outputs:
  - name: slack
    type: slack
    webhook_url: {slack}
  - name: pagerduty
    type: pagerduty
    routing_key: {rk}
    url: {pd}
    min_priority: critical
  - name: archive
    type: file
    path: {file}
routes:
  - match: {{ rule: "Terminal shell*" }}
    outputs: [slack, pagerduty]
  - match: {{ priority: ">= warning" }}
    outputs: [archive]
{extra}"#,
        tpl = templates_dir(),
        slack = slack.url(),
        rk = ROUTING_KEY,
        pd = pd.url(),
        file = file.display(),
    )
}

#[tokio::test]
async fn test_alert_reaches_slack_and_pagerduty_with_a_routed_config() {
    let (slack, pd) = (
        Receiver::start(Api::Slack).await,
        Receiver::start(Api::PagerDuty).await,
    );
    let dir = temp_dir("parity-test-all");
    let file = dir.join("archive.jsonl");
    let r = start_router(&routed_yaml(&slack, &pd, &file, "")).await;
    let (s, b, _) = post(r.addr, "/test", "").await;
    assert_eq!((s, &b), (200, &json!({"accepted": 1})));

    let got = slack.wait_for(1).await;
    assert!(got[0].body.escape_ascii().to_string().contains("Test rule"));
    let got = pd.wait_for(1).await;
    let summary = got[0].json()["payload"]["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(summary.contains("Test rule"), "{summary}");
    assert_eq!(wait_lines(&file, 1).await[0]["rule"], "Test rule");
    assert!(slack.violations().is_empty() && pd.violations().is_empty());
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn test_alert_follows_the_routes_with_test_alert_routed() {
    let (slack, pd) = (
        Receiver::start(Api::Slack).await,
        Receiver::start(Api::PagerDuty).await,
    );
    let dir = temp_dir("parity-test-routed");
    let file = dir.join("archive.jsonl");
    let r = start_router(&routed_yaml(
        &slack,
        &pd,
        &file,
        "test_alert: { routed: true }\n",
    ))
    .await;
    assert_eq!(post(r.addr, "/test", "").await.0, 200);
    // Routing happens before the 200: the test alert matched no route and was queued nowhere.
    let m = &r.core.metrics;
    assert_eq!(m.alerts_no_output.load(Relaxed), 1);
    for o in 0..3 {
        assert_eq!(m.output(o).queued.load(Relaxed), 0, "output {o}");
    }
    r.shutdown().await.unwrap();
    assert!(slack.accepted().is_empty() && pd.accepted().is_empty());
    assert!(read_lines(&file).is_empty());
}
