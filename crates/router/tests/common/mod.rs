//! Test support: local receivers standing in for Slack, PagerDuty and a webhook. They check
//! each payload against the documented API (required keys, types, size limits) and can be told
//! to answer 429 with Retry-After, or 5xx.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

pub const FALCO_DOC_ALERT: &str = r#"{"hostname":"falco-xczjd","output":"13:44:05.478445995: Critical A shell was spawned in a container with an attached terminal (user=root user_loginuid=-1 k8s.ns=default k8s.pod=kubecon container=ee97d9c4186f shell=sh parent=runc cmdline=sh -c clear; (bash || ash || sh) terminal=34816 container_id=ee97d9c4186f image=docker.io/library/alpine)","priority":"Critical","rule":"Terminal shell in container","source":"syscall","tags":["container","mitre_execution","shell"],"time":"2023-05-25T13:44:05.478445995Z","output_fields":{"container.id":"ee97d9c4186f","container.image.repository":"docker.io/library/alpine","evt.time":1685022245478445995,"k8s.ns.name":"default","k8s.pod.name":"kubecon","proc.cmdline":"sh -c clear; (bash || ash || sh)","proc.name":"sh","proc.pname":"runc","proc.tty":34816,"user.loginuid":-1,"user.name":"root"}}"#;

/// A PagerDuty integration key is 32 characters.
pub const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Slack,
    PagerDuty,
    Webhook,
}

#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    TooMany { retry_after_secs: u64 },
}

#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("receiver only records valid JSON")
    }
}

#[derive(Default)]
struct Inner {
    accepted: Vec<Received>,
    /// Every request, including the ones answered with a scripted error.
    attempts: Vec<Instant>,
    violations: Vec<String>,
    script: VecDeque<Reply>,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub api: Api,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    pub async fn start(api: Api) -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let r = Receiver { addr, api, inner };
        let app = axum::Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answer the next requests with these replies (then 200 again).
    pub fn script(&self, replies: &[Reply]) {
        self.inner
            .lock()
            .unwrap()
            .script
            .extend(replies.iter().copied());
    }

    pub fn accepted(&self) -> Vec<Received> {
        self.inner.lock().unwrap().accepted.clone()
    }

    pub fn attempts(&self) -> Vec<Instant> {
        self.inner.lock().unwrap().attempts.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner.lock().unwrap().violations.clone()
    }

    /// Wait until `n` payloads were accepted (panics after 10 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.accepted();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{:?} receiver got {} of {n} payloads; violations: {:?}",
                self.api,
                got.len(),
                self.violations()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let now = Instant::now();
    let scripted = {
        let mut g = r.inner.lock().unwrap();
        g.attempts.push(now);
        g.script.pop_front()
    };
    match scripted {
        Some(Reply::Status(s)) => {
            return (StatusCode::from_u16(s).unwrap(), "scripted failure").into_response();
        }
        Some(Reply::TooMany { retry_after_secs }) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_secs.to_string())],
                "slow down",
            )
                .into_response();
        }
        None => {}
    }
    let check = serde_json::from_slice::<Value>(&body)
        .map_err(|e| format!("body is not JSON: {e}"))
        .and_then(|v| match r.api {
            Api::Slack => validate_slack(&v),
            Api::PagerDuty => validate_pagerduty(&v),
            Api::Webhook => Ok(()),
        });
    let mut g = r.inner.lock().unwrap();
    match check {
        Ok(()) => {
            g.accepted.push(Received {
                at: now,
                headers,
                body,
            });
            match r.api {
                Api::PagerDuty => (
                    StatusCode::ACCEPTED,
                    axum::Json(serde_json::json!({"status":"success","message":"Event processed"})),
                )
                    .into_response(),
                _ => (StatusCode::OK, "ok").into_response(),
            }
        }
        Err(e) => {
            g.violations.push(e.clone());
            (StatusCode::BAD_REQUEST, e).into_response()
        }
    }
}

