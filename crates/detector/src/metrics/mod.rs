//! Counters the detector exposes at `/metrics` (Prometheus text format) and `/healthz`.
//!
//! The event path publishes counts in batches (one atomic add per ring-buffer drain, not per
//! event); alerts and drops are rare enough for a mutex.

mod container;
mod server;

pub use container::ContainerMetrics;

pub use server::serve;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aerie_alert::Priority;

/// Shared metrics registry.
#[derive(Default)]
pub struct Metrics {
    events_total: AtomicU64,
    /// Kubernetes audit events received, and those refused as unreadable.
    k8s_audit_events: AtomicU64,
    k8s_audit_rejected: AtomicU64,
    /// Audit events read from audit log files, and lines of them that were not events.
    k8s_audit_file_events: AtomicU64,
    k8s_audit_bad_lines: AtomicU64,
    /// f64 bits of the last measured events/s.
    events_per_second: AtomicU64,
    processes_tracked: AtomicU64,
    rules_loaded: AtomicU64,
    ready: AtomicBool,
    /// Kernel-side drops by reason: absolute values read from the per-CPU counters.
    kernel_drops: Mutex<BTreeMap<String, u64>>,
    /// Opens and closes the kernel's path filter kept (no rule can match them): absolute.
    kernel_filtered_opens: AtomicU64,
    kernel_filtered_closes: AtomicU64,
    alerts: Mutex<BTreeMap<(String, Priority), u64>>,
    /// Alerts an output could not deliver, by output and reason.
    output_drops: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Alerts waiting in an output's retry queue, by output.
    output_queued: Mutex<BTreeMap<String, u64>>,
    /// Container metadata lookups.
    pub containers: ContainerMetrics,
}

