//! One output's worker: dedup → rate limit → render → deliver, for the jobs of its own queue.
//! All of its state (dedup windows, limiter digests) is local, so the hot path takes no lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use aerie_alert::Alert;
use serde_json::Value;

use crate::dedup::{DedupState, KeySpec, Verdict, repeated_text};
use crate::delivery::{BodyContext, DeliveryError, Message, Output};
use crate::durable::{Breaker, now_ms};
use crate::duration::format_duration;
use crate::outputs::Sink;
use crate::outputs::common::OpenContext;
use crate::queue::{Consumer, Envelope, Job};
use crate::ratelimit::{Digest, Digests, Limiter};
use crate::render::{DedupInfo, DigestInfo, OutputInfo, TemplateContext, Templates};
use crate::routing::DEFAULT_ROUTE;
pub use crate::shared::Core;
use aerie_http_client::Backoff;

/// Dedup settings of one route (or of the default pseudo-route).
struct RouteDedup {
    key: KeySpec,
    window: Duration,
    summary: bool,
}

/// Jobs taken from the queue per batch.
const BATCH: usize = 512;

/// Consecutive failed deliveries (each a round of `retry.max_attempts` attempts) that open the
/// breaker.
const BREAKER_THRESHOLD: u32 = 3;

/// What became of one job.
enum Step {
    /// Delivered, suppressed by dedup, or otherwise finished: ack it.
    Done,
    /// Held in the rate-limit digest with this limiter key: ack when the digest is sent.
    Held(u64),
    /// Undeliverable past the output's max age (or refused for good): dead-letter it.
    Failed(String),
    /// Shutting down while retrying: leave it in the queue for the next start.
    Deferred,
}

/// Result of one delivery (with retries when the queue is durable).
enum Outcome {
    Delivered,
    Failed(String),
    Deferred,
}

pub struct Worker {
    idx: usize,
    core: Arc<Core>,
    sink: Sink,
    dedup: DedupState,
    /// Per route index; the last entry is the default pseudo-route.
    route_dedup: Vec<RouteDedup>,
    limiter: Option<Limiter>,
    digests: Digests,
    /// Last suppressed alert per key, kept only for routes that send window-end summaries.
    last_suppressed: HashMap<u64, (Arc<Envelope>, u16)>,
    last_sweep: Instant,
    /// Queue sequence numbers delivered but not yet flushed: acked after the next flush.
    written: Vec<u64>,
    /// Queue sequence numbers held in each pending digest (durable queue).
    held: HashMap<u64, Vec<u64>>,
    /// Retry deadline (unix ms) of the job being delivered; `None` keeps the sink's own
    /// bounded retries only (memory queue).
    retry_until: Option<u64>,
    max_age: Duration,
    stop: Option<tokio::sync::watch::Receiver<bool>>,
    backoff: Backoff,
    breaker: Breaker,
}

impl Worker {
    pub fn new(idx: usize, core: Arc<Core>) -> anyhow::Result<Worker> {
        let cfg = core.config.clone();
        let out = &cfg.outputs[idx];
        let sink = out.kind.open(&OpenContext {
            name: &out.name,
            timeout: out.timeout,
            tls: &out.tls,
            proxy: out.proxy.as_deref(),
        })?;
        let global = &cfg.dedup;
        let mut route_dedup: Vec<RouteDedup> = cfg
            .routes
            .iter()
            .map(|r| {
                let d = r.dedup.as_ref().unwrap_or(global);
                RouteDedup {
                    key: KeySpec::new(&d.key),
                    window: d.window,
                    summary: d.summary,
                }
            })
            .collect();
        route_dedup.push(RouteDedup {
            key: KeySpec::new(&global.key),
            window: global.window,
            summary: global.summary,
        });
        Ok(Worker {
            idx,
            sink,
            dedup: DedupState::new(),
            route_dedup,
            limiter: out.rate_limit.as_ref().map(Limiter::new),
            digests: Digests::new(),
            last_suppressed: HashMap::new(),
            last_sweep: Instant::now(),
            written: Vec::with_capacity(BATCH),
            held: HashMap::new(),
            retry_until: None,
            max_age: cfg.queue.max_age,
            stop: None,
            backoff: Backoff::new(out.retry.initial_backoff, out.retry.max_backoff),
            breaker: Breaker::new(BREAKER_THRESHOLD, out.retry.max_backoff),
            core,
        })
    }