fn chars(v: &Value) -> usize {
    v.as_str().map(|s| s.chars().count()).unwrap_or(0)
}

/// No `<!channel>`, `<!here>`, `<@U…>`, `<#C…>` or `<http…|…>`: Slack only parses these inside
/// angle brackets, so a text without a raw `<` cannot mention or link.
fn slack_text_ok(path: &str, t: &Value, max: usize) -> Result<(), String> {
    let s = t.as_str().ok_or(format!("{path} must be a string"))?;
    if s.chars().count() > max {
        return Err(format!(
            "{path} is {} characters, over Slack's {max}",
            s.chars().count()
        ));
    }
    if s.contains('<') || s.contains('>') {
        return Err(format!(
            "{path} holds an unescaped < or >: {}",
            &s[..s.len().min(80)]
        ));
    }
    Ok(())
}

/// Slack incoming webhook with Block Kit (https://api.slack.com/reference/block-kit/blocks).
pub fn validate_slack(v: &Value) -> Result<(), String> {
    let o = v.as_object().ok_or("message must be an object")?;
    if o.get("text").is_none() && o.get("blocks").is_none() && o.get("attachments").is_none() {
        return Err("message needs text, blocks or attachments".into());
    }
    if let Some(t) = o.get("text") {
        slack_text_ok("text", t, 40_000)?;
    }
    let mut blocks = Vec::new();
    if let Some(b) = o.get("blocks") {
        blocks.extend(b.as_array().ok_or("blocks must be an array")?.iter());
    }
    if let Some(a) = o.get("attachments") {
        for att in a.as_array().ok_or("attachments must be an array")? {
            if let Some(c) = att.get("color") {
                let c = c.as_str().ok_or("attachment color must be a string")?;
                let hex = c.starts_with('#') && c.len() == 7;
                if !hex && !["good", "warning", "danger"].contains(&c) {
                    return Err(format!("bad attachment color {c}"));
                }
            }
            if let Some(b) = att.get("blocks") {
                blocks.extend(
                    b.as_array()
                        .ok_or("attachment blocks must be an array")?
                        .iter(),
                );
            }
        }
    }
    if blocks.len() > 50 {
        return Err(format!("{} blocks, over Slack's 50", blocks.len()));
    }
    for (i, b) in blocks.iter().enumerate() {
        let kind = b
            .get("type")
            .and_then(Value::as_str)
            .ok_or(format!("block {i} has no type"))?;
        match kind {
            "header" => {
                let t = b.get("text").ok_or(format!("header {i} has no text"))?;
                if t.get("type").and_then(Value::as_str) != Some("plain_text") {
                    return Err(format!("header {i} text must be plain_text"));
                }
                slack_text_ok(&format!("header {i}"), &t["text"], 150)?;
            }
            "section" => {
                if b.get("text").is_none() && b.get("fields").is_none() {
                    return Err(format!("section {i} needs text or fields"));
                }
                if let Some(t) = b.get("text") {
                    let tt = t.get("type").and_then(Value::as_str);
                    if tt != Some("mrkdwn") && tt != Some("plain_text") {
                        return Err(format!("section {i} text type {tt:?}"));
                    }
                    slack_text_ok(&format!("section {i} text"), &t["text"], 3000)?;
                }
                if let Some(f) = b.get("fields") {
                    let f = f.as_array().ok_or("fields must be an array")?;
                    if f.len() > 10 {
                        return Err(format!("section {i} has {} fields, over 10", f.len()));
                    }
                    for (j, field) in f.iter().enumerate() {
                        slack_text_ok(&format!("section {i} field {j}"), &field["text"], 2000)?;
                    }
                }
            }
            "context" => {
                let e = b
                    .get("elements")
                    .and_then(Value::as_array)
                    .ok_or(format!("context {i} needs elements"))?;
                if e.len() > 10 {
                    return Err(format!("context {i} has over 10 elements"));
                }
                for el in e {
                    slack_text_ok(&format!("context {i}"), &el["text"], 3000)?;
                }
            }
            "divider" => {}
            other => return Err(format!("unexpected block type {other}")),
        }
    }
    let _ = chars;
    Ok(())
}

