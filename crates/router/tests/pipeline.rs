//! Ingest, routing, dedup and rate limits end to end (file outputs on real files).

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn alert(rule: &str, priority: &str) -> String {
    json!({"hostname":"node-1","output":format!("{rule} happened"),"priority":priority,"rule":rule,
           "source":"syscall","tags":["container"],"time":"2023-05-25T13:44:05Z",
           "output_fields":{"proc.cmdline":"sh"}})
    .to_string()
}

#[tokio::test]
async fn dedup_suppresses_and_the_next_delivery_carries_the_count() {
    let dir = temp_dir("dedup");
    let f = dir.join("a.jsonl");
    let r = start_router(&format!(
        "dedup: {{ window: 1s, key: [rule] }}\noutputs:\n  - {{name: a, type: file, path: {}}}\n",
        f.display()
    ))
    .await;
    for _ in 0..5 {
        assert_eq!(post(r.addr, "/", alert("R", "Warning")).await.0, 200);
    }
    // A different key is not affected.
    assert_eq!(post(r.addr, "/", alert("Other", "Warning")).await.0, 200);
    let lines = wait_lines(&f, 2).await;
    assert!(lines[0].get("aerie").is_none());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        read_lines(&f).len(),
        2,
        "repeats inside the window must not be delivered"
    );
    post(r.addr, "/", alert("R", "Warning")).await;
    let lines = wait_lines(&f, 3).await;
    assert_eq!(lines[2]["rule"], "R");
    assert_eq!(lines[2]["aerie"]["repeated"], 4);
    assert_eq!(lines[2]["aerie"]["text"], "repeated 4 times in 1s");
    assert_eq!(r.core.metrics.output(0).dedup_suppressed.load(Relaxed), 4);
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn dedup_window_end_summary_and_route_override() {
    let dir = temp_dir("summary");
    let f = dir.join("a.jsonl");
    let g = dir.join("b.jsonl");
    let r = start_router(&format!(
        "dedup: {{ window: 300ms, key: [rule], summary: true }}\noutputs:\n  - {{name: a, type: file, path: {}}}\n  - {{name: b, type: file, path: {}}}\nroutes:\n  - match: {{ rule: noisy }}\n    outputs: [b]\n    dedup: {{ disabled: true }}\n  - outputs: [a]\n",
        f.display(),
        g.display()
    ))
    .await;
    for _ in 0..3 {
        post(r.addr, "/", alert("R", "Error")).await;
        post(r.addr, "/", alert("noisy", "Error")).await;
    }
    let lines = wait_lines(&f, 2).await;
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["aerie"]["summary"], true);
    assert_eq!(lines[1]["aerie"]["repeated"], 2);
    // The route without dedup delivers every alert.
    assert_eq!(wait_lines(&g, 3).await.len(), 3);
    assert_eq!(r.core.metrics.output(0).dedup_summaries.load(Relaxed), 1);
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn rate_limit_folds_excess_into_a_digest_sent_when_tokens_return() {
    let dir = temp_dir("ratelimit");
    let f = dir.join("a.jsonl");
    let r = start_router(&format!(
        "outputs:\n  - {{name: a, type: file, path: {}, rate_limit: {{ per_second: 2, burst: 2 }}}}\n",
        f.display()
    ))
    .await;
    let t0 = Instant::now();
    for i in 0..5 {
        let rule = if i < 4 { format!("R{i}") } else { "R3".into() };
        assert_eq!(post(r.addr, "/", alert(&rule, "Notice")).await.0, 200);
    }
    let lines = wait_lines(&f, 2).await;
    assert_eq!(lines[0]["rule"], "R0");
    assert_eq!(lines[1]["rule"], "R1");
    let lines = wait_lines(&f, 3).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "digest sent before a token returned"
    );
    let d = &lines[2]["aerie"]["digest"];
    assert_eq!(d["count"], 3);
    assert_eq!(
        d["rules"],
        json!([{"rule":"R2","count":1},{"rule":"R3","count":2}])
    );
    assert_eq!(
        lines[2]["rule"], "R2",
        "the digest carries the first held alert"
    );
    let m = r.core.metrics.output(0);
    assert_eq!(m.rate_limited.load(Relaxed), 3);
    assert_eq!(m.digests.load(Relaxed), 1);
    assert_eq!(m.delivered.load(Relaxed), 3);
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn routes_defaults_and_min_priority_over_http() {
    let dir = temp_dir("routes");
    let (a, b, c) = (
        dir.join("a.jsonl"),
        dir.join("b.jsonl"),
        dir.join("c.jsonl"),
    );
    let r = start_router(&format!(
        "outputs:\n  - {{name: a, type: file, path: {}}}\n  - {{name: b, type: file, path: {}}}\n  - {{name: c, type: file, path: {}, min_priority: error}}\nroutes:\n  - match: {{ rule: \"Shell*\" }}\n    outputs: [a, c]\n    continue: true\n  - match: {{ rule: \"/^Shell (in|on) host$/\" }}\n    outputs: [b]\ndefault_outputs: [b]\n",
        a.display(),
        b.display(),
        c.display()
    ))
    .await;
    post(r.addr, "/", alert("Shell in container", "Warning")).await; // a (c: below min)
    post(r.addr, "/", alert("Shell on host", "Critical")).await; // a, c, b
    post(r.addr, "/", alert("Unrelated", "Emergency")).await; // default: b
    let rules = |v: Vec<Value>| {
        v.iter()
            .map(|l| l["rule"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rules(wait_lines(&a, 2).await),
        ["Shell in container", "Shell on host"]
    );
    assert_eq!(
        rules(wait_lines(&b, 2).await),
        ["Shell on host", "Unrelated"]
    );
    assert_eq!(rules(wait_lines(&c, 1).await), ["Shell on host"]);
    let m = &r.core.metrics;
    assert_eq!(m.alerts_unmatched.load(Relaxed), 1);
    assert_eq!(m.output(2).below_min_priority.load(Relaxed), 1);
    let text = reqwest::get(format!("http://{}/metrics", r.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("aerie_router_alerts_unmatched_total 1"),
        "{text}"
    );
    assert!(
        text.contains("aerie_router_output_below_min_priority_total{output=\"c\",type=\"file\"} 1")
    );
    // POST /test reaches every route's outputs regardless of min_priority.
    assert_eq!(post(r.addr, "/test", "").await.0, 200);
    assert_eq!(rules(wait_lines(&b, 3).await)[2], "Test rule");
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn ingest_errors_name_field_and_reason_and_batches_are_all_or_nothing() {
    let dir = temp_dir("ingest");
    let f = dir.join("a.jsonl");
    let r = start_router(&format!(
        "max_body_size: 64KB\noutputs:\n  - {{name: a, type: file, path: {}}}\n",
        f.display()
    ))
    .await;
    let (s, b, _) = post(
        r.addr,
        "/",
        r#"{"output":"x","priority":"urgent","rule":"r","time":"2023-05-25T13:44:05Z"}"#,
    )
    .await;
    assert_eq!((s, b["field"].as_str()), (400, Some("priority")));
    assert!(b["reason"].as_str().unwrap().contains("urgent"));
    let (s, b, _) = post(
        r.addr,
        "/",
        r#"{"output":"x","priority":"info","time":"2023-05-25T13:44:05Z"}"#,
    )
    .await;
    assert_eq!((s, b["field"].as_str()), (400, Some("rule")));
    let (s, b, _) = post(r.addr, "/", "not json").await;
    assert_eq!((s, b["field"].as_str()), (400, Some(".")));
    let (s, b, _) = post(r.addr, "/", vec![b'x'; 100 << 10]).await;
    assert_eq!(s, 413, "{b}");
    assert!(b["reason"].as_str().unwrap().contains("65536"));

    // Batch with a bad element: 400 naming it, nothing accepted.
    let batch = format!(
        "[{},{{\"rule\":1}},{}]",
        alert("A", "info"),
        alert("B", "info")
    );
    let (s, b, _) = post(r.addr, "/v1/alerts", batch).await;
    assert_eq!(s, 400);
    assert_eq!(b["index"], 1);
    assert_eq!(b["errors"].as_array().unwrap().len(), 1);
    // NDJSON and arrays.
    let nd = format!("{}\n\n{}\n", alert("A", "info"), alert("B", "info"));
    assert_eq!(post(r.addr, "/v1/alerts", nd).await.1["accepted"], 2);
    let arr = format!("[{}]", alert("C", "INFO"));
    assert_eq!(post(r.addr, "/v1/alerts", arr).await.1["accepted"], 1);
    let lines = wait_lines(&f, 3).await;
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["rule"], "A");
    assert_eq!(lines[2]["priority"], "Informational");
    let ok = reqwest::get(format!("http://{}/healthz", r.addr))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let ready = reqwest::get(format!("http://{}/readyz", r.addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stuck_output_gets_503_backpressure_while_others_keep_flowing() {
    // A server that accepts connections and never answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_addr = hung.local_addr().unwrap();
    let dir = temp_dir("busy");
    let f = dir.join("a.jsonl");
    let r = start_router(&format!(
        "queue_capacity: 2\noutputs:\n  - {{name: stuck, type: webhook, url: \"http://{hung_addr}/\", timeout: 2s, retry: {{max_attempts: 1}}}}\n  - {{name: a, type: file, path: {}}}\nroutes:\n  - match: {{ rule: slow }}\n    outputs: [stuck]\n  - outputs: [a]\n",
        f.display()
    ))
    .await;
    let mut busy = None;
    for _ in 0..10 {
        let (s, b, h) = post(r.addr, "/", alert("slow", "Error")).await;
        if s == 503 {
            busy = Some((b, h));
            break;
        }
        assert_eq!(s, 200);
    }
    let (b, h) = busy.expect("a full queue answers 503");
    assert_eq!(h["retry-after"], "1");
    assert!(b["reason"].as_str().unwrap().contains("stuck"));
    // The file output is independent of the stuck webhook.
    assert_eq!(post(r.addr, "/", alert("fast", "Error")).await.0, 200);
    assert_eq!(wait_lines(&f, 1).await[0]["rule"], "fast");
    assert!(r.core.metrics.requests_busy.load(Relaxed) >= 1);
    drop(hung);
}

#[tokio::test]
async fn sighup_reload_swaps_templates_and_keeps_old_ones_on_error() {
    let dir = temp_dir("reload");
    let tpl = dir.join("templates");
    std::fs::create_dir_all(&tpl).unwrap();
    std::fs::write(
        tpl.join("line.hbs"),
        "{\"v\":1,\"rule\":\"{{alert.rule}}\"}",
    )
    .unwrap();
    let f = dir.join("a.jsonl");
    let r = start_router(&format!(
        "templates_dir: {}\noutputs:\n  - {{name: a, type: file, path: {}, template: line.hbs}}\n",
        tpl.display(),
        f.display()
    ))
    .await;
    post(r.addr, "/", alert("A", "info")).await;
    assert_eq!(wait_lines(&f, 1).await[0], json!({"v":1,"rule":"A"}));
    std::fs::write(
        tpl.join("line.hbs"),
        "{\"v\":2,\"rule\":\"{{alert.rule}}\"}",
    )
    .unwrap();
    r.core.reload_templates().unwrap();
    post(r.addr, "/", alert("B", "info")).await;
    assert_eq!(wait_lines(&f, 2).await[1], json!({"v":2,"rule":"B"}));
    std::fs::write(tpl.join("line.hbs"), "{\"v\":3,\n{{#if x}}").unwrap();
    let e = r.core.reload_templates().unwrap_err();
    assert!(e.to_string().contains("line.hbs:2"), "{e}");
    post(r.addr, "/", alert("C", "info")).await;
    assert_eq!(wait_lines(&f, 3).await[2], json!({"v":2,"rule":"C"}));
    r.shutdown().await.unwrap();
}