    /// Run until the queue is closed and drained, then send what is still held.
    pub async fn run(mut self, mut consumer: Consumer) {
        let mut buf = Vec::with_capacity(BATCH);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.stop = consumer.stop_signal();
        loop {
            tokio::select! {
                n = consumer.recv_many(&mut buf, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    if n < BATCH {
                        // Let the ingest tasks that are ready run first, then take what they
                        // queued too: one file write (and one wakeup) per batch, not per alert.
                        tokio::task::yield_now().await;
                        consumer.try_recv_more(&mut buf, BATCH - n);
                    }
                    let templates = self.core.templates();
                    for job in buf.drain(..) {
                        let record = job.record.clone();
                        self.retry_until = record
                            .as_ref()
                            .map(|r| r.appended_at_ms + self.max_age.as_millis() as u64);
                        let step = self.process(job, &templates).await;
                        let Some(rec) = record else { continue };
                        match step {
                            // Acked after the flush below, so that a file line is written first.
                            Step::Done => self.written.push(rec.seq),
                            Step::Held(dk) => self.held.entry(dk).or_default().push(rec.seq),
                            Step::Failed(reason) => self.dead_letter(&mut consumer, &rec, &reason),
                            Step::Deferred => {}
                        }
                    }
                    self.flush_and_ack(&mut consumer);
                }
                _ = tick.tick() => self.housekeeping(false, &mut consumer).await,
            }
        }
        self.housekeeping(true, &mut consumer).await;
        consumer.sync();
    }

    fn dead_letter(&self, consumer: &mut Consumer, rec: &aerie_spool::Record, reason: &str) {
        let out = &self.core.config.outputs[self.idx].name;
        // The dead-letter line carries the alert's JSON, not the queue's record header.
        let alert_only =
            crate::durable::decode_head(&rec.payload, out).map(|h| aerie_spool::Record {
                seq: rec.seq,
                appended_at_ms: rec.appended_at_ms,
                payload: rec.payload[h.json_at..].to_vec(),
            });
        match consumer.dead_letter(alert_only.as_ref().unwrap_or(rec), reason) {
            Ok(()) => {
                tracing::error!(output = %out, seq = rec.seq, %reason, "alert moved to the dead-letter file")
            }
            Err(e) => {
                tracing::error!(output = %out, seq = rec.seq, %reason, error = %e, "dead-lettering failed; the alert stays queued")
            }
        }
    }

    fn route_dedup(&self, route: u16) -> &RouteDedup {
        let i = if route == DEFAULT_ROUTE {
            self.route_dedup.len() - 1
        } else {
            (route as usize).min(self.route_dedup.len() - 1)
        };
        &self.route_dedup[i]
    }

    async fn process(&mut self, job: Job, templates: &Templates) -> Step {
        let m = self.core.metrics.output(self.idx);
        let env = job.envelope;
        let rd = self.route_dedup(job.route);
        let key = rd.key.hash(&env.alert);
        let (window, summary) = (rd.window, rd.summary);
        if env.test {
            return self
                .deliver(&env, job.route, key, 0, window, None, false, templates)
                .await
                .into();
        }
        let now = Instant::now();
        let repeated = match self.dedup.check(key, window, now) {
            Verdict::Suppress => {
                m.dedup_suppressed.fetch_add(1, Relaxed);
                if summary {
                    self.last_suppressed.insert(key, (env, job.route));
                }
                return Step::Done;
            }
            Verdict::Deliver { repeated } => repeated,
        };
        if let Some(l) = &self.limiter {
            let dk = l.digest_key(key);
            // Once a digest is pending, later alerts join it so that order is kept.
            let held = if let Some(d) = self.digests.get_mut(&dk) {
                d.add(&env, repeated);
                true
            } else if let Err(wait) = l.try_take(key) {
                let mut d = Digest::new(env.clone(), key, job.route, now + wait);
                d.add(&env, repeated);
                self.digests.insert(dk, d);
                true
            } else {
                false
            };
            if held {
                m.rate_limited.fetch_add(1, Relaxed);
                return Step::Held(dk);
            }
        }
        self.deliver(
            &env, job.route, key, repeated, window, None, false, templates,
        )
        .await
        .into()
    }

