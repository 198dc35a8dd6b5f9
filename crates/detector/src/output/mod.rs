//! Alert outputs: stdout and file JSON lines, and Falco-compatible HTTP POST with a retry queue.
//!
//! The event loop hands each alert, serialized once, to [`Outputs::send`]; a separate task
//! writes it to every destination, so slow outputs never stall event processing.

mod http;
mod queue;

pub use http::HttpOutput;
pub use queue::{Pushed, SpillQueue};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::config::{HttpOutputConfig, OutputSpec};
use crate::metrics::Metrics;

/// Alerts buffered between the event loop and the output task.
const CHANNEL_CAPACITY: usize = 4096;

/// Handle the event loop uses to emit alerts.
pub struct Outputs {
    sender: AlertSender,
    /// How long HTTP outputs may keep delivering at shutdown, in ms (set by `shutdown`).
    grace_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// A cloneable [`Outputs::send`].
#[derive(Clone)]
pub struct AlertSender {
    tx: mpsc::Sender<Arc<str>>,
    metrics: Arc<Metrics>,
}

impl AlertSender {
    pub fn send(&self, line: Arc<str>) {
        if self.tx.try_send(line).is_err() {
            self.metrics.count_output_drop("all", "output_backlog");
        }
    }

    /// As [`AlertSender::send`], but wait while the output task is behind instead of
    /// dropping: for sources that can pause, such as an audit log file. Not from async code.
    pub fn send_blocking(&self, line: Arc<str>) {
        if self.tx.blocking_send(line).is_err() {
            self.metrics.count_output_drop("all", "output_closed");
        }
    }
}

enum Sink {
    Stdout(tokio::io::Stdout),
    File { path: String, file: tokio::fs::File },
    Http(HttpOutput),
}

impl Outputs {
    /// Open every destination (creating file directories) and start the output task.
    pub async fn start(
        specs: &[OutputSpec],
        http_cfg: &HttpOutputConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let mut sinks = Vec::with_capacity(specs.len());
        for spec in specs {
            let sink = match spec {
                OutputSpec::Stdout => Sink::Stdout(tokio::io::stdout()),
                OutputSpec::File(path) => {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).with_context(|| {
                            format!("creating directory {} for output {spec}", dir.display())
                        })?;
                    }
                    let file = tokio::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .await
                        .with_context(|| format!("opening output {spec}"))?;
                    Sink::File {
                        path: spec.to_string(),
                        file,
                    }
                }
                OutputSpec::Http(url) => Sink::Http(
                    HttpOutput::start(url, http_cfg, metrics.clone())
                        .with_context(|| format!("starting output {url}"))?,
                ),
            };
            sinks.push(sink);
        }
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let grace_ms = Arc::new(AtomicU64::new(2_000));
        let task = tokio::spawn(write_loop(rx, sinks, metrics.clone(), grace_ms.clone()));
        Ok(Outputs {
            sender: AlertSender { tx, metrics },
            grace_ms,
            task,
        })
    }

    /// Queue one alert JSON line (no trailing newline). Never blocks: if the output task is
    /// this far behind, the alert is dropped and counted.
    pub fn send(&self, line: Arc<str>) {
        self.sender.send(line);
    }

    /// A handle other tasks (the k8s audit source) send alerts through. Drop every sender
    /// before [`Outputs::shutdown`], which waits for the channel to close.
    pub fn sender(&self) -> AlertSender {
        self.sender.clone()
    }

    /// Deliver what is queued, give HTTP outputs up to `grace` to drain, and persist the rest.
    pub async fn shutdown(self, grace: Duration) {
        self.grace_ms
            .store(grace.as_millis() as u64, Ordering::Relaxed);
        drop(self.sender);
        // Delivery gets `grace`; persisting what is left to disk gets a little more.
        let _ = tokio::time::timeout(grace + Duration::from_secs(5), self.task).await;
    }
}

async fn write_loop(
    mut rx: mpsc::Receiver<Arc<str>>,
    mut sinks: Vec<Sink>,
    metrics: Arc<Metrics>,
    grace_ms: Arc<AtomicU64>,
) {
    let mut buf = Vec::with_capacity(4096);
    while let Some(line) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        for sink in &mut sinks {
            match sink {
                Sink::Stdout(out) => {
                    if out.write_all(&buf).await.is_err() || out.flush().await.is_err() {
                        metrics.count_output_drop("stdout", "write_error");
                    }
                }
                Sink::File { path, file } => {
                    if let Err(e) = file.write_all(&buf).await {
                        tracing::warn!("writing alert to {path}: {e}");
                        metrics.count_output_drop(path, "write_error");
                    }
                }
                Sink::Http(h) => h.push(&line),
            }
        }
    }
    for sink in sinks {
        match sink {
            Sink::File { mut file, .. } => {
                let _ = file.flush().await;
                let _ = file.sync_data().await;
            }
            Sink::Http(h) => {
                h.shutdown(Duration::from_millis(grace_ms.load(Ordering::Relaxed)))
                    .await
            }
            Sink::Stdout(mut out) => {
                let _ = out.flush().await;
            }
        }
    }
}
