//! One output's worker: dedup → rate limit → render → deliver, for the jobs of its own queue.
//! All of its state (dedup windows, limiter digests) is local, so the hot path takes no lock.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aerie_alert::Alert;
use serde_json::Value;

use crate::config::{Config, OutputKind};
use crate::dedup::{DedupState, KeySpec, Verdict, repeated_text};
use crate::duration::format_duration;
use crate::metrics::Metrics;
use crate::outputs::{Sink, payload};
use crate::queue::{Consumer, Envelope, Job};
use crate::ratelimit::{Digest, Digests, Limiter};
use crate::render::{DedupInfo, DigestInfo, OutputInfo, TemplateContext, Templates};
use crate::routing::DEFAULT_ROUTE;

/// What workers share with ingest: configuration, metrics and the (reloadable) templates.
pub struct Core {
    pub config: Arc<Config>,
    pub metrics: Metrics,
    pub templates: RwLock<Arc<Templates>>,
}

impl Core {
    pub fn templates(&self) -> Arc<Templates> {
        match self.templates.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Dedup settings of one route (or of the default pseudo-route).
struct RouteDedup {
    key: KeySpec,
    window: Duration,
    summary: bool,
}

/// Jobs taken from the queue per batch.
const BATCH: usize = 512;

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
}

impl Worker {
    pub fn new(idx: usize, core: Arc<Core>) -> anyhow::Result<Worker> {
        let cfg = core.config.clone();
        let out = &cfg.outputs[idx];
        let sink = Sink::new(out)?;
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
            core,
        })
    }

    /// Run until the queue is closed and drained, then send what is still held.
    pub async fn run(mut self, mut consumer: Consumer) {
        let mut buf = Vec::with_capacity(BATCH);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                n = consumer.recv_many(&mut buf, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    let templates = self.core.templates();
                    for job in buf.drain(..) {
                        self.process(job, &templates).await;
                    }
                    self.flush();
                }
                _ = tick.tick() => self.housekeeping(false).await,
            }
        }
        self.housekeeping(true).await;
    }

    fn route_dedup(&self, route: u16) -> &RouteDedup {
        let i = if route == DEFAULT_ROUTE {
            self.route_dedup.len() - 1
        } else {
            (route as usize).min(self.route_dedup.len() - 1)
        };
        &self.route_dedup[i]
    }

    async fn process(&mut self, job: Job, templates: &Templates) {
        let m = self.core.metrics.output(self.idx);
        let env = job.envelope;
        let rd = self.route_dedup(job.route);
        let key = rd.key.hash(&env.alert);
        let (window, summary) = (rd.window, rd.summary);
        if env.test {
            self.deliver(&env, job.route, key, 0, window, None, false, templates)
                .await;
            return;
        }
        let now = Instant::now();
        let repeated = match self.dedup.check(key, window, now) {
            Verdict::Suppress => {
                m.dedup_suppressed.fetch_add(1, Relaxed);
                if summary {
                    self.last_suppressed.insert(key, (env, job.route));
                }
                return;
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
                return;
            }
        }
        self.deliver(
            &env, job.route, key, repeated, window, None, false, templates,
        )
        .await;
    }

    /// Periodic work: send digests whose tokens returned, end dedup windows. `closing` sends
    /// every held digest regardless of the limit (shutting down must not drop them).
    async fn housekeeping(&mut self, closing: bool) {
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
                    self.deliver(
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
                }
            }
            self.flush();
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

    fn flush(&mut self) {
        if let Err(e) = self.sink.flush() {
            tracing::error!(output = %self.core.config.outputs[self.idx].name, error = %e, "flush failed");
        }
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
    ) {
        let cfg = &self.core.config;
        let out = &cfg.outputs[self.idx];
        let m = self.core.metrics.output(self.idx);
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
                .and_then(|r| match out.kind {
                    OutputKind::Slack => payload::slack(&r),
                    OutputKind::PagerDuty => {
                        payload::pagerduty(&r, out.routing_key.expose(), &key_hex, alert)
                    }
                    OutputKind::Webhook | OutputKind::File | OutputKind::Stdout => {
                        payload::json_body(&r)
                    }
                });
            match shaped {
                Ok(b) => b,
                Err(e) => {
                    m.render_errors.fetch_add(1, Relaxed);
                    tracing::warn!(output = %out.name, template = ?out.template, error = %e, "template failed; sending the fallback body");
                    match out.kind {
                        OutputKind::Slack => payload::slack_fallback(alert),
                        OutputKind::PagerDuty => {
                            payload::pagerduty_fallback(out.routing_key.expose(), &key_hex, alert)
                        }
                        _ => json_line(alert, repeated, window, digest, summary),
                    }
                }
            }
        } else {
            json_line(alert, repeated, window, digest, summary)
        };
        match self.sink.send(&body, m).await {
            Ok(()) => {
                m.delivered.fetch_add(1, Relaxed);
            }
            Err(e) => {
                m.failed.fetch_add(1, Relaxed);
                tracing::error!(output = %out.name, rule = %alert.rule, error = %e, "delivery failed");
            }
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
