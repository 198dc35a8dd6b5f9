//! Prometheus metrics, hand-rolled on atomics: the hot path only does relaxed increments.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Per-output counters: every path an alert can take is counted.
#[derive(Debug, Default)]
pub struct OutputMetrics {
    pub queued: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub retries: AtomicU64,
    pub dedup_suppressed: AtomicU64,
    pub dedup_summaries: AtomicU64,
    pub rate_limited: AtomicU64,
    pub digests: AtomicU64,
    pub below_min_priority: AtomicU64,
    pub render_errors: AtomicU64,
    pub dedup_keys: AtomicU64,
    /// Torn last lines cut off a file output (at open, or after a failed write).
    pub torn_tails: AtomicU64,
}

/// Upper bounds of the ingest latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

type Getter = fn(&OutputMetrics) -> &AtomicU64;

#[derive(Debug, Default)]
pub struct Metrics {
    pub requests_ok: AtomicU64,
    pub requests_bad: AtomicU64,
    pub requests_busy: AtomicU64,
    /// Refused by the bearer-token check (401).
    pub requests_unauthorized: AtomicU64,
    /// Not read and answered within request_timeout (408).
    pub requests_timed_out: AtomicU64,
    pub alerts_accepted: AtomicU64,
    pub alerts_rejected: AtomicU64,
    pub alerts_unmatched: AtomicU64,
    pub alerts_no_output: AtomicU64,
    pub template_reloads: AtomicU64,
    pub template_reload_errors: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
    pub outputs: Vec<(String, String, OutputMetrics)>,
}

impl Metrics {
    pub fn new(outputs: &[(String, &'static str)]) -> Metrics {
        Metrics {
            outputs: outputs
                .iter()
                .map(|(n, k)| (n.clone(), (*k).to_owned(), OutputMetrics::default()))
                .collect(),
            ..Default::default()
        }
    }

    pub fn output(&self, i: usize) -> &OutputMetrics {
        &self.outputs[i].2
    }

    pub fn observe_ingest(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| s <= b) {
            self.latency_buckets[i].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    /// Prometheus text exposition; `depth(i)` gives output i's queue depth.
    pub fn render(&self, depth: impl Fn(usize) -> usize) -> String {
        let mut s = String::with_capacity(4096);
        let counter = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let l = |a: &AtomicU64| a.load(Relaxed);
        let _ = writeln!(
            s,
            "# HELP aerie_router_requests_total Ingest HTTP requests by result.\n# TYPE aerie_router_requests_total counter"
        );
        for (result, v) in [
            ("accepted", l(&self.requests_ok)),
            ("invalid", l(&self.requests_bad)),
            ("busy", l(&self.requests_busy)),
            ("unauthorized", l(&self.requests_unauthorized)),
            ("timeout", l(&self.requests_timed_out)),
        ] {
            let _ = writeln!(s, "aerie_router_requests_total{{result=\"{result}\"}} {v}");
        }
        counter(
            &mut s,
            "aerie_router_alerts_accepted_total",
            "Alerts accepted for delivery.",
            l(&self.alerts_accepted),
        );
        counter(
            &mut s,
            "aerie_router_alerts_rejected_total",
            "Alerts refused as invalid.",
            l(&self.alerts_rejected),
        );
        counter(
            &mut s,
            "aerie_router_alerts_unmatched_total",
            "Alerts that matched no route and went to the default outputs.",
            l(&self.alerts_unmatched),
        );
        counter(
            &mut s,
            "aerie_router_alerts_without_output_total",
            "Accepted alerts that no output took (all below min_priority or no defaults).",
            l(&self.alerts_no_output),
        );
        counter(
            &mut s,
            "aerie_router_template_reloads_total",
            "Successful template reloads (SIGHUP).",
            l(&self.template_reloads),
        );
        counter(
            &mut s,
            "aerie_router_template_reload_errors_total",
            "Failed template reloads (old templates kept).",
            l(&self.template_reload_errors),
        );

        let _ = writeln!(
            s,
            "# HELP aerie_router_ingest_seconds Time from request body received to alert accepted.\n# TYPE aerie_router_ingest_seconds histogram"
        );
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += l(&self.latency_buckets[i]);
            let _ = writeln!(s, "aerie_router_ingest_seconds_bucket{{le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(
            s,
            "aerie_router_ingest_seconds_bucket{{le=\"+Inf\"}} {}",
            l(&self.latency_count)
        );
        let _ = writeln!(
            s,
            "aerie_router_ingest_seconds_sum {}",
            l(&self.latency_sum_ns) as f64 / 1e9
        );
        let _ = writeln!(
            s,
            "aerie_router_ingest_seconds_count {}",
            l(&self.latency_count)
        );

        let per_output: [(&str, &str, Getter); 12] = [
            ("queued_total", "Alerts queued for the output.", |m| {
                &m.queued
            }),
            (
                "delivered_total",
                "Messages the output accepted (alerts, digests, summaries).",
                |m| &m.delivered,
            ),
            (
                "failed_total",
                "Messages given up after the retry policy.",
                |m| &m.failed,
            ),
            ("retries_total", "Delivery retries.", |m| &m.retries),
            (
                "dedup_suppressed_total",
                "Repeats suppressed by dedup (carried as counts).",
                |m| &m.dedup_suppressed,
            ),
            (
                "dedup_summaries_total",
                "Dedup window-end summaries sent.",
                |m| &m.dedup_summaries,
            ),
            (
                "rate_limited_total",
                "Alerts held by the rate limit and folded into a digest.",
                |m| &m.rate_limited,
            ),
            ("digests_total", "Rate-limit digests sent.", |m| &m.digests),
            (
                "below_min_priority_total",
                "Alerts routed to the output but below its min_priority.",
                |m| &m.below_min_priority,
            ),
            (
                "render_errors_total",
                "Template render failures (the alert is sent as Falco JSON instead).",
                |m| &m.render_errors,
            ),
            ("dedup_keys", "Live dedup keys.", |m| &m.dedup_keys),
            (
                "torn_tails_total",
                "Torn last lines cut off a file output (kept in <path>.torn) before appending.",
                |m| &m.torn_tails,
            ),
        ];
        for (name, help, get) in per_output {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(
                s,
                "# HELP aerie_router_output_{name} {help}\n# TYPE aerie_router_output_{name} {kind}"
            );
            for (n, k, m) in &self.outputs {
                let _ = writeln!(
                    s,
                    "aerie_router_output_{name}{{output=\"{n}\",type=\"{k}\"}} {}",
                    get(m).load(Relaxed)
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP aerie_router_output_queue_depth Jobs waiting in the output's queue.\n# TYPE aerie_router_output_queue_depth gauge"
        );
        for (i, (n, k, _)) in self.outputs.iter().enumerate() {
            let _ = writeln!(
                s,
                "aerie_router_output_queue_depth{{output=\"{n}\",type=\"{k}\"}} {}",
                depth(i)
            );
        }
        s
    }
}
