//! Watches the kernel drop counters and raises Falco's "syscall event drop" internal alert
//! when the share of dropped events in a window passes the configured threshold.

use std::time::{Duration, Instant};

use aerie_alert::Alert;

use super::detector::drop_alert;
use crate::config::DropAlertConfig;
use crate::ebpf::Counters;

/// Counter totals at the start of a window.
#[derive(Clone, Copy)]
struct Snapshot {
    dropped: u64,
    seen: u64,
    reasons: [(&'static str, u64); 4],
}

pub struct DropMonitor {
    threshold: f64,
    window: Duration,
    min_interval: Duration,
    window_start: Instant,
    base: Option<Snapshot>,
    last_alert: Option<Instant>,
}

impl DropMonitor {
    pub fn new(cfg: &DropAlertConfig) -> Self {
        DropMonitor {
            threshold: cfg.threshold_ratio,
            window: Duration::from_millis(cfg.window_ms.max(1)),
            min_interval: Duration::from_millis(cfg.min_interval_ms),
            window_start: Instant::now(),
            base: None,
            last_alert: None,
        }
    }

    /// Feed the current totals; returns an alert when a window closed over the threshold.
    pub fn check(&mut self, c: &Counters, hostname: &str) -> Option<Alert> {
        self.check_at(c, hostname, Instant::now())
    }

    fn check_at(&mut self, c: &Counters, hostname: &str, now: Instant) -> Option<Alert> {
        let dropped = c.dropped();
        let seen = c.sent + c.drop_ring_full + c.drop_no_scratch;
        let reasons = c.drops_by_reason();
        let snap = Snapshot {
            dropped,
            seen,
            reasons,
        };
        let Some(base) = self.base else {
            self.base = Some(snap);
            self.window_start = now;
            return None;
        };
        if now.duration_since(self.window_start) < self.window {
            return None;
        }
        let window = now.duration_since(self.window_start);
        self.base = Some(snap);
        self.window_start = now;
        let d = dropped.saturating_sub(base.dropped);
        let total = seen.saturating_sub(base.seen).max(1);
        if d == 0 || (d as f64 / total as f64) <= self.threshold {
            return None;
        }
        if let Some(last) = self.last_alert
            && now.duration_since(last) < self.min_interval
        {
            return None;
        }
        self.last_alert = Some(now);
        let delta: Vec<(&str, u64)> = reasons
            .iter()
            .zip(base.reasons.iter())
            .map(|((r, v), (_, b))| (*r, v.saturating_sub(*b)))
            .collect();
        Some(drop_alert(hostname, d, window, &delta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(sent: u64, ring_full: u64) -> Counters {
        Counters {
            sent,
            drop_ring_full: ring_full,
            ..Counters::default()
        }
    }

    #[test]
    fn alerts_over_threshold_once_per_interval() {
        let cfg = DropAlertConfig {
            threshold_ratio: 0.01,
            window_ms: 1000,
            min_interval_ms: 5000,
        };
        let mut m = DropMonitor::new(&cfg);
        let t0 = Instant::now();
        assert!(m.check_at(&counters(0, 0), "h", t0).is_none());
        // Inside the window: nothing yet.
        assert!(
            m.check_at(&counters(500, 50), "h", t0 + Duration::from_millis(500))
                .is_none()
        );
        let a = m
            .check_at(&counters(1000, 100), "h", t0 + Duration::from_secs(1))
            .expect("10% dropped");
        assert_eq!(a.rule, "Falco internal: syscall event drop");
        assert_eq!(a.output_fields["n_drops"], serde_json::json!(100));
        assert_eq!(a.output_fields["n_drops_ring_full"], serde_json::json!(100));
        // Still dropping a second later, but within min_interval: quiet.
        assert!(
            m.check_at(&counters(2000, 200), "h", t0 + Duration::from_secs(2))
                .is_none()
        );
        // Below the threshold: quiet even after the interval.
        assert!(
            m.check_at(&counters(100_000, 201), "h", t0 + Duration::from_secs(10))
                .is_none()
        );
        assert!(
            m.check_at(&counters(100_100, 260), "h", t0 + Duration::from_secs(11))
                .is_some()
        );
    }
}
