//! Configuration.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// When appended records are fsynced before `append` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Every commit group is fsynced before its appenders return (safe default:
    /// survives power loss, not only process crashes).
    #[default]
    Always,
    /// Appends return once written to the page cache (survive a process crash,
    /// not power loss); the file is fsynced at most this often while dirty.
    /// Consumers may see records before they are fsynced.
    Interval(Duration),
    /// Never fsync explicitly (the kernel flushes eventually). Tests, tmpfs.
    Never,
}

/// Spool options; start from `Options::default()` and override fields.
#[derive(Debug, Clone)]
pub struct Options {
    /// Appends fail with [`Error::Full`] when segments on disk plus queued
    /// records would exceed this. Default 1 GiB.
    pub max_bytes: u64,
    /// Segment size at which the log rolls to a new file; space is reclaimed
    /// per segment. Clamped to `max_bytes / 4`. Default 32 MiB.
    pub segment_bytes: u64,
    /// Largest accepted payload. Default 4 MiB.
    pub max_record_bytes: usize,
    /// Memory bound on records queued for the committer but not yet written
    /// (a stalled disk); beyond it appends fail with [`Error::QueueFull`].
    /// Raised to `max_record_bytes` if smaller. Default 64 MiB.
    pub max_queued_bytes: usize,
    pub fsync: FsyncPolicy,
    /// fsyncs in flight at once under [`FsyncPolicy::Always`]. The kernel
    /// merges concurrent flushes, so a few in flight multiply durable
    /// throughput on disks with slow cache flushes. Default 4.
    pub sync_parallelism: usize,
    /// How often acks are persisted (and space reclaimed) in the background.
    /// After a crash, at most the acks of this last interval are redelivered.
    /// Default 200 ms.
    pub cursor_sync_interval: Duration,
    /// Dead-letter JSON-lines file. Default `<spool dir>/dead-letter.jsonl`.
    pub dead_letter_path: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_bytes: 1 << 30,
            segment_bytes: 32 << 20,
            max_record_bytes: 4 << 20,
            max_queued_bytes: 64 << 20,
            fsync: FsyncPolicy::Always,
            sync_parallelism: 4,
            cursor_sync_interval: Duration::from_millis(200),
            dead_letter_path: None,
        }
    }
}

impl Options {
    pub(crate) fn validated(mut self) -> Result<Options> {
        if self.max_bytes < 64 << 10 {
            return Err(Error::InvalidOption(format!(
                "max_bytes {} is below the 64 KiB minimum",
                self.max_bytes
            )));
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > crate::frame::ABSOLUTE_MAX_RECORD {
            return Err(Error::InvalidOption(format!(
                "max_record_bytes {} must be within 1..={}",
                self.max_record_bytes,
                crate::frame::ABSOLUTE_MAX_RECORD
            )));
        }
        if let FsyncPolicy::Interval(d) = self.fsync
            && d.is_zero()
        {
            return Err(Error::InvalidOption(
                "fsync interval must be above zero (use FsyncPolicy::Always)".into(),
            ));
        }
        if self.cursor_sync_interval.is_zero() {
            return Err(Error::InvalidOption(
                "cursor_sync_interval must be above zero".into(),
            ));
        }
        self.segment_bytes = self.segment_bytes.clamp(4 << 10, self.max_bytes / 4);
        self.sync_parallelism = self.sync_parallelism.clamp(1, 64);
        self.max_queued_bytes = self
            .max_queued_bytes
            .max(self.max_record_bytes + crate::frame::HEADER_LEN);
        Ok(self)
    }
}
