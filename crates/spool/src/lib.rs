//! Durable, crash-safe, multi-consumer on-disk queue with group commit.
//!
//! Used by the router (every accepted alert is appended before the 2xx; one
//! consumer per output) and by the detector's HTTP output (spill to disk).
//!
//! # Guarantees
//! - `append*` returns `Ok` only once the record is durable under the
//!   [`FsyncPolicy`] (default [`FsyncPolicy::Always`]: fdatasync'd). Concurrent
//!   appenders share one write and one fsync (group commit).
//! - After a crash (SIGKILL, power loss with `Always`) [`Spool::open`] recovers
//!   every record whose append returned `Ok`; torn tails are detected by
//!   length + CRC32 framing and truncated.
//! - Each named consumer has its own persistent cursor; delivery is
//!   at-least-once. Duplicates after a crash are bounded by the records in
//!   flight plus the acks of the last `cursor_sync_interval`.
//! - Past `max_bytes`, appends fail with [`Error::Full`]; a full filesystem
//!   gives [`Error::DiskFull`]. Both leave acknowledged data intact, are
//!   recognised by [`Error::is_full`] (answer 503 + Retry-After) and clear
//!   once consumers ack and segments are reclaimed (or disk space returns).
//!
//! # Example
//! ```
//! use aerie_spool::{Options, Spool};
//!
//! # fn main() -> Result<(), aerie_spool::Error> {
//! # let dir = std::env::temp_dir().join(format!("aerie-spool-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let spool = Spool::open(&dir, Options::default())?;
//! // One consumer per output; register them before accepting alerts.
//! let mut slack = spool.reader("slack")?;
//! let mut archive = spool.reader("archive")?;
//!
//! // Ingest: returns after the record is durable.
//! let seq = spool.append(br#"{"rule":"Terminal shell in container","priority":"Critical"}"#)?;
//! match spool.append_batch(&[b"{}".as_slice(), b"{}"]) {
//!     Ok(seqs) => assert_eq!(seqs.start, seq + 1),
//!     Err(e) if e.is_full() => { /* 503 + Retry-After */ }
//!     Err(e) => return Err(e),
//! }
//!
//! // A delivery worker per output, each at its own pace.
//! for rec in slack.fetch(100)? {
//!     // deliver(rec.payload) with retries ...
//!     slack.ack(rec.seq)?;
//! }
//! assert_eq!(slack.depth(), 0);
//! assert_eq!(archive.depth(), 3); // archive has not consumed yet
//! let batch = archive.fetch(2)?;
//! archive.ack_through(batch[1].seq);
//! # drop((slack, archive, spool));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
//!
//! From async code (axum handlers), [`Spool::append_async`] queues the record
//! immediately and returns a future resolved by the committer; no blocking
//! thread is needed:
//! ```
//! # use aerie_spool::{Error, Spool};
//! async fn ingest(spool: &Spool, body: &[u8]) -> Result<u64, Error> {
//!     spool.append_async(body).await
//! }
//! ```
//! A delivery worker (one tokio task per output) loops on
//! [`Reader::next_batch`], delivers with its own retries, then acks:
//! ```
//! # use aerie_spool::{Error, Reader};
//! async fn deliver_loop(mut reader: Reader) -> Result<(), Error> {
//!     loop {
//!         let batch = reader.next_batch(256).await?;
//!         if batch.is_empty() {
//!             return Ok(()); // spool shutting down
//!         }
//!         for rec in batch {
//!             // send(&rec.payload).await with backoff; past max age:
//!             // reader.dead_letter(&rec, "older than max_age")?
//!             reader.ack(rec.seq)?;
//!         }
//!     }
//! }
//! ```
//! Blocking code can use [`Reader::fetch_wait`] instead.
//!
//! # Storage
//! `DIR/segments/<first seq>.seg` log segments (frames: length, CRC32, seq,
//! append time, payload), `DIR/consumers/<name>.cursor` ack state,
//! `DIR/dead-letter.jsonl`, and `DIR/LOCK` (exclusive `flock`).

mod commit;
mod cursor;
mod deadletter;
mod error;
/// On-disk record format (public for tools and the fuzz target).
pub mod frame;
mod group;
mod maintenance;
mod metrics;
mod options;
mod reader;
mod segment;
mod spool;

pub use error::{Error, Result};
pub use group::AppendFuture;
pub use metrics::{ConsumerMetrics, Metrics};
pub use options::{FsyncPolicy, Options};
pub use reader::{Readable, Reader, Record};
pub use spool::{Spool, StartAt};
