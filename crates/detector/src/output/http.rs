//! Falco `http_output`: one JSON alert per POST, `Content-Type: application/json`, keep-alive
//! connections and a per-request timeout. Beyond Falco, failed deliveries (connection errors,
//! timeouts, 5xx, 408, 429) are retried with exponential backoff from a queue that spills to
//! disk, honouring `Retry-After`; alerts dropped beyond the disk bound, or rejected with
//! another 4xx, are counted. 401/403 are retried too: they mean a wrong or missing
//! `bearer_token` (fixed by the operator), not a bad alert, so dropping would lose alerts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aerie_http_client::{Backoff, Class, ClientOptions, TlsOptions};
use anyhow::Context as _;
use reqwest::header::{AUTHORIZATION, HeaderValue};

use tokio::sync::Notify;

use super::queue::{Pushed, SpillQueue};
use crate::config::HttpOutputConfig;
use crate::metrics::Metrics;

/// One HTTP destination with its own queue and sender task.
pub struct HttpOutput {
    url: String,
    metrics: Arc<Metrics>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    queue: Mutex<SpillQueue>,
    wake: Notify,
    stop: Notify,
    stopping: std::sync::atomic::AtomicBool,
}

enum Delivery {
    Done,
    /// The receiver refused this alert for good (4xx other than 408/429).
    Rejected(u16),
    /// Try again later: after `after` when the receiver said so (`Retry-After`), else after
    /// the current backoff.
    Retry {
        why: String,
        after: Option<Duration>,
    },
}

/// A receiver may not park us for longer than this with `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

impl HttpOutput {
    /// Open the spill file and start the sender task.
    pub fn start(url: &str, cfg: &HttpOutputConfig, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let client = build_client(cfg)?;
        let auth = bearer_header(cfg)?;
        let queue = SpillQueue::open(
            &cfg.spill_dir,
            &spill_name(url),
            cfg.queue_capacity,
            cfg.spill_max_bytes,
        )
        .map_err(|e| anyhow::anyhow!("opening spill directory {}: {e}", cfg.spill_dir.display()))?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            wake: Notify::new(),
            stop: Notify::new(),
            stopping: Default::default(),
        });
        let task = tokio::spawn(send_loop(
            url.to_owned(),
            client,
            auth,
            shared.clone(),
            metrics.clone(),
            Duration::from_millis(cfg.min_backoff_ms.max(1)),
            Duration::from_millis(cfg.max_backoff_ms.max(cfg.min_backoff_ms).max(1)),
        ));
        Ok(HttpOutput {
            url: url.to_owned(),
            metrics,
            shared,
            task,
        })
    }

    /// Queue one alert for delivery.
    pub fn push(&self, line: &str) {
        let pushed = lock(&self.shared.queue).push(line.to_owned());
        match pushed {
            Ok(Pushed::Memory) | Ok(Pushed::Disk) => {}
            Ok(Pushed::Dropped) => {
                tracing::warn!("alert for {} dropped: spill file is full", self.url);
                self.metrics_drop("spill_full");
            }
            Err(e) => {
                tracing::warn!("alert for {} dropped: spill file: {e}", self.url);
                self.metrics_drop("spill_error");
            }
        }
        self.shared.wake.notify_one();
    }

    fn metrics_drop(&self, reason: &'static str) {
        self.metrics.count_output_drop(&self.url, reason);
    }

    /// Try to deliver for up to `grace`, then persist whatever is left to the spill file.
    pub async fn shutdown(self, grace: Duration) {
        self.shared
            .stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.shared.wake.notify_one();
        let drained = tokio::time::timeout(grace, async {
            loop {
                if lock(&self.shared.queue).is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .is_ok();
        self.shared.stop.notify_one();
        self.task.abort();
        let _ = self.task.await;
        if !drained {
            match lock(&self.shared.queue).persist() {
                Ok(0) => {
                    tracing::info!("undelivered alerts for {} kept in the spill file", self.url)
                }
                Ok(n) => tracing::warn!("{n} alerts for {} lost: spill file full", self.url),
                Err(e) => tracing::warn!("persisting alerts for {}: {e}", self.url),
            }
        }
    }
}

fn lock(m: &Mutex<SpillQueue>) -> std::sync::MutexGuard<'_, SpillQueue> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A file-name-safe name for the URL's spill file.
fn spill_name(url: &str) -> String {
    let mut s: String = url
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    s.truncate(100);
    format!("http-{s}")
}

/// A client with Falco `http_output`'s connection behaviour and the configured TLS (built by
/// `aerie-http-client`, as the router's outputs are).
fn build_client(cfg: &HttpOutputConfig) -> anyhow::Result<reqwest::Client> {
    let tls = TlsOptions {
        ca_file: cfg.tls.ca_file.clone(),
        client_cert_file: cfg.tls.client_cert_file.clone(),
        client_key_file: cfg.tls.client_key_file.clone(),
        insecure: cfg.tls.insecure,
    };
    let client = aerie_http_client::build(&ClientOptions {
        owner: "http_output",
        user_agent: concat!("aerie-detector/", env!("CARGO_PKG_VERSION")),
        timeout: Duration::from_millis(cfg.timeout_ms),
        connect_timeout: Duration::from_millis(cfg.timeout_ms.min(3_000)),
        // Below aerie-router's default request_timeout (10 s), after which it closes an idle
        // keep-alive connection: reusing one just as it closes fails that POST (then retried).
        pool_idle_timeout: Some(Duration::from_secs(5)),
        pool_max_idle_per_host: Some(1),
        proxy: None,
        tls: &tls,
    })?;
    Ok(client)
}

/// `Authorization: Bearer …` from `bearer_token` or `bearer_token_file`, marked sensitive so
/// that it never shows in debug output.
fn bearer_header(cfg: &HttpOutputConfig) -> anyhow::Result<Option<HeaderValue>> {
    let token = match (&cfg.bearer_token, &cfg.bearer_token_file) {
        (Some(t), _) if !t.is_empty() => t.expose().trim().to_owned(),
        (_, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("http_output.bearer_token_file {}", path.display()))?
            .trim()
            .to_owned(),
        _ => return Ok(None),
    };
    if token.is_empty() {
        anyhow::bail!("http_output: the bearer token is empty");
    }
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        anyhow::anyhow!("http_output: the bearer token holds characters not allowed in a header")
    })?;
    v.set_sensitive(true);
    Ok(Some(v))
}