    /// Periodic work: send digests whose tokens returned, end dedup windows. `closing` sends
    /// every held digest regardless of the limit (shutting down must not drop them).
    async fn housekeeping(&mut self, closing: bool, consumer: &mut Consumer) {
        let now = Instant::now();
        if !self.digests.is_empty() {
            let templates = self.core.templates();
            let mut ready = Vec::new();
            if let Some(l) = &self.limiter {
                for (&k, d) in self.digests.iter_mut() {
                    if closing {
                        ready.push(k);
                    } else if now >= d.retry_at {
                        match l.try_take(k) {
                            Ok(()) => ready.push(k),
                            Err(wait) => d.retry_at = now + wait,
                        }
                    }
                }
            }
            for k in ready {
                if let Some(d) = self.digests.remove(&k) {
                    let info = d.info(&self.core.config.outputs[self.idx].name);
                    let window = self.route_dedup(d.route).window;
                    self.core
                        .metrics
                        .output(self.idx)
                        .digests
                        .fetch_add(1, Relaxed);
                    let seqs = self.held.remove(&k).unwrap_or_default();
                    self.retry_until =
                        (!seqs.is_empty()).then(|| now_ms() + self.max_age.as_millis() as u64);
                    let outcome = self
                        .deliver(
                            &d.first,
                            d.route,
                            d.key,
                            d.repeated,
                            window,
                            Some(&info),
                            false,
                            &templates,
                        )
                        .await;
                    match outcome {
                        Outcome::Delivered => self.written.extend(seqs),
                        Outcome::Failed(reason) => {
                            // One dead-letter line for the digest (its first alert), then the
                            // rest of the held alerts are acked: the line counts them.
                            if let Some((&first, rest)) = seqs.split_first() {
                                let rec = aerie_spool::Record {
                                    seq: first,
                                    appended_at_ms: now_ms(),
                                    payload: serde_json::to_vec(&d.first.alert).unwrap_or_default(),
                                };
                                let reason =
                                    format!("rate-limit digest of {} alerts: {reason}", d.count);
                                self.dead_letter(consumer, &rec, &reason);
                                for &s in rest {
                                    consumer.ack_seq(s);
                                }
                            }
                        }
                        Outcome::Deferred => {}
                    }
                }
            }
            self.flush_and_ack(consumer);
        }
        if closing || now.duration_since(self.last_sweep) >= Duration::from_secs(1) {
            self.last_sweep = now;
            let sweep_at = if closing {
                now + Duration::from_secs(86400 * 365)
            } else {
                now
            };
            let last = &self.last_suppressed;
            let expired = self.dedup.sweep(sweep_at, |k| last.contains_key(&k));
            if !expired.is_empty() {
                let templates = self.core.templates();
                for e in expired {
                    if let Some((env, route)) = self.last_suppressed.remove(&e.key) {
                        let window = self.route_dedup(route).window;
                        self.core
                            .metrics
                            .output(self.idx)
                            .dedup_summaries
                            .fetch_add(1, Relaxed);
                        self.retry_until = None;
                        self.deliver(
                            &env,
                            route,
                            e.key,
                            e.suppressed,
                            window,
                            None,
                            true,
                            &templates,
                        )
                        .await;
                    }
                }
                self.flush();
            }
            let dedup = &self.dedup;
            self.last_suppressed.retain(|k, _| dedup.contains(*k));
            if let Some(l) = &self.limiter {
                l.shrink();
            }
            self.core
                .metrics
                .output(self.idx)
                .dedup_keys
                .store(self.dedup.len() as u64, Relaxed);
        }
    }

    /// Flush, then acknowledge what was delivered since the last successful flush. Acked only
    /// once written: after a failed flush (a full disk) the jobs wait for the next flush that
    /// succeeds, or are delivered again after a restart.
    fn flush_and_ack(&mut self, consumer: &mut Consumer) {
        if self.flush() {
            for seq in self.written.drain(..) {
                consumer.ack_seq(seq);
            }
        }
    }

    /// End of a batch: flush the sink; false when that failed (what it holds is not written).
    fn flush(&mut self) -> bool {
        let res = self.sink.flush();
        if let Err(e) = &res {
            tracing::error!(output = %self.core.config.outputs[self.idx].name, error = %e, "flush failed; the batch is not acknowledged");
        }
        let repairs = self.sink.take_repairs();
        if repairs > 0 {
            self.core
                .metrics
                .output(self.idx)
                .torn_tails
                .fetch_add(repairs, Relaxed);
        }
        res.is_ok()
    }