/// PagerDuty Events API v2 (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/).
pub fn validate_pagerduty(v: &Value) -> Result<(), String> {
    let o = v.as_object().ok_or("event must be an object")?;
    let rk = o
        .get("routing_key")
        .and_then(Value::as_str)
        .ok_or("routing_key (string) is required")?;
    if rk.len() != 32 {
        return Err(format!(
            "routing_key must be 32 characters, got {}",
            rk.len()
        ));
    }
    let action = o
        .get("event_action")
        .and_then(Value::as_str)
        .ok_or("event_action is required")?;
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        return Err(format!("bad event_action {action}"));
    }
    if let Some(d) = o.get("dedup_key") {
        let d = d.as_str().ok_or("dedup_key must be a string")?;
        if d.is_empty() || d.len() > 255 {
            return Err("dedup_key must be 1..255 characters".into());
        }
    }
    let p = o
        .get("payload")
        .and_then(Value::as_object)
        .ok_or("payload (object) is required for trigger")?;
    let summary = p
        .get("summary")
        .and_then(Value::as_str)
        .ok_or("payload.summary (string) is required")?;
    if summary.is_empty() || summary.chars().count() > 1024 {
        return Err(format!(
            "payload.summary must be 1..1024 characters, got {}",
            summary.chars().count()
        ));
    }
    let source = p
        .get("source")
        .and_then(Value::as_str)
        .ok_or("payload.source (string) is required")?;
    if source.is_empty() {
        return Err("payload.source must not be empty".into());
    }
    let sev = p
        .get("severity")
        .and_then(Value::as_str)
        .ok_or("payload.severity (string) is required")?;
    if !["critical", "error", "warning", "info"].contains(&sev) {
        return Err(format!("bad payload.severity {sev}"));
    }
    for k in ["timestamp", "component", "group", "class"] {
        if let Some(x) = p.get(k)
            && !x.is_string()
        {
            return Err(format!("payload.{k} must be a string"));
        }
    }
    if let Some(c) = p.get("custom_details")
        && !c.is_object()
    {
        return Err("payload.custom_details must be an object here".into());
    }
    Ok(())
}

pub fn templates_dir() -> String {
    format!("{}/../../templates", env!("CARGO_MANIFEST_DIR"))
}

pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("aerie-router-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tmpfs of `size` (e.g. `256k`) mounted on `dir`, unmounted when dropped; `None` (the
/// caller skips, with `what` in the notice) when not root, which CI=true turns into a failure.
pub fn small_tmpfs(dir: &std::path::Path, size: &str, what: &str) -> Option<Tmpfs> {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !is_root {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI must run this test as root (it mounts a tmpfs)"
        );
        println!("NOTICE: not root; skipping {what}");
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs on {}", dir.display());
    Some(Tmpfs(dir.to_path_buf()))
}

/// A mounted tmpfs; lazily unmounted on drop.
pub struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Start a router from YAML on 127.0.0.1:<any port>.
pub async fn start_router(yaml: &str) -> aerie_router::server::Running {
    let cfg =
        aerie_router::config::Config::parse("test.yaml", yaml, &BTreeMap::<String, String>::new())
            .unwrap_or_else(|e| panic!("config: {e}"));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    aerie_router::server::start(cfg, Some(l)).await.unwrap()
}

pub async fn post(
    addr: SocketAddr,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value, HeaderMap) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

pub fn read_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("invalid JSON line {e}: {l}")))
        .collect()
}

pub async fn wait_lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = read_lines(path);
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} of {n} lines",
            path.display(),
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
