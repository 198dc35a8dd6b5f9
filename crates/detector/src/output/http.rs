//! Falco `http_output`: one JSON alert per POST, `Content-Type: application/json`, keep-alive
//! connections and a per-request timeout. Beyond Falco, failed deliveries (connection errors,
//! timeouts, 5xx, 408, 429) are retried with exponential backoff from a queue that spills to
//! disk; alerts dropped beyond the disk bound, or rejected with another 4xx, are counted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    Retry(String),
}

impl HttpOutput {
    /// Open the spill file and start the sender task.
    pub fn start(url: &str, cfg: &HttpOutputConfig, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.min(3_000)))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1)
            .user_agent(concat!("aerie-detector/", env!("CARGO_PKG_VERSION")))
            .build()?;
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

async fn send_loop(
    url: String,
    client: reqwest::Client,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    min_backoff: Duration,
    max_backoff: Duration,
) {
    let mut backoff = min_backoff;
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
        match deliver(&client, &url, line).await {
            Delivery::Done => {
                lock(&shared.queue).pop();
                backoff = min_backoff;
            }
            Delivery::Rejected(status) => {
                tracing::warn!("{url} rejected an alert with HTTP {status}; dropping it");
                metrics.count_output_drop(&url, "rejected");
                lock(&shared.queue).pop();
            }
            Delivery::Retry(why) => {
                tracing::debug!("delivery to {url} failed ({why}); retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shared.stop.notified() => return,
                }
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

async fn deliver(client: &reqwest::Client, url: &str, line: String) -> Delivery {
    let resp = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(line)
        .send()
        .await;
    match resp {
        Ok(r) => {
            let status = r.status();
            // Read the body so the connection goes back to the pool.
            let _ = r.bytes().await;
            if status.is_success() {
                Delivery::Done
            } else if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
                Delivery::Rejected(status.as_u16())
            } else {
                Delivery::Retry(format!("HTTP {status}"))
            }
        }
        Err(e) => Delivery::Retry(e.to_string()),
    }
}