    #[allow(clippy::too_many_arguments)]
    async fn deliver(
        &mut self,
        env: &Envelope,
        route: u16,
        key: u64,
        repeated: u64,
        window: Duration,
        digest: Option<&DigestInfo>,
        summary: bool,
        templates: &Templates,
    ) -> Outcome {
        let core = self.core.clone();
        let cfg = &core.config;
        let out = &cfg.outputs[self.idx];
        let m = core.metrics.output(self.idx);
        let route_name = if route == DEFAULT_ROUTE {
            "default"
        } else {
            cfg.routes
                .get(route as usize)
                .map(|r| r.name.as_str())
                .unwrap_or("default")
        };
        let key_hex = format!("{key:016x}");
        let alert = &env.alert;
        let falco_json = || json_line(alert, repeated, window, digest, summary);
        let body_ctx = BodyContext {
            alert,
            identity_hex: &key_hex,
            falco_json: &falco_json,
        };
        let body = if templates.has_template(self.idx) {
            let ctx = TemplateContext {
                alert,
                route: route_name,
                output: OutputInfo {
                    name: &out.name,
                    kind: out.kind.as_str(),
                },
                dedup: DedupInfo {
                    count: repeated,
                    window: format_duration(window),
                    text: repeated_text(repeated, window),
                    key: key_hex.clone(),
                },
                digest,
                summary,
                test: env.test,
            };
            let shaped = templates
                .render(self.idx, &ctx)
                .map_err(|e| format!("line {:?}: {}", e.line, e.reason))
                .and_then(|r| self.sink.body(&r, &body_ctx));
            match shaped {
                Ok(b) => b,
                Err(e) => {
                    m.render_errors.fetch_add(1, Relaxed);
                    tracing::warn!(output = %out.name, template = ?out.template, error = %e, "template failed; sending the fallback body");
                    self.sink.fallback(&body_ctx)
                }
            }
        } else {
            self.sink.fallback(&body_ctx)
        };
        let batch = [Message {
            body,
            identity: key,
        }];
        self.send(&batch, &alert.rule).await
    }

    /// The one retry loop of every output. A round is up to `retry.max_attempts` attempts,
    /// apart by the backoff (`initial_backoff` doubling to `max_backoff`, with jitter) or by the
    /// receiver's `Retry-After` (capped at `max_retry_after`). A permanent error ends it at once.
    /// With the memory queue a failed round fails the message; with the durable queue failed
    /// rounds are retried behind the circuit breaker, with backoff, until `max_age`.
    async fn send(&mut self, batch: &[Message], rule: &str) -> Outcome {
        let core = self.core.clone();
        let out = &core.config.outputs[self.idx];
        let m = core.metrics.output(self.idx);
        let retry = &out.retry;
        let mut between_attempts = Backoff::new(retry.initial_backoff, retry.max_backoff);
        loop {
            let wait = self.breaker.wait(Instant::now());
            if !wait.is_zero() && !self.pause(wait).await {
                return Outcome::Deferred;
            }
            let mut attempt = 1;
            let err = loop {
                let res = self.sink.deliver(batch).await;
                let repairs = self.sink.take_repairs();
                if repairs > 0 {
                    m.torn_tails.fetch_add(repairs, Relaxed);
                }
                match res {
                    Ok(()) => {
                        m.delivered.fetch_add(1, Relaxed);
                        if self.breaker.is_open() {
                            tracing::info!(output = %out.name, "output recovered; circuit closed");
                        }
                        self.breaker.success();
                        self.backoff.reset();
                        return Outcome::Delivered;
                    }
                    Err(e @ DeliveryError::Permanent { .. }) => break e,
                    Err(e) if attempt >= retry.max_attempts => break e,
                    Err(e) => {
                        let wait = match &e {
                            DeliveryError::Retryable {
                                after: Some(after), ..
                            } => (*after).min(retry.max_retry_after),
                            _ => between_attempts.next_delay(),
                        };
                        m.retries.fetch_add(1, Relaxed);
                        tracing::debug!(output = %out.name, attempt, ?wait, error = %e, "retrying delivery");
                        if !self.pause(wait).await {
                            return Outcome::Deferred;
                        }
                        attempt += 1;
                    }
                }
            };
            m.failed.fetch_add(1, Relaxed);
            let permanent = matches!(err, DeliveryError::Permanent { .. });
            let e = if permanent {
                err.reason().to_owned()
            } else {
                format!("gave up after {attempt} attempts: {}", err.reason())
            };
            let Some(until) = self.retry_until else {
                tracing::error!(output = %out.name, %rule, error = %e, "delivery failed");
                return Outcome::Failed(e);
            };
            // A 4xx other than 408/429 means the payload or credentials are wrong: sending the
            // same thing again cannot succeed.
            if permanent {
                return Outcome::Failed(e);
            }
            if now_ms() >= until {
                return Outcome::Failed(format!(
                    "not delivered within max_age {}: {e}",
                    format_duration(self.max_age)
                ));
            }
            if self.breaker.failure(Instant::now()) {
                tracing::warn!(output = %out.name, error = %e, "circuit open: output keeps failing; probing again later");
            } else {
                tracing::warn!(output = %out.name, %rule, error = %e, "delivery failed; will retry");
            }
            let delay = self.backoff.next_delay();
            if !self.pause(delay).await {
                return Outcome::Deferred;
            }
        }
    }

