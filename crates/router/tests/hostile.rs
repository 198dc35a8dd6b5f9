//! Hostile clients against a running router on 127.0.0.1: 10 000 malformed requests sent
//! concurrently (bad JSON, wrong types, missing fields, bodies over the limit, unknown
//! priorities, invalid UTF-8, deep nesting, wrong content types, bad batches, truncated and
//! trickled bodies, trickled headers, broken chunked encoding). Each one gets a 4xx (or, for the raw-socket
//! kinds, the connection is closed / times out); good alerts sent in between are all accepted
//! and delivered to the file output, and /healthz answers throughout.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{read_lines, start_router, temp_dir, wait_lines};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOTAL: usize = 10_000;
const IN_FLIGHT: usize = 96;
const TIME: &str = "2023-05-25T13:44:05.478445995Z";

fn good(rule: &str) -> String {
    format!(r#"{{"output":"good {rule}","priority":"Warning","rule":"{rule}","time":"{TIME}"}}"#)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    BadJson,
    WrongTypes,
    MissingFields,
    UnknownPriority,
    InvalidUtf8,
    DeepNesting,
    OverLimit,
    WrongContentType,
    BadBatch,
    EmptyBatch,
    EmptyBody,
    WrongMethod,
    Truncated,
    BrokenChunked,
    Trickle,
    SlowHeaders,
}

const FAST: [Kind; 14] = [
    Kind::BadJson,
    Kind::WrongTypes,
    Kind::MissingFields,
    Kind::UnknownPriority,
    Kind::InvalidUtf8,
    Kind::DeepNesting,
    Kind::OverLimit,
    Kind::WrongContentType,
    Kind::BadBatch,
    Kind::EmptyBatch,
    Kind::EmptyBody,
    Kind::WrongMethod,
    Kind::Truncated,
    Kind::BrokenChunked,
];

/// What the client saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Status(u16),
    /// The server closed the connection without an answer (raw-socket kinds only).
    Closed,
    /// No answer within the client's patience.
    TimedOut,
}

/// A request by hand, for what reqwest will not send; returns the status line's code.
async fn raw(addr: SocketAddr, head: &str, body: &[u8], trickle: Option<Duration>) -> Outcome {
    let io = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(head.as_bytes()).await?;
        match trickle {
            None => {
                s.write_all(body).await?;
                s.shutdown().await?; // the rest never comes
            }
            Some(every) => {
                for b in body {
                    if s.write_all(&[*b]).await.is_err() {
                        break; // the server gave up on us: read its answer
                    }
                    tokio::time::sleep(every).await;
                }
            }
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(2).any(|w| w == b"\r\n") {
                break;
            }
        }
        std::io::Result::Ok(buf)
    };
    match tokio::time::timeout(Duration::from_secs(5), io).await {
        Err(_) => Outcome::TimedOut,
        Ok(Err(_)) => Outcome::Closed,
        Ok(Ok(buf)) => {
            let line = String::from_utf8_lossy(&buf);
            match line.split(' ').nth(1).and_then(|c| c.parse().ok()) {
                Some(code) => Outcome::Status(code),
                None => Outcome::Closed,
            }
        }
    }
}