impl Metrics {
    pub fn add_events(&self, n: u64) {
        self.events_total.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_k8s_audit_events(&self, n: u64) {
        self.k8s_audit_events.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_k8s_audit_rejected(&self) {
        self.k8s_audit_rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add_k8s_audit_file_events(&self, n: u64) {
        self.k8s_audit_file_events.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_k8s_audit_bad_line(&self) {
        self.k8s_audit_bad_lines.fetch_add(1, Ordering::Relaxed);
    }

    pub fn k8s_audit_file_events(&self) -> u64 {
        self.k8s_audit_file_events.load(Ordering::Relaxed)
    }

    pub fn k8s_audit_bad_lines(&self) -> u64 {
        self.k8s_audit_bad_lines.load(Ordering::Relaxed)
    }

    pub fn k8s_audit_events(&self) -> u64 {
        self.k8s_audit_events.load(Ordering::Relaxed)
    }

    pub fn events_total(&self) -> u64 {
        self.events_total.load(Ordering::Relaxed)
    }

    pub fn set_events_per_second(&self, rate: f64) {
        self.events_per_second
            .store(rate.to_bits(), Ordering::Relaxed);
    }

    pub fn set_processes_tracked(&self, n: u64) {
        self.processes_tracked.store(n, Ordering::Relaxed);
    }

    pub fn set_rules_loaded(&self, n: u64) {
        self.rules_loaded.store(n, Ordering::Relaxed);
    }

    /// The detector is attached and processing events.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Totals of opens and closes kept in the kernel by the path filter.
    pub fn set_kernel_filtered(&self, opens: u64, closes: u64) {
        self.kernel_filtered_opens.store(opens, Ordering::Relaxed);
        self.kernel_filtered_closes.store(closes, Ordering::Relaxed);
    }

    /// Replace the kernel drop counter for `reason` with its current total.
    pub fn set_kernel_drops(&self, reason: &str, total: u64) {
        let mut m = lock(&self.kernel_drops);
        match m.get_mut(reason) {
            Some(v) => *v = total,
            None => {
                m.insert(reason.to_owned(), total);
            }
        }
    }

    pub fn count_alert(&self, rule: &str, priority: Priority) {
        let mut m = lock(&self.alerts);
        // Avoid allocating the key for rules that already fired.
        if let Some(v) = m.get_mut(&(rule.to_owned(), priority)) {
            *v += 1;
        } else {
            m.insert((rule.to_owned(), priority), 1);
        }
    }

    pub fn alerts_for(&self, rule: &str) -> u64 {
        lock(&self.alerts)
            .iter()
            .filter(|((r, _), _)| r == rule)
            .map(|(_, v)| v)
            .sum()
    }

    pub fn count_output_drop(&self, output: &str, reason: &'static str) {
        *lock(&self.output_drops)
            .entry((output.to_owned(), reason))
            .or_insert(0) += 1;
    }

    pub fn output_drops(&self, output: &str) -> u64 {
        lock(&self.output_drops)
            .iter()
            .filter(|((o, _), _)| o == output)
            .map(|(_, v)| v)
            .sum()
    }

    pub fn set_output_queued(&self, output: &str, n: u64) {
        lock(&self.output_queued).insert(output.to_owned(), n);
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(2048);
        let _ = writeln!(
            s,
            "# HELP aerie_events_total Kernel events processed.\n# TYPE aerie_events_total counter\naerie_events_total {}",
            self.events_total()
        );
        let _ = writeln!(
            s,
            "# HELP aerie_events_per_second Events processed per second over the last measurement window.\n# TYPE aerie_events_per_second gauge\naerie_events_per_second {}",
            f64::from_bits(self.events_per_second.load(Ordering::Relaxed))
        );
        let _ = writeln!(
            s,
            "# HELP aerie_processes_tracked Processes in the process table.\n# TYPE aerie_processes_tracked gauge\naerie_processes_tracked {}",
            self.processes_tracked.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP aerie_rules_loaded Rules loaded and enabled.\n# TYPE aerie_rules_loaded gauge\naerie_rules_loaded {}",
            self.rules_loaded.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP aerie_k8s_audit_events_total Kubernetes audit events received.\n# TYPE aerie_k8s_audit_events_total counter\naerie_k8s_audit_events_total {}\n# HELP aerie_k8s_audit_rejected_total Audit webhook requests refused as unreadable.\n# TYPE aerie_k8s_audit_rejected_total counter\naerie_k8s_audit_rejected_total {}",
            self.k8s_audit_events.load(Ordering::Relaxed),
            self.k8s_audit_rejected.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP aerie_k8s_audit_file_events_total Kubernetes audit events read from audit log files.\n# TYPE aerie_k8s_audit_file_events_total counter\naerie_k8s_audit_file_events_total {}\n# HELP aerie_k8s_audit_bad_lines_total Audit log file lines skipped as not an audit event.\n# TYPE aerie_k8s_audit_bad_lines_total counter\naerie_k8s_audit_bad_lines_total {}",
            self.k8s_audit_file_events.load(Ordering::Relaxed),
            self.k8s_audit_bad_lines.load(Ordering::Relaxed)
        );
        s.push_str("# HELP aerie_kernel_drops_total Events dropped before reaching user space, by reason.\n# TYPE aerie_kernel_drops_total counter\n");
        for (reason, v) in lock(&self.kernel_drops).iter() {
            let _ = writeln!(
                s,
                "aerie_kernel_drops_total{{reason=\"{}\"}} {v}",
                escape_label(reason)
            );
        }
        let _ = writeln!(
            s,
            "# HELP aerie_kernel_filtered_total Syscalls kept in the kernel because no rule can match them (not drops).\n# TYPE aerie_kernel_filtered_total counter\naerie_kernel_filtered_total{{syscall=\"open\"}} {}\naerie_kernel_filtered_total{{syscall=\"close\"}} {}",
            self.kernel_filtered_opens.load(Ordering::Relaxed),
            self.kernel_filtered_closes.load(Ordering::Relaxed)
        );
        s.push_str("# HELP aerie_alerts_total Alerts raised, by rule and priority.\n# TYPE aerie_alerts_total counter\n");
        for ((rule, prio), v) in lock(&self.alerts).iter() {
            let _ = writeln!(
                s,
                "aerie_alerts_total{{rule=\"{}\",priority=\"{}\"}} {v}",
                escape_label(rule),
                prio.as_lower_str()
            );
        }
        s.push_str("# HELP aerie_alerts_dropped_total Alerts an output could not deliver, by output and reason.\n# TYPE aerie_alerts_dropped_total counter\n");
        for ((out, reason), v) in lock(&self.output_drops).iter() {
            let _ = writeln!(
                s,
                "aerie_alerts_dropped_total{{output=\"{}\",reason=\"{reason}\"}} {v}",
                escape_label(out)
            );
        }
        s.push_str("# HELP aerie_output_queued Alerts waiting in an output's retry queue.\n# TYPE aerie_output_queued gauge\n");
        for (out, v) in lock(&self.output_queued).iter() {
            let _ = writeln!(
                s,
                "aerie_output_queued{{output=\"{}\"}} {v}",
                escape_label(out)
            );
        }
        self.containers.render(&mut s);
        s
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a counter map cannot leave it inconsistent: keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Label values escape backslash, double quote and newline (exposition format rules).
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_escaped_labels() {
        let m = Metrics::default();
        m.add_events(5);
        m.add_events(2);
        m.set_kernel_drops("ringbuf_full", 3);
        m.set_kernel_drops("ringbuf_full", 4);
        m.count_alert("Read \"sensitive\" file", Priority::Warning);
        m.count_alert("Read \"sensitive\" file", Priority::Warning);
        m.count_output_drop("http://127.0.0.1:1/", "disk_full");
        m.set_kernel_filtered(10, 9);
        let text = m.render();
        assert!(
            text.contains("aerie_kernel_filtered_total{syscall=\"open\"} 10\n"),
            "{text}"
        );
        assert!(
            text.contains("aerie_kernel_filtered_total{syscall=\"close\"} 9\n"),
            "{text}"
        );
        assert!(text.contains("aerie_events_total 7\n"), "{text}");
        assert!(text.contains("aerie_kernel_drops_total{reason=\"ringbuf_full\"} 4\n"));
        assert!(text.contains(
            "aerie_alerts_total{rule=\"Read \\\"sensitive\\\" file\",priority=\"warning\"} 2\n"
        ));
        assert!(text.contains(
            "aerie_alerts_dropped_total{output=\"http://127.0.0.1:1/\",reason=\"disk_full\"} 1\n"
        ));
        assert_eq!(m.alerts_for("Read \"sensitive\" file"), 2);
    }
}
