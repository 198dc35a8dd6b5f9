//! Ingest authentication: bearer token (401 otherwise, probes open), secrets kept out of logs
//! and dumps, and the TLS server with client certificates (mTLS) on 127.0.0.1.

mod common;
#[path = "common/pki.rs"]
mod pki;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aerie_router::config::Config;
use common::{FALCO_DOC_ALERT, read_lines, start_router, temp_dir, wait_lines};
use pki::make_pki;

const TOKEN: &str = "tok-9f2c1e7b-very-secret";

async fn send(url: &str, auth: Option<&str>) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(FALCO_DOC_ALERT);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

async fn get(url: &str, auth: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().get(url);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn ingest_needs_the_bearer_token_and_probes_stay_open() {
    let dir = temp_dir("auth-token");
    let file = dir.join("alerts.jsonl");
    let r = start_router(&format!(
        "auth: {{bearer_token: {TOKEN}}}\noutputs:\n  - {{name: f, type: file, path: {}}}\n",
        file.display()
    ))
    .await;
    let base = format!("http://{}", r.addr);
    let good = format!("Bearer {TOKEN}");
    for (path, auth, reason) in [
        ("/", None, "missing Authorization header"),
        ("/", Some("Bearer wrong-token"), "invalid bearer token"),
        (
            "/",
            Some(&format!("Bearer {TOKEN}x")[..]),
            "invalid bearer token",
        ),
        ("/", Some(&format!("Basic {TOKEN}")[..]), "Bearer scheme"),
        ("/", Some(TOKEN), "Bearer scheme"),
        ("/v1/alerts", None, "missing Authorization header"),
        ("/v1/alerts", Some("Bearer nope"), "invalid bearer token"),
        ("/test", None, "missing Authorization header"),
    ] {
        let (status, headers, body) = send(&format!("{base}{path}"), auth).await;
        assert_eq!(status, 401, "{path} {auth:?}: {body}");
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "unauthorized");
        assert!(
            v["reason"].as_str().unwrap().contains(reason),
            "{path} {auth:?}: {v}"
        );
        assert!(!body.contains(TOKEN), "the answer echoes the token: {body}");
    }
    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(&format!("{base}{probe}"), None).await, 200, "{probe}");
    }
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("aerie_router_requests_total{result=\"unauthorized\"} 8\n"),
        "{metrics}"
    );
    // Nothing refused reached the output.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(read_lines(&file).is_empty());

    let (status, _, body) = send(&format!("{base}/"), Some(&good)).await;
    assert_eq!(status, 200, "{body}");
    // The scheme is case-insensitive (RFC 7235).
    let (status, _, body) = send(&format!("{base}/"), Some(&format!("bearer {TOKEN}"))).await;
    assert_eq!(status, 200, "{body}");
    let lines = wait_lines(&file, 2).await;
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["rule"], "Terminal shell in container");
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_can_require_the_token() {
    let dir = temp_dir("auth-metrics");
    let r = start_router(&format!(
        "auth: {{bearer_token: {TOKEN}, protect_metrics: true}}\noutputs:\n  - {{name: f, type: file, path: {}}}\n",
        dir.join("a.jsonl").display()
    ))
    .await;
    let url = format!("http://{}/metrics", r.addr);
    assert_eq!(get(&url, None).await, 401);
    assert_eq!(get(&url, Some(&format!("Bearer {TOKEN}"))).await, 200);
    assert_eq!(get(&format!("http://{}/healthz", r.addr), None).await, 200);
    r.shutdown().await.unwrap();
}

#[test]
fn token_from_file_or_environment_and_redacted_in_debug() {
    let dir = temp_dir("auth-config");
    let tf = dir.join("token");
    std::fs::write(&tf, format!("{TOKEN}\n")).unwrap();
    let none = BTreeMap::<String, String>::new();
    let cfg = Config::parse(
        "t.yaml",
        &format!("auth: {{bearer_token_file: {}}}\n", tf.display()),
        &none,
    )
    .unwrap();
    assert_eq!(cfg.auth.bearer_token.as_ref().unwrap().expose(), TOKEN);
    let dump = format!("{cfg:?} {cfg:#?}");
    assert!(!dump.contains(TOKEN), "Debug shows the token: {dump}");
    assert!(dump.contains("<redacted>"));

    let env = BTreeMap::from([("AERIE_ROUTER_TOKEN".to_string(), "from-env".to_string())]);
    let cfg = Config::parse("t.yaml", "auth: {bearer_token: inline}\n", &env).unwrap();
    assert_eq!(cfg.auth.bearer_token.unwrap().expose(), "from-env");

    let e = Config::parse(
        "t.yaml",
        "auth: {bearer_token: a, bearer_token_file: /x}\n",
        &none,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("auth.bearer_token"), "{e}");
    let e = Config::parse("t.yaml", "auth: {client_ca_file: /ca.pem}\n", &none)
        .unwrap_err()
        .to_string();
    assert!(e.contains("tls.cert_file"), "{e}");
    let e = Config::parse("t.yaml", "request_timeout: 0s\n", &none)
        .unwrap_err()
        .to_string();
    assert!(e.contains("request_timeout"), "{e}");
}