async fn hostile(client: &reqwest::Client, addr: SocketAddr, kind: Kind, i: usize) -> Outcome {
    let base = format!("http://{addr}");
    let json = |path: &str, body: Vec<u8>| {
        client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body)
    };
    let req = match kind {
        Kind::BadJson => json("/", format!(r#"{{"output":"x{i}","rule":"#).into_bytes()),
        Kind::WrongTypes => json(
            "/",
            format!(r#"{{"output":{i},"priority":"Warning","rule":["r"],"time":"{TIME}"}}"#)
                .into_bytes(),
        ),
        Kind::MissingFields => json("/", format!(r#"{{"output":"x{i}"}}"#).into_bytes()),
        Kind::UnknownPriority => json(
            "/",
            format!(r#"{{"output":"x","priority":"Catastrophic{i}","rule":"r","time":"{TIME}"}}"#)
                .into_bytes(),
        ),
        Kind::InvalidUtf8 => {
            let mut b = br#"{"output":"bad "#.to_vec();
            b.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
            b.extend_from_slice(
                format!(r#"","priority":"Warning","rule":"r","time":"{TIME}"}}"#).as_bytes(),
            );
            json("/", b)
        }
        Kind::DeepNesting => {
            let depth = 5_000;
            let mut b = br#"{"output":"x","priority":"Warning","rule":"r","time":"2023-05-25T13:44:05Z","output_fields":{"a":"#.to_vec();
            b.extend(std::iter::repeat_n(b'[', depth));
            b.extend(std::iter::repeat_n(b']', depth));
            b.extend_from_slice(b"}}");
            json("/", b)
        }
        // Twice the 64 KiB limit, with a valid alert at the front. The server answers 413
        // without reading the body and closes that connection, so it gets its own connection
        // instead of one from the shared pool (which a later request could try to reuse).
        Kind::OverLimit => {
            let mut b = good(&format!("huge-{i}")).into_bytes();
            b.pop();
            b.extend_from_slice(br#","output_fields":{"pad":""#);
            b.extend(std::iter::repeat_n(b'a', 128 << 10));
            b.extend_from_slice(b"\"}}");
            reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap()
                .post(format!("{base}/"))
                .header("content-type", "application/json")
                .body(b)
        }
        Kind::WrongContentType => client
            .post(format!("{base}/"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("output=x{i}&priority=Warning&rule=r")),
        Kind::BadBatch => json(
            "/v1/alerts",
            format!(
                r#"[{},{{"output":"x","priority":"Warning"}}]"#,
                good("never")
            )
            .into_bytes(),
        ),
        Kind::EmptyBatch => json("/v1/alerts", b"[]".to_vec()),
        Kind::EmptyBody => json("/", Vec::new()),
        Kind::WrongMethod => client.get(format!("{base}/v1/alerts")),
        Kind::Truncated => {
            let body = good("never");
            let head = format!(
                "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len() + 100
            );
            return raw(addr, &head, body.as_bytes(), None).await;
        }
        Kind::BrokenChunked => {
            let head = "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            return raw(addr, head, b"zz\r\n{\"output\"\r\n0\r\n\r\n", None).await;
        }
        Kind::SlowHeaders => {
            let head = "POST / HTTP/1.1\r\nhost: x\r\n";
            let rest = format!("x-slow: {}\r\n\r\n", "a".repeat(60));
            return raw(
                addr,
                head,
                rest.as_bytes(),
                Some(Duration::from_millis(100)),
            )
            .await;
        }
        Kind::Trickle => {
            let body = good("never");
            let head = format!(
                "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            return raw(
                addr,
                &head,
                body.as_bytes(),
                Some(Duration::from_millis(100)),
            )
            .await;
        }
    };
    match req.timeout(Duration::from_secs(5)).send().await {
        Ok(r) => Outcome::Status(r.status().as_u16()),
        Err(e) if e.is_timeout() => Outcome::TimedOut,
        Err(_) => Outcome::Closed,
    }
}

fn acceptable(kind: Kind, o: Outcome) -> bool {
    match o {
        Outcome::Status(s) => (400..500).contains(&s),
        // A body over the limit may be refused before it is sent in full; raw-socket kinds may
        // see the connection closed on them. Nothing else may go unanswered.
        Outcome::Closed => matches!(
            kind,
            Kind::OverLimit
                | Kind::Truncated
                | Kind::BrokenChunked
                | Kind::Trickle
                | Kind::SlowHeaders
        ),
        Outcome::TimedOut => matches!(kind, Kind::Trickle | Kind::Truncated),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_requests_leave_the_router_healthy() {
    let started = Instant::now();
    let dir = temp_dir("hostile");
    let file = dir.join("alerts.jsonl");
    let r = start_router(&format!(
        "max_body_size: 64KiB\nrequest_timeout: 1s\noutputs:\n  - {{name: f, type: file, path: {}}}\n",
        file.display()
    ))
    .await;
    let addr = r.addr;
    // The router closes a keep-alive connection that sends no request within
    // request_timeout (1 s here); a pooled connection idle that long may be closed just as it
    // is reused, which is a client race, not an answer. Drop idle ones well before.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .pool_idle_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let seen: Arc<Mutex<BTreeMap<(Kind, Outcome), usize>>> = Arc::default();
    let bad: Arc<Mutex<Vec<String>>> = Arc::default();
    let good_sent: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut hostile_n = 0;
    for i in 0..TOTAL + TOTAL / 100 {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let (c, seen, bad, good_sent) =
            (client.clone(), seen.clone(), bad.clone(), good_sent.clone());
        if i % 101 == 100 {
            // A good alert between the hostile ones: it must be accepted and delivered.
            tasks.spawn(async move {
                let rule = format!("good-{i}");
                let resp = c
                    .post(format!("http://{addr}/"))
                    .header("content-type", "application/json")
                    .body(good(&rule))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match resp.map(|r| r.status().as_u16()) {
                    Ok(200) => {
                        good_sent.lock().unwrap().insert(rule);
                    }
                    other => bad
                        .lock()
                        .unwrap()
                        .push(format!("good alert {i}: {other:?}")),
                }
                drop(permit);
            });
            continue;
        }
        let kind = if hostile_n % 100 == 7 {
            Kind::Trickle
        } else if hostile_n % 100 == 57 {
            Kind::SlowHeaders
        } else {
            FAST[hostile_n % FAST.len()]
        };
        hostile_n += 1;
        tasks.spawn(async move {
            let o = hostile(&c, addr, kind, i).await;
            if !acceptable(kind, o) {
                bad.lock().unwrap().push(format!("{kind:?} #{i}: {o:?}"));
            }
            *seen.lock().unwrap().entry((kind, o)).or_default() += 1;
            drop(permit);
        });
        if i % 1000 == 999 {
            let health = client
                .get(format!("http://{addr}/healthz"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .map(|r| r.status().as_u16());
            assert!(
                matches!(health, Ok(200)),
                "healthz during the storm: {health:?}"
            );
        }
    }
    while let Some(res) = tasks.join_next().await {
        res.unwrap();
    }
    assert_eq!(hostile_n, TOTAL);
    let seen = seen.lock().unwrap().clone();
    println!("hostile requests in {:?}: {seen:?}", started.elapsed());
    let bad = bad.lock().unwrap().clone();
    assert!(
        bad.is_empty(),
        "{} unacceptable answers, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(20)]
    );
    // Every kind was exercised.
    let kinds: BTreeSet<Kind> = seen.keys().map(|(k, _)| *k).collect();
    assert_eq!(kinds.len(), FAST.len() + 2);

    // Still healthy, still serving: one more good alert after the storm.
    let health = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let (status, body, _) = common::post(addr, "/", good("after-the-storm")).await;
    assert_eq!(status, 200, "{body}");
    let mut expected = good_sent.lock().unwrap().clone();
    expected.insert("after-the-storm".into());
    assert_eq!(expected.len(), TOTAL / 100 + 1);
    let lines = wait_lines(&file, expected.len()).await;
    let delivered: BTreeSet<String> = lines
        .iter()
        .map(|l| l["rule"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        delivered, expected,
        "delivered alerts differ from the good ones sent"
    );
    // Nothing from a refused request was delivered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(read_lines(&file).len(), expected.len());
    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The trickled bodies were cut by request_timeout, and counted.
    let timeouts: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("aerie_router_requests_total{result=\"timeout\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no timeout count in {metrics}"));
    assert_eq!(
        timeouts,
        seen[&(Kind::Trickle, Outcome::Status(408))] as u64
    );
    println!("total {:?}", started.elapsed());
    r.shutdown().await.unwrap();
}
