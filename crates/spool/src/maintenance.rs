//! Background thread: persist dirty cursors and reclaim acked segments every
//! `cursor_sync_interval`, or at once when an append hit the size limit.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::spool::{Inner, lock};

const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

pub(crate) fn start(inner: &Arc<Inner>) -> Result<JoinHandle<()>> {
    let inner = Arc::clone(inner);
    std::thread::Builder::new()
        .name("spool-maint".into())
        .spawn(move || run(&inner))
        .map_err(|e| Error::io(&std::path::PathBuf::from("spool-maint thread"), e))
}

fn run(inner: &Inner) {
    let mut last_error_log: Option<Instant> = None;
    loop {
        {
            let mut nudged = lock(&inner.maint_nudge);
            if !*nudged {
                nudged = inner
                    .maint_cv
                    .wait_timeout(nudged, inner.opts.cursor_sync_interval)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            *nudged = false;
        }
        let stopping = inner.shutdown.load(Ordering::Acquire);
        inner.reclaim_segments();
        if let Err(e) = inner.persist_cursors()
            && last_error_log.is_none_or(|t| t.elapsed() >= ERROR_LOG_EVERY)
        {
            // Acks stay in memory and are retried next round.
            tracing::warn!(error = %e, "cannot persist spool cursors; retrying");
            last_error_log = Some(Instant::now());
        }
        if stopping {
            return;
        }
    }
}