/// The real binary at debug log level: refused and accepted requests, check-config, SIGTERM.
/// The token appears nowhere in what it prints.
#[test]
fn token_never_reaches_logs_or_check_config() {
    let dir = temp_dir("auth-logs");
    let tf = dir.join("token");
    std::fs::write(&tf, TOKEN).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = dir.join("alerts.jsonl");
    let cfg = dir.join("router.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ntemplates_dir: {}\nauth: {{bearer_token_file: {}}}\noutputs:\n  - {{name: f, type: file, path: {}}}\n",
            common::templates_dir(),
            tf.display(),
            file.display()
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_aerie-router");
    let check = Command::new(bin)
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{printed}");
    assert!(!printed.contains(TOKEN), "{printed}");

    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("AERIE_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "router did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!("http://127.0.0.1:{port}/");
        assert_eq!(send(&url, Some(&format!("Bearer {TOKEN}"))).await.0, 200);
        assert_eq!(send(&url, Some(&format!("Bearer {TOKEN}-"))).await.0, 401);
        assert_eq!(send(&url, Some(&format!("Basic {TOKEN}"))).await.0, 401);
        assert_eq!(send(&url, None).await.0, 401);
    });
    wait_lines_blocking(&file, 1);
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        log.contains("request refused"),
        "debug log lacks refusals: {log}"
    );
    assert!(!log.contains(TOKEN), "the token is in the log:\n{log}");
}

fn wait_lines_blocking(path: &std::path::Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_lines(path).len() < n {
        assert!(
            Instant::now() < deadline,
            "{} lines missing",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn client(dir: &std::path::Path, with_cert: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(5));
    if with_cert {
        let mut pem = std::fs::read(dir.join("client.pem")).unwrap();
        pem.extend(std::fs::read(dir.join("client.key")).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test]
async fn tls_server_requires_a_client_certificate_from_the_ca() {
    let dir = temp_dir("auth-mtls");
    make_pki(&dir);
    // A second CA whose client certificate must be refused.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    make_pki(&other);
    let d = dir.display();
    let file = dir.join("alerts.jsonl");
    let r = start_router(&format!(
        "tls: {{cert_file: {d}/server.pem, key_file: {d}/server.key, client_ca_file: {d}/ca.pem}}\noutputs:\n  - {{name: f, type: file, path: {}}}\n",
        file.display()
    ))
    .await;
    let url = format!("https://127.0.0.1:{}/", r.addr.port());
    let ok = client(&dir, true)
        .post(&url)
        .body(FALCO_DOC_ALERT)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(wait_lines(&file, 1).await.len(), 1);

    let no_cert = client(&dir, false)
        .post(&url)
        .body(FALCO_DOC_ALERT)
        .send()
        .await;
    assert!(
        no_cert.is_err(),
        "accepted without a client certificate: {no_cert:?}"
    );
    // Trusts our server, but presents a client certificate from another CA.
    let mut pem = std::fs::read(other.join("client.pem")).unwrap();
    pem.extend(std::fs::read(other.join("client.key")).unwrap());
    let foreign = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap(),
        )
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap()
        .post(&url)
        .body(FALCO_DOC_ALERT)
        .send()
        .await;
    assert!(
        foreign.is_err(),
        "accepted a foreign client certificate: {foreign:?}"
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/", r.addr.port()))
        .body(FALCO_DOC_ALERT)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    // The probes are served over TLS too.
    let health = client(&dir, true)
        .get(format!("https://127.0.0.1:{}/healthz", r.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        read_lines(&file).len(),
        1,
        "a refused client's alert was delivered"
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn tls_server_with_token_and_no_client_ca() {
    let dir = temp_dir("auth-tls-token");
    make_pki(&dir);
    let d = dir.display();
    let file = dir.join("alerts.jsonl");
    let r = start_router(&format!(
        "auth: {{bearer_token: {TOKEN}}}\ntls: {{cert_file: {d}/server.pem, key_file: {d}/server.key}}\noutputs:\n  - {{name: f, type: file, path: {}}}\n",
        file.display()
    ))
    .await;
    let url = format!("https://127.0.0.1:{}/", r.addr.port());
    let c = client(&dir, false);
    let refused = c.post(&url).body(FALCO_DOC_ALERT).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let ok = c
        .post(&url)
        .bearer_auth(TOKEN)
        .body(FALCO_DOC_ALERT)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(wait_lines(&file, 1).await.len(), 1);
    r.shutdown().await.unwrap();
}

#[test]
fn tls_files_that_do_not_load_are_named() {
    let dir = temp_dir("auth-tls-bad");
    std::fs::write(dir.join("empty.pem"), "").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (cert, key, needle) in [
        ("missing.pem", "missing.key", "tls.cert_file"),
        ("empty.pem", "missing.key", "tls.cert_file"),
    ] {
        let yaml = format!(
            "tls: {{cert_file: {d}/{cert}, key_file: {d}/{key}}}\n",
            d = dir.display()
        );
        let cfg = Config::parse("t.yaml", &yaml, &BTreeMap::<String, String>::new()).unwrap();
        let e = rt
            .block_on(async {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                aerie_router::server::start(cfg, Some(l)).await.map(|_| ())
            })
            .unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains(needle) && msg.contains(cert), "{msg}");
    }
}
