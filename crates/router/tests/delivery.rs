//! End-to-end over loopback HTTP: ingest → routes → Slack, PagerDuty, webhook and file outputs,
//! with receivers that validate every payload against the documented API.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn all_outputs_yaml(
    slack: &Receiver,
    pd: &Receiver,
    hook: &Receiver,
    file: &std::path::Path,
    extra: &str,
) -> String {
    format!(
        r#"
templates_dir: {tpl}
max_body_size: 4MB
outputs:
  - name: slack-secops
    type: slack
    webhook_url: {slack}
    retry: {{ initial_backoff: 50ms, max_backoff: 200ms }}
  - name: pagerduty-oncall
    type: pagerduty
    routing_key: {rk}
    url: {pd}
    retry: {{ initial_backoff: 50ms, max_backoff: 200ms }}
  - name: hook
    type: webhook
    url: {hook}
    hmac_secret: s3cret
    headers: {{ X-Team: secops }}
    retry: {{ initial_backoff: 50ms, max_backoff: 200ms }}
  - name: archive
    type: file
    path: {file}
    fsync: always
{extra}
routes:
  - outputs: [slack-secops, pagerduty-oncall, hook, archive]
"#,
        tpl = templates_dir(),
        slack = slack.url(),
        rk = ROUTING_KEY,
        pd = pd.url(),
        hook = hook.url(),
        file = file.display(),
    )
}

