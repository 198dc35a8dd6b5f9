//! Counters and the metrics snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub appended_records: AtomicU64,
    pub commit_groups: AtomicU64,
    pub fsyncs: AtomicU64,
    pub full_rejections: AtomicU64,
    pub disk_full_errors: AtomicU64,
    pub io_errors: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub reclaimed_bytes: AtomicU64,
    pub recovered_truncated_bytes: AtomicU64,
}

impl Counters {
    pub fn snapshot(
        &self,
        bytes_on_disk: u64,
        max_bytes: u64,
        segments: usize,
        next_seq: u64,
        consumers: Vec<ConsumerMetrics>,
    ) -> Metrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Metrics {
            bytes_on_disk,
            max_bytes,
            segments,
            next_seq,
            appended_records: get(&self.appended_records),
            commit_groups: get(&self.commit_groups),
            fsyncs: get(&self.fsyncs),
            full_rejections: get(&self.full_rejections),
            disk_full_errors: get(&self.disk_full_errors),
            io_errors: get(&self.io_errors),
            dead_lettered: get(&self.dead_lettered),
            reclaimed_bytes: get(&self.reclaimed_bytes),
            recovered_truncated_bytes: get(&self.recovered_truncated_bytes),
            consumers,
        }
    }
}

/// Point-in-time metrics of a spool (counters are since open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// Bytes in segment files (acked records count until their segment is reclaimed).
    pub bytes_on_disk: u64,
    pub max_bytes: u64,
    pub segments: usize,
    /// Sequence number the next record will get.
    pub next_seq: u64,
    /// Records made durable.
    pub appended_records: u64,
    /// Group commits (one write each).
    pub commit_groups: u64,
    /// fsync/fdatasync calls on segment files.
    pub fsyncs: u64,
    /// Appends refused because of `max_bytes` ([`crate::Error::Full`]) or
    /// `max_queued_bytes` ([`crate::Error::QueueFull`]).
    pub full_rejections: u64,
    /// Group commits failed by ENOSPC/EDQUOT ([`crate::Error::DiskFull`]).
    pub disk_full_errors: u64,
    /// Group commits failed by other I/O errors.
    pub io_errors: u64,
    pub dead_lettered: u64,
    pub reclaimed_bytes: u64,
    /// Bytes cut off by crash recovery at open (torn tails).
    pub recovered_truncated_bytes: u64,
    pub consumers: Vec<ConsumerMetrics>,
}

/// Per-consumer delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMetrics {
    pub name: String,
    /// Records not yet acked by this consumer.
    pub depth: u64,
    /// Every record below this sequence number is acked.
    pub acked_low: u64,
}

impl Metrics {
    /// Append these metrics in the Prometheus text format, names prefixed
    /// with `prefix` (e.g. `aerie_router_spool`), for a `/metrics` handler.
    pub fn write_prometheus(&self, out: &mut String, prefix: &str) {
        use std::fmt::Write;
        let gauges = [
            (
                "bytes_on_disk",
                "Bytes in spool segment files.",
                self.bytes_on_disk,
            ),
            (
                "max_bytes",
                "Configured spool size limit in bytes.",
                self.max_bytes,
            ),
            ("segments", "Spool segment files.", self.segments as u64),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {prefix}_{name} {help}\n# TYPE {prefix}_{name} gauge\n{prefix}_{name} {v}"
            );
        }
        let counters = [
            (
                "appended_records_total",
                "Records made durable.",
                self.appended_records,
            ),
            (
                "commit_groups_total",
                "Group commits (one write each).",
                self.commit_groups,
            ),
            ("fsyncs_total", "fsync calls on segment files.", self.fsyncs),
            (
                "full_rejections_total",
                "Appends refused by the size or queue limit.",
                self.full_rejections,
            ),
            (
                "disk_full_errors_total",
                "Group commits failed by a full filesystem.",
                self.disk_full_errors,
            ),
            (
                "io_errors_total",
                "Group commits failed by other I/O errors.",
                self.io_errors,
            ),
            (
                "dead_lettered_total",
                "Records moved to the dead-letter file.",
                self.dead_lettered,
            ),
            (
                "reclaimed_bytes_total",
                "Bytes freed by deleting acked segments.",
                self.reclaimed_bytes,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {prefix}_{name} {help}\n# TYPE {prefix}_{name} counter\n{prefix}_{name} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP {prefix}_consumer_depth Records not yet acked by the consumer.\n# TYPE {prefix}_consumer_depth gauge"
        );
        for c in &self.consumers {
            // Consumer names are restricted to [A-Za-z0-9._-]: no label escaping needed.
            let _ = writeln!(
                out,
                "{prefix}_consumer_depth{{consumer=\"{}\"}} {}",
                c.name, c.depth
            );
        }
    }
}