    /// Sleep unless shutdown is asked for first; false when stopping.
    async fn pause(&mut self, d: Duration) -> bool {
        match &mut self.stop {
            None => {
                tokio::time::sleep(d).await;
                true
            }
            Some(stop) => {
                if *stop.borrow() {
                    return false;
                }
                tokio::select! {
                    _ = tokio::time::sleep(d) => true,
                    _ = stop.changed() => false,
                }
            }
        }
    }
}

impl From<Outcome> for Step {
    fn from(o: Outcome) -> Step {
        match o {
            Outcome::Delivered => Step::Done,
            Outcome::Failed(r) => Step::Failed(r),
            Outcome::Deferred => Step::Deferred,
        }
    }
}

/// The JSON line of file/stdout outputs without a template: the Falco alert as received, plus an
/// `aerie` object when there is a dedup count, a digest or a summary to report.
pub fn json_line(
    alert: &Alert,
    repeated: u64,
    window: Duration,
    digest: Option<&DigestInfo>,
    summary: bool,
) -> Vec<u8> {
    if repeated == 0 && digest.is_none() && !summary {
        return serde_json::to_vec(alert).unwrap_or_default();
    }
    let mut v = serde_json::to_value(alert).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        let mut extra = serde_json::Map::new();
        if repeated > 0 {
            extra.insert("repeated".into(), repeated.into());
            extra.insert("window".into(), format_duration(window).into());
            extra.insert("text".into(), repeated_text(repeated, window).into());
        }
        if summary {
            extra.insert("summary".into(), true.into());
        }
        if let Some(d) = digest {
            extra.insert(
                "digest".into(),
                serde_json::to_value(d).unwrap_or(Value::Null),
            );
        }
        o.insert("aerie".into(), Value::Object(extra));
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the router's README says webhook, file and stdout outputs send without a template:
    /// the alert as decoded and encoded again, not the bytes received.
    #[test]
    fn falco_json_is_the_decoded_alert_as_the_readme_says() {
        let received = r#"{"output":"x","priority":"info","rule":"r","time":"2023-05-25T13:44:05+02:00","extra":{"k":1},"output_fields":{"b":1,"a":123456789012345678901234}}"#;
        let alert = aerie_alert::decode_alert(received.as_bytes()).unwrap();
        let line = json_line(&alert, 0, Duration::ZERO, None, false);
        let text = String::from_utf8(line).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v.get("extra").is_none(), "unknown keys are dropped: {text}");
        assert_eq!(v["priority"], "Informational");
        assert_eq!(v["time"], "2023-05-25T11:44:05.000000000Z");
        assert_eq!(v["source"], "syscall");
        assert_eq!(v["hostname"], "");
        assert_eq!(v["tags"], serde_json::json!([]));
        assert!(v["output_fields"]["a"].is_f64(), "{text}");
        assert!(
            text.find("\"a\":").unwrap() < text.find("\"b\":").unwrap(),
            "sorted: {text}"
        );
        assert!(v.get("aerie").is_none());
        // With a dedup count, the `aerie` object reports it.
        let v: Value =
            serde_json::from_slice(&json_line(&alert, 3, Duration::from_secs(600), None, false))
                .unwrap();
        assert_eq!(v["aerie"]["repeated"], 3);
    }
}
