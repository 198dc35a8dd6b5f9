//! Error type. `Clone` because one group-commit failure is reported to every
//! appender in the group.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configured size limit would be exceeded. Back off (HTTP 503 +
    /// Retry-After) until consumers ack and space is reclaimed.
    #[error("spool full: {used} of {limit} bytes in use; retry after consumers catch up")]
    Full { used: u64, limit: u64 },

    /// Too many bytes are waiting for the disk (it is stalled or too slow);
    /// bounded so that memory stays bounded. Back off like [`Error::Full`].
    #[error("spool write queue full: {queued} bytes waiting for the disk (limit {limit})")]
    QueueFull { queued: u64, limit: u64 },

    /// The filesystem reported ENOSPC/EDQUOT. Nothing acknowledged was lost;
    /// appends succeed again once space returns.
    #[error("spool disk full writing {path}: {source}")]
    DiskFull {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },

    #[error("spool I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },

    /// An fsync failed earlier; the kernel may have dropped dirty pages, so
    /// the spool refuses further appends until it is reopened (recovery
    /// re-validates every record).
    #[error("spool poisoned after a failed fsync on {path}; reopen to recover: {source}")]
    Poisoned {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },

    #[error("corrupt spool file {path} at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    #[error("record of {len} bytes exceeds max_record_bytes {max}")]
    RecordTooLarge { len: usize, max: usize },

    #[error(
        "invalid consumer name {name:?}: use 1-128 characters from [A-Za-z0-9._-], not starting with '.'"
    )]
    InvalidConsumerName { name: String },

    #[error("consumer {name:?} already has an open reader")]
    ConsumerBusy { name: String },

    #[error("consumer {name:?}: seq {seq} was not fetched by this reader")]
    NotFetched { name: String, seq: u64 },

    #[error("spool directory {path} is locked by another process: {source}")]
    Locked {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },

    #[error("invalid spool option: {0}")]
    InvalidOption(String),

    #[error("spool is shut down")]
    Closed,
}

impl Error {
    /// True for the configured limit, a full filesystem and a full write
    /// queue: the caller should apply backpressure (503 + Retry-After) and
    /// retry later.
    pub fn is_full(&self) -> bool {
        matches!(
            self,
            Error::Full { .. } | Error::DiskFull { .. } | Error::QueueFull { .. }
        )
    }

    /// Classify an I/O error on `path`: ENOSPC/EDQUOT become [`Error::DiskFull`].
    pub(crate) fn io(path: &Path, source: io::Error) -> Error {
        if is_disk_full(&source) {
            Error::DiskFull {
                path: path.to_path_buf(),
                source: Arc::new(source),
            }
        } else {
            Error::Io {
                path: path.to_path_buf(),
                source: Arc::new(source),
            }
        }
    }
}

pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// Attach the path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
