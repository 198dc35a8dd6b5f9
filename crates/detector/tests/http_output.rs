//! The HTTP output against a real HTTP server on loopback: one JSON alert per POST over a
//! kept-alive connection, retries on 503 and on connection errors, spill to disk across an
//! outage and a restart, and counted drops beyond the disk bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aerie_detector::config::{HttpOutputConfig, OutputSpec};
use aerie_detector::metrics::Metrics;
use aerie_detector::output::Outputs;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the test server saw.
#[derive(Default)]
struct Seen {
    bodies: Mutex<Vec<String>>,
    content_types: Mutex<Vec<String>>,
    connections: AtomicUsize,
    /// Answer `fail_status` to this many requests first.
    fail_first: AtomicUsize,
    /// The status of those failures (503 when 0), and the Retry-After they carry, if any.
    fail_status: AtomicUsize,
    retry_after: Mutex<Option<&'static str>>,
    /// The Authorization header of every request ("" when absent).
    auth: Mutex<Vec<String>>,
    /// When each request arrived.
    arrivals: Mutex<Vec<std::time::Instant>>,
}

/// A minimal HTTP/1.1 server: keep-alive, Content-Length bodies.
async fn server(listener: TcpListener, seen: Arc<Seen>) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        seen.connections.fetch_add(1, Ordering::SeqCst);
        let seen = seen.clone();
        tokio::spawn(async move {
            let (r, mut w) = sock.into_split();
            let mut r = BufReader::new(r);
            loop {
                let mut len = 0usize;
                let mut ctype = String::new();
                let mut auth = String::new();
                let mut line = String::new();
                // Request line.
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    let lower = l.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if let Some(v) = lower.strip_prefix("content-type:") {
                        ctype = v.trim().to_owned();
                    }
                    if lower.starts_with("authorization:") {
                        auth = l["authorization:".len()..].trim().to_owned();
                    }
                }
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).await.is_err() {
                    return;
                }
                seen.arrivals
                    .lock()
                    .unwrap()
                    .push(std::time::Instant::now());
                seen.auth.lock().unwrap().push(auth);
                let fail = seen
                    .fail_first
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let failure;
                let resp: &[u8] = if fail {
                    let status = match seen.fail_status.load(Ordering::SeqCst) {
                        0 => 503,
                        s => s,
                    };
                    let retry = match *seen.retry_after.lock().unwrap() {
                        Some(v) => format!("retry-after: {v}\r\n"),
                        None => String::new(),
                    };
                    failure = format!("HTTP/1.1 {status} X\r\n{retry}content-length: 0\r\n\r\n");
                    failure.as_bytes()
                } else {
                    seen.bodies
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&body).into_owned());
                    seen.content_types.lock().unwrap().push(ctype);
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                };
                if w.write_all(resp).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn cfg(dir: &std::path::Path, queue: usize, max_bytes: u64) -> HttpOutputConfig {
    HttpOutputConfig {
        timeout_ms: 2_000,
        queue_capacity: queue,
        spill_dir: dir.to_owned(),
        spill_max_bytes: max_bytes,
        min_backoff_ms: 20,
        max_backoff_ms: 100,
        ..HttpOutputConfig::default()
    }
}

fn tmp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("aerie-http-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn alert(i: usize) -> Arc<str> {
    Arc::from(format!(
        r#"{{"output":"alert {i}","priority":"Warning","rule":"r","time":"2024-01-01T00:00:00.000000000Z","output_fields":{{"n":{i}}}}}"#
    ))
}

async fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test]
async fn one_alert_per_post_on_one_kept_alive_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    tokio::spawn(server(listener, seen.clone()));
    let metrics = Arc::new(Metrics::default());
    let dir = tmp("keepalive");
    let out = Outputs::start(&[OutputSpec::Http(url)], &cfg(&dir, 100, 1 << 20), metrics)
        .await
        .unwrap();
    for i in 0..5 {
        out.send(alert(i));
    }
    assert!(wait_until(|| seen.bodies.lock().unwrap().len() == 5).await);
    let bodies = seen.bodies.lock().unwrap().clone();
    for (i, b) in bodies.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(b).unwrap();
        assert_eq!(v["output_fields"]["n"], i, "in order, one alert per POST");
    }
    assert!(
        seen.content_types
            .lock()
            .unwrap()
            .iter()
            .all(|c| c == "application/json")
    );
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1, "keep-alive");
    out.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn retries_503_with_backoff_and_keeps_order() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    seen.fail_first.store(3, Ordering::SeqCst);
    tokio::spawn(server(listener, seen.clone()));
    let metrics = Arc::new(Metrics::default());
    let dir = tmp("retry");
    let out = Outputs::start(
        &[OutputSpec::Http(url.clone())],
        &cfg(&dir, 100, 1 << 20),
        metrics.clone(),
    )
    .await
    .unwrap();
    for i in 0..3 {
        out.send(alert(i));
    }
    assert!(wait_until(|| seen.bodies.lock().unwrap().len() == 3).await);
    assert_eq!(
        seen.fail_first.load(Ordering::SeqCst),
        0,
        "the 503s were seen"
    );
    let ns: Vec<u64> = seen
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| {
            serde_json::from_str::<serde_json::Value>(b).unwrap()["output_fields"]["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, [0, 1, 2]);
    assert_eq!(metrics.output_drops(&url), 0);
    out.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_outage_loses_nothing_across_a_restart() {
    // Reserve a port, then close it: the receiver is down.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/");
    let dir = tmp("outage");
    let metrics = Arc::new(Metrics::default());
    // Memory holds 2; the rest spills to disk.
    let out = Outputs::start(
        &[OutputSpec::Http(url.clone())],
        &cfg(&dir, 2, 1 << 20),
        metrics.clone(),
    )
    .await
    .unwrap();
    for i in 0..6 {
        out.send(alert(i));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    out.shutdown(Duration::from_millis(200)).await;
    let spilled = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert_eq!(
        spilled.lines().count(),
        6,
        "all six kept on disk: {spilled}"
    );

    // The receiver comes back; a new detector run sends the backlog first, in order.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let seen = Arc::new(Seen::default());
    tokio::spawn(server(listener, seen.clone()));
    let out = Outputs::start(
        &[OutputSpec::Http(url.clone())],
        &cfg(&dir, 2, 1 << 20),
        metrics.clone(),
    )
    .await
    .unwrap();
    out.send(alert(6));
    assert!(wait_until(|| seen.bodies.lock().unwrap().len() == 7).await);
    let ns: Vec<u64> = seen
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| {
            serde_json::from_str::<serde_json::Value>(b).unwrap()["output_fields"]["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(metrics.output_drops(&url), 0);
    out.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn drops_beyond_the_disk_bound_are_counted() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/");
    let dir = tmp("bound");
    let metrics = Arc::new(Metrics::default());
    let one = alert(0).len() as u64 + 1;
    // One alert in memory, two on disk; the other seven are dropped and counted.
    let out = Outputs::start(
        &[OutputSpec::Http(url.clone())],
        &cfg(&dir, 1, 2 * one),
        metrics.clone(),
    )
    .await
    .unwrap();
    for i in 0..10 {
        out.send(alert(i));
    }
    assert!(
        wait_until(|| metrics.output_drops(&url) == 7).await,
        "{}",
        metrics.render()
    );
    assert!(metrics.render().contains(&format!(
        "aerie_alerts_dropped_total{{output=\"{url}\",reason=\"spill_full\"}} 7"
    )));
    out.shutdown(Duration::from_millis(100)).await;
}

/// Start a test receiver; returns its URL.
async fn receiver(seen: &Arc<Seen>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(server(listener, seen.clone()));
    url
}

#[tokio::test]
async fn sends_the_bearer_token_and_retries_401_instead_of_dropping() {
    let seen = Arc::new(Seen::default());
    // The receiver refuses the first two requests (a token being rotated in).
    seen.fail_first.store(2, Ordering::SeqCst);
    seen.fail_status.store(401, Ordering::SeqCst);
    let url = receiver(&seen).await;
    let dir = tmp("bearer");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "  tok-123\n").unwrap();
    let http_cfg = HttpOutputConfig {
        bearer_token_file: Some(token_file),
        ..cfg(&dir, 100, 1 << 20)
    };
    let metrics = Arc::new(Metrics::default());
    let out = Outputs::start(&[OutputSpec::Http(url.clone())], &http_cfg, metrics.clone())
        .await
        .unwrap();
    for i in 0..3 {
        out.send(alert(i));
    }
    assert!(wait_until(|| seen.bodies.lock().unwrap().len() == 3).await);
    let auth = seen.auth.lock().unwrap().clone();
    assert!(auth.len() >= 5, "2 refused + 3 accepted requests: {auth:?}");
    assert!(auth.iter().all(|a| a == "Bearer tok-123"), "{auth:?}");
    assert_eq!(metrics.output_drops(&url), 0, "401 is retried, not dropped");
    out.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn honours_retry_after_on_503() {
    let seen = Arc::new(Seen::default());
    seen.fail_first.store(1, Ordering::SeqCst);
    *seen.retry_after.lock().unwrap() = Some("1");
    let url = receiver(&seen).await;
    let dir = tmp("retry-after");
    let metrics = Arc::new(Metrics::default());
    // min_backoff is 20 ms: only Retry-After can explain a 1 s wait.
    let out = Outputs::start(&[OutputSpec::Http(url)], &cfg(&dir, 100, 1 << 20), metrics)
        .await
        .unwrap();
    out.send(alert(0));
    assert!(wait_until(|| seen.bodies.lock().unwrap().len() == 1).await);
    let arrivals = seen.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 2, "one 503, then the delivery");
    let gap = arrivals[1] - arrivals[0];
    assert!(gap >= Duration::from_millis(990), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(3), "retried after {gap:?}");
    out.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_unreadable_token_file_is_a_start_error_naming_the_key() {
    let dir = tmp("bad-token");
    let http_cfg = HttpOutputConfig {
        bearer_token_file: Some(dir.join("missing")),
        ..cfg(&dir, 100, 1 << 20)
    };
    let err = Outputs::start(
        &[OutputSpec::Http("http://127.0.0.1:1/".into())],
        &http_cfg,
        Arc::new(Metrics::default()),
    )
    .await
    .err()
    .expect("a missing token file must fail the start");
    let msg = format!("{err:#}");
    assert!(msg.contains("bearer_token_file"), "{msg}");
}
