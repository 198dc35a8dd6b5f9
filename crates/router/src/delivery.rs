//! The contract between the worker and an output: what an output is handed (a rendered
//! message, or a batch of them), what it answers (delivered, or a typed [`DeliveryError`]),
//! and how it turns a rendered template into the body its API takes.
//!
//! The worker owns everything around delivery (dedup, rate limits, rendering, and the one
//! retry/backoff loop with its circuit breaker); an output only shapes and sends. Outputs are
//! `&mut self` and see each message's dedup identity, so an output may keep state per alert
//! identity (a Slack thread `ts`, an Opsgenie alias) between deliveries.

use std::future::Future;
use std::time::Duration;

use aerie_alert::Alert;

/// Why a delivery failed, and whether sending the same thing again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// A transient failure (network, 5xx, 408, 429, a full disk): try again, after `after`
    /// when the receiver said how long to wait (`Retry-After`), else after the worker's backoff.
    #[error("{reason}")]
    Retryable {
        after: Option<Duration>,
        reason: String,
    },
    /// The receiver refused this message for good (a 4xx other than 408/429: wrong payload or
    /// credentials): it goes to the dead-letter file at once.
    #[error("{reason}")]
    Permanent { reason: String },
}

impl DeliveryError {
    pub fn retryable(reason: impl Into<String>) -> DeliveryError {
        DeliveryError::Retryable {
            after: None,
            reason: reason.into(),
        }
    }

    pub fn permanent(reason: impl Into<String>) -> DeliveryError {
        DeliveryError::Permanent {
            reason: reason.into(),
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            DeliveryError::Retryable { reason, .. } | DeliveryError::Permanent { reason } => reason,
        }
    }
}

/// One rendered message for an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The request body (HTTP outputs) or the line without its newline (file, stdout).
    pub body: Vec<u8>,
    /// The alert's dedup identity: equal for repeats of the same alert, so an output can keep
    /// state per identity.
    pub identity: u64,
}

/// How a batching output wants its messages: up to `max_items`, and no message waits longer
/// than `max_age` for its batch to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    pub max_items: usize,
    pub max_age: Duration,
}

/// How `{{value}}` is escaped in an output's templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// For the inside of a JSON string.
    Json,
    /// Slack: mrkdwn (`& < >`), then JSON.
    Slack,
}

/// What an output may use to shape a body besides the rendered template.
pub struct BodyContext<'a> {
    pub alert: &'a Alert,
    /// The dedup identity as 16 hex digits (PagerDuty's `dedup_key`).
    pub identity_hex: &'a str,
    /// The Falco JSON of the alert (with the `aerie` object when there is a count, a digest or
    /// a summary to report): the body of outputs without a template, and their fallback.
    pub falco_json: &'a (dyn Fn() -> Vec<u8> + Sync),
}

/// A configured output, ready to send.
pub trait Output: Send {
    /// `Some` for outputs that take batches; `None` (the default) for one message at a time.
    fn batch_policy(&self) -> Option<BatchPolicy> {
        None
    }

    /// Turn the rendered template into the body this output's API takes, enforcing its limits
    /// whatever the template did. An error sends [`Output::fallback`] instead (and is counted).
    fn body(&self, rendered: &str, ctx: &BodyContext<'_>) -> Result<Vec<u8>, String>;

    /// The body when there is no template, or when the template failed: built without it,
    /// still escaped and within limits.
    fn fallback(&self, ctx: &BodyContext<'_>) -> Vec<u8>;

    /// Send one batch (one message unless [`Output::batch_policy`] says otherwise). One
    /// attempt: the worker retries.
    fn deliver(
        &mut self,
        batch: &[Message],
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;

    /// The end of a run of messages: flush buffers (and fsync per policy).
    fn flush(&mut self) -> Result<(), DeliveryError> {
        Ok(())
    }

    /// Repairs the output made to its destination since the last call (a torn file line cut
    /// off), for the metrics.
    fn take_repairs(&mut self) -> u64 {
        0
    }
}