async fn send_loop(
    url: String,
    client: reqwest::Client,
    auth: Option<HeaderValue>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    min_backoff: Duration,
    max_backoff: Duration,
) {
    let mut backoff = Backoff::new(min_backoff, max_backoff);
    loop {
        let next = {
            let mut q = lock(&shared.queue);
            metrics.set_output_queued(&url, q.memory_len() as u64);
            match q.front() {
                Ok(front) => front.map(str::to_owned),
                Err(e) => {
                    tracing::warn!("reading spill file for {url}: {e}");
                    None
                }
            }
        };
        let Some(line) = next else {
            shared.wake.notified().await;
            continue;
        };
        match deliver(&client, &url, auth.as_ref(), line).await {
            Delivery::Done => {
                lock(&shared.queue).pop();
                backoff.reset();
            }
            Delivery::Rejected(status) => {
                tracing::warn!("{url} rejected an alert with HTTP {status}; dropping it");
                metrics.count_output_drop(&url, "rejected");
                lock(&shared.queue).pop();
            }
            Delivery::Retry { why, after } => {
                let wait = after.map_or_else(|| backoff.next_delay(), |a| a.min(MAX_RETRY_AFTER));
                tracing::debug!("delivery to {url} failed ({why}); retrying in {wait:?}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shared.stop.notified() => return,
                }
            }
        }
    }
}

async fn deliver(
    client: &reqwest::Client,
    url: &str,
    auth: Option<&HeaderValue>,
    line: String,
) -> Delivery {
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(line);
    if let Some(v) = auth {
        req = req.header(AUTHORIZATION, v.clone());
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let after = aerie_http_client::retry_after(r.headers());
            // Read the body so the connection goes back to the pool.
            let _ = r.bytes().await;
            classify(url, status, after)
        }
        Err(e) => Delivery::Retry {
            why: e.to_string(),
            after: None,
        },
    }
}

/// What an HTTP status means for this alert.
fn classify(url: &str, status: u16, after: Option<Duration>) -> Delivery {
    let class = reqwest::StatusCode::from_u16(status).map_or(Class::Retryable, Class::of);
    match (class, status) {
        (Class::Delivered, _) => Delivery::Done,
        (_, 401 | 403) => {
            tracing::warn!(
                "{url} refused the alert with HTTP {status}: check http_output.bearer_token \
                 (alerts are kept and retried)"
            );
            Delivery::Retry {
                why: format!("HTTP {status}"),
                after,
            }
        }
        (Class::Refused, 400..=499) => Delivery::Rejected(status),
        _ => Delivery::Retry {
            why: format!("HTTP {status}"),
            after,
        },
    }
}