#[tokio::test]
async fn falco_documentation_alert_reaches_every_output_intact() {
    let (slack, pd, hook) = (
        Receiver::start(Api::Slack).await,
        Receiver::start(Api::PagerDuty).await,
        Receiver::start(Api::Webhook).await,
    );
    let dir = temp_dir("doc");
    let file = dir.join("alerts.jsonl");
    let r = start_router(&all_outputs_yaml(&slack, &pd, &hook, &file, "")).await;
    let (status, body, _) = post(r.addr, "/", FALCO_DOC_ALERT).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1);

    let original: Value = serde_json::from_str(FALCO_DOC_ALERT).unwrap();
    // Webhook: the Falco JSON, every field intact, signed.
    let got = hook.wait_for(1).await;
    assert_eq!(got[0].json(), original);
    let sig = got[0].headers["x-aerie-signature"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        sig,
        aerie_router::outputs::http::sign(b"s3cret", &got[0].body)
    );
    assert_eq!(got[0].headers["x-team"], "secops");
    // File: the same.
    assert_eq!(wait_lines(&file, 1).await[0], original);
    // PagerDuty: severity mapping, dedup key, fields from the alert.
    let ev = pd.wait_for(1).await[0].json();
    assert_eq!(ev["routing_key"], ROUTING_KEY);
    assert_eq!(ev["event_action"], "trigger");
    assert_eq!(ev["dedup_key"].as_str().unwrap().len(), 16);
    let p = &ev["payload"];
    assert_eq!(p["severity"], "critical");
    assert_eq!(p["source"], "falco-xczjd");
    assert_eq!(p["component"], "kubecon");
    assert_eq!(p["group"], "default");
    assert_eq!(p["class"], "Terminal shell in container");
    assert_eq!(p["timestamp"], "2023-05-25T13:44:05.478445995Z");
    assert_eq!(p["custom_details"], original["output_fields"]);
    assert!(
        p["summary"]
            .as_str()
            .unwrap()
            .contains("Terminal shell in container")
    );
    // Slack: header, output text, fields, colour.
    let msg = slack.wait_for(1).await[0].json();
    let att = &msg["attachments"][0];
    assert_eq!(att["color"], "#d0021b");
    let blocks = att["blocks"].as_array().unwrap();
    assert_eq!(
        blocks[0]["text"]["text"],
        "Critical: Terminal shell in container"
    );
    assert_eq!(blocks[1]["text"]["text"], original["output"]);
    let fields: Vec<&str> = blocks[2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "*Hostname*\nfalco-xczjd",
            "*Source*\nsyscall",
            "*Tags*\ncontainer, mitre_execution, shell",
            "*Container*\nee97d9c4186f",
            "*User*\nroot",
            "*Command*\nsh -c clear; (bash || ash || sh)"
        ]
    );
    for rcv in [&slack, &pd, &hook] {
        assert!(rcv.violations().is_empty(), "{:?}", rcv.violations());
    }
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn hostile_text_stays_valid_json_never_pings_and_is_truncated() {
    let (slack, pd, hook) = (
        Receiver::start(Api::Slack).await,
        Receiver::start(Api::PagerDuty).await,
        Receiver::start(Api::Webhook).await,
    );
    let dir = temp_dir("inject");
    let file = dir.join("alerts.jsonl");
    let r = start_router(&all_outputs_yaml(&slack, &pd, &hook, &file, "")).await;
    let cmdline = "sh -c \"curl <http://evil.example|click> <!channel> <!here> <@U123> & rm\"\n\r\t\u{0}\u{1b}[31m\u{7f} \u{2028} é漢字🙂 \\ '";
    let big = format!("{} {}", "A".repeat(1 << 20), cmdline);
    let alert = json!({
        "hostname": "<!channel>",
        "output": big,
        "priority": "Critical",
        "rule": "Inject <!everyone> \"rule\"",
        "source": "syscall",
        "tags": ["<!here>", "x\ny"],
        "time": "2023-05-25T13:44:05.478445995Z",
        "output_fields": {"proc.cmdline": cmdline, "user.name": "<@U999>", "container.id": null}
    });
    let (status, body, _) = post(r.addr, "/", alert.to_string()).await;
    assert_eq!(status, 200, "{body}");

    // Slack's receiver refuses any raw < or > and any over-limit text: one clean payload.
    let msg = slack.wait_for(1).await[0].json();
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
    let text = msg.to_string();
    assert!(!text.contains("<!channel>") && !text.contains("<http"));
    assert!(text.contains("&lt;!channel&gt;"));
    let section = msg["attachments"][0]["blocks"][1]["text"]["text"]
        .as_str()
        .unwrap();
    assert!(section.chars().count() <= 3000 && section.ends_with('…'));
    let cmd_field = msg["attachments"][0]["blocks"][2]["fields"][5]["text"]
        .as_str()
        .unwrap();
    assert!(cmd_field.contains("é漢字🙂"), "{cmd_field}");
    assert!(cmd_field.contains('\u{1b}') && cmd_field.contains('\n'));

    let ev = pd.wait_for(1).await[0].json();
    assert!(pd.violations().is_empty(), "{:?}", pd.violations());
    assert!(ev["payload"]["summary"].as_str().unwrap().chars().count() <= 1024);
    assert_eq!(ev["payload"]["custom_details"]["proc.cmdline"], cmdline);

    // The webhook and the file get the whole alert, byte for byte in meaning.
    assert!(
        hook.wait_for(1).await[0].json() == alert,
        "webhook body differs"
    );
    assert!(wait_lines(&file, 1).await[0] == alert, "file line differs");
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn retries_honour_retry_after_and_survive_5xx() {
    let (slack, pd, hook) = (
        Receiver::start(Api::Slack).await,
        Receiver::start(Api::PagerDuty).await,
        Receiver::start(Api::Webhook).await,
    );
    pd.script(&[Reply::TooMany {
        retry_after_secs: 1,
    }]);
    slack.script(&[Reply::Status(500), Reply::Status(503)]);
    hook.script(&[Reply::Status(400)]); // permanent: not retried
    let dir = temp_dir("retry");
    let file = dir.join("alerts.jsonl");
    let r = start_router(&all_outputs_yaml(&slack, &pd, &hook, &file, "")).await;
    let (status, _, _) = post(r.addr, "/", FALCO_DOC_ALERT).await;
    assert_eq!(status, 200);
    // The file output is not held up by the slow ones.
    let t0 = Instant::now();
    wait_lines(&file, 1).await;
    assert!(t0.elapsed() < Duration::from_millis(900));

    pd.wait_for(1).await;
    let attempts = pd.attempts();
    assert_eq!(attempts.len(), 2);
    let gap = attempts[1] - attempts[0];
    assert!(
        gap >= Duration::from_secs(1),
        "retried after {gap:?}, before Retry-After"
    );
    slack.wait_for(1).await;
    assert_eq!(slack.attempts().len(), 3);
    let m = &r.core.metrics;
    let deadline = Instant::now() + Duration::from_secs(5);
    while m
        .output(2)
        .failed
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "webhook 400 not counted as failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hook.attempts().len(), 1);
    assert_eq!(
        m.output(0)
            .retries
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    assert_eq!(
        m.output(1)
            .retries
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn slack_message_carries_the_dedup_count() {
    let slack = Receiver::start(Api::Slack).await;
    let r = start_router(&format!(
        "templates_dir: {}\ndedup: {{ window: 300ms }}\noutputs:\n  - {{name: s, type: slack, webhook_url: \"{}\"}}\n",
        templates_dir(),
        slack.url()
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(post(r.addr, "/", FALCO_DOC_ALERT).await.0, 200);
    }
    slack.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(post(r.addr, "/", FALCO_DOC_ALERT).await.0, 200);
    let got = slack.wait_for(2).await;
    assert_eq!(got.len(), 2);
    let first = got[0].json().to_string();
    assert!(!first.contains("repeated"), "{first}");
    let blocks = got[1].json()["attachments"][0]["blocks"].clone();
    let ctx = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "context")
        .expect("a context block with the count");
    assert_eq!(
        ctx["elements"][0]["text"],
        ":repeat: repeated 2 times in 300ms"
    );
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn tls_settings_are_checked_at_start() {
    let cfg = aerie_router::config::Config::parse(
        "t.yaml",
        "outputs:\n  - {name: w, type: webhook, url: \"https://127.0.0.1:9/\", tls: {ca_file: /nonexistent/ca.pem}}\n",
        &std::collections::BTreeMap::<String, String>::new(),
    )
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = aerie_router::server::start(cfg, Some(l))
        .await
        .err()
        .expect("missing CA refused");
    assert!(format!("{err:#}").contains("tls.ca_file"), "{err:#}");

    let half = aerie_router::config::Config::parse(
        "t.yaml",
        "outputs:\n  - {name: w, type: webhook, url: \"https://x/\", tls: {client_cert_file: /a.pem}}\n",
        &std::collections::BTreeMap::<String, String>::new(),
    )
    .unwrap_err();
    assert_eq!(half.field, "outputs[0].tls");
}

#[tokio::test]
async fn rate_limit_digests_reach_pagerduty_and_webhooks() {
    let (pd, hook) = (
        Receiver::start(Api::PagerDuty).await,
        Receiver::start(Api::Webhook).await,
    );
    let r = start_router(&format!(
        "templates_dir: {}\noutputs:\n  - {{name: pd, type: pagerduty, routing_key: {ROUTING_KEY}, url: \"{}\", rate_limit: {{per_second: 2, burst: 1}}}}\n  - {{name: hook, type: webhook, url: \"{}\", rate_limit: {{per_second: 2, burst: 1}}}}\n",
        templates_dir(),
        pd.url(),
        hook.url()
    ))
    .await;
    for rule in ["first", "second", "third"] {
        let a = FALCO_DOC_ALERT.replace("Terminal shell in container", rule);
        assert_eq!(post(r.addr, "/", a).await.0, 200);
    }
    let events = pd.wait_for(2).await;
    let (e0, e1) = (events[0].json(), events[1].json());
    assert_eq!(e0["payload"]["class"], "first");
    let summary = e1["payload"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("2 alerts held by the rate limit of output pd: second ×1, third ×1"),
        "{summary}"
    );
    assert_ne!(e1["dedup_key"], e0["dedup_key"]);
    assert_ne!(e1["dedup_key"], "0000000000000000");
    let bodies = hook.wait_for(2).await;
    assert!(bodies[0].json().get("aerie").is_none());
    assert_eq!(bodies[1].json()["rule"], "second");
    assert_eq!(bodies[1].json()["aerie"]["digest"]["count"], 2);
    assert!(pd.violations().is_empty(), "{:?}", pd.violations());
    r.shutdown().await.unwrap();
}

/// `proxy:` sends an HTTP output's requests through the proxy: the webhook's own host does not
/// exist, so the alert can only arrive at the receiver standing in as the proxy (it gets the
/// request in absolute form, `POST http://aerie-unreachable.invalid/hook`).
#[tokio::test]
async fn an_http_output_goes_through_its_proxy() {
    let proxy = Receiver::start(Api::Webhook).await;
    let yaml = format!(
        "outputs:\n  - name: hook\n    type: webhook\n    url: http://aerie-unreachable.invalid/hook\n    proxy: http://{}\n    retry: {{ max_attempts: 1 }}\n",
        proxy.addr
    );
    let router = start_router(&yaml).await;
    let (status, _, _) = post(router.addr, "/", FALCO_DOC_ALERT).await;
    assert_eq!(status, 200);
    let got = proxy.wait_for(1).await;
    assert_eq!(got[0].json()["rule"], "Terminal shell in container");
    router.shutdown().await.unwrap();
}
