//! Output sinks and the payloads they send.

pub mod file;
pub mod http;
pub mod payload;

use crate::config::{OutputConfig, OutputKind};
use crate::metrics::OutputMetrics;

/// Where one output's messages go.
pub enum Sink {
    Stdout,
    File(file::FileSink),
    Http(http::HttpSink),
}

impl Sink {
    pub fn new(cfg: &OutputConfig) -> anyhow::Result<Sink> {
        Ok(match cfg.kind {
            OutputKind::Stdout => Sink::Stdout,
            OutputKind::File => Sink::File(file::FileSink::open(cfg)?),
            OutputKind::Slack | OutputKind::PagerDuty | OutputKind::Webhook => {
                Sink::Http(http::HttpSink::new(cfg)?)
            }
        })
    }

    /// Send one message (a JSON line for file/stdout, a request body for HTTP outputs).
    pub async fn send(&mut self, body: &[u8], metrics: &OutputMetrics) -> Result<(), String> {
        match self {
            Sink::Stdout => {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                out.write_all(body)
                    .and_then(|_| out.write_all(b"\n"))
                    .map_err(|e| format!("stdout: {e}"))
            }
            Sink::File(f) => {
                let res = f
                    .write_line(body)
                    .map_err(|e| format!("{}: {e}", f.path_display()));
                let torn = f.take_torn();
                if torn > 0 {
                    metrics
                        .torn_tails
                        .fetch_add(torn, std::sync::atomic::Ordering::Relaxed);
                }
                res
            }
            Sink::Http(h) => h.send(body, metrics).await,
        }
    }

    /// End of a batch: flush buffers (and fsync per policy).
    pub fn flush(&mut self) -> Result<(), String> {
        match self {
            Sink::Stdout => {
                use std::io::Write;
                std::io::stdout()
                    .flush()
                    .map_err(|e| format!("stdout: {e}"))
            }
            Sink::File(f) => f.flush().map_err(|e| format!("{}: {e}", f.path_display())),
            Sink::Http(_) => Ok(()),
        }
    }
}
