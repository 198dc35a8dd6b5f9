//! The spool handle: open/recovery, appends, consumers, reclaim, metrics.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::task::Waker;
use std::thread::JoinHandle;

use crate::commit::{self, Pending};
use crate::cursor::{self, Consumer, CursorState};
use crate::error::{Error, IoContext, Result};
use crate::frame::HEADER_LEN;
use crate::group::{AppendFuture, Group, Ticket};
use crate::metrics::{ConsumerMetrics, Counters, Metrics};
use crate::options::Options;
use crate::reader::Reader;
use crate::segment::{self, SegMeta};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The durable watermark: everything before it may be read by consumers.
#[derive(Debug)]
pub(crate) struct Tail {
    /// Segment holding the newest published record.
    pub seg_base: u64,
    /// End offset of published data in that segment.
    pub end: u64,
    /// One past the newest published sequence number.
    pub next_seq: u64,
    pub wakers: Vec<Waker>,
}

/// State shared by the handle, readers and the background threads.
pub(crate) struct Inner {
    pub dir: PathBuf,
    pub seg_dir: PathBuf,
    pub consumer_dir: PathBuf,
    pub dead_letter_path: PathBuf,
    pub opts: Options,
    /// Appenders → committer.
    pub queue: Mutex<Pending>,
    pub queue_cv: Condvar,
    /// Bytes on disk plus bytes queued: what the size limit is checked against.
    pub reserved: AtomicU64,
    pub on_disk: AtomicU64,
    /// Oldest first; the last one is the active segment.
    pub segments: RwLock<Vec<SegMeta>>,
    pub tail: Mutex<Tail>,
    pub tail_cv: Condvar,
    pub consumers: Mutex<BTreeMap<String, Arc<Consumer>>>,
    pub counters: Counters,
    pub shutdown: AtomicBool,
    /// Set after a failed fsync; details in `poison`.
    pub poisoned: AtomicBool,
    pub poison: Mutex<Option<Error>>,
    /// Wakes the maintenance thread early (space needed, shutdown).
    pub maint_nudge: Mutex<bool>,
    pub maint_cv: Condvar,
    pub dead_letter: Mutex<Option<File>>,
    _lock: File,
}

impl Inner {
    pub fn nudge_maintenance(&self) {
        *lock(&self.maint_nudge) = true;
        self.maint_cv.notify_one();
    }

    pub fn poison_error(&self) -> Error {
        lock(&self.poison).clone().unwrap_or(Error::Closed)
    }

    /// Queue frames for the committer and return the ticket to wait on.
    fn enqueue<B: AsRef<[u8]>>(&self, payloads: &[B]) -> Result<Ticket> {
        let max = self.opts.max_record_bytes;
        let mut bytes = 0u64;
        for p in payloads {
            let len = p.as_ref().len();
            if len > max {
                return Err(Error::RecordTooLarge { len, max });
            }
            bytes += (HEADER_LEN + len) as u64;
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(self.poison_error());
        }
        self.reserve(bytes)?;
        let mut q = lock(&self.queue);
        if q.closed {
            drop(q);
            self.reserved.fetch_sub(bytes, Ordering::AcqRel);
            return Err(Error::Closed);
        }
        let queued = q.buf.len() as u64;
        let limit = self.opts.max_queued_bytes as u64;
        // An empty queue takes any batch, so one oversized batch cannot be
        // refused forever; memory stays bounded by limit + one batch.
        if queued > 0 && queued + bytes > limit {
            drop(q);
            self.reserved.fetch_sub(bytes, Ordering::AcqRel);
            self.counters
                .full_rejections
                .fetch_add(1, Ordering::Relaxed);
            return Err(Error::QueueFull { queued, limit });
        }
        let was_empty = q.count == 0;
        for p in payloads {
            crate::frame::push_unsealed(&mut q.buf, p.as_ref());
        }
        let ticket = Ticket {
            group: Arc::clone(&q.group),
            index: q.count,
            count: payloads.len() as u64,
        };
        q.count += payloads.len() as u64;
        drop(q);
        if was_empty {
            self.queue_cv.notify_one();
        }
        Ok(ticket)
    }

    /// Account `bytes` against the size limit, or fail with [`Error::Full`].
    fn reserve(&self, bytes: u64) -> Result<()> {
        let limit = self.opts.max_bytes;
        let mut used = self.reserved.load(Ordering::Acquire);
        loop {
            if used + bytes > limit {
                self.counters
                    .full_rejections
                    .fetch_add(1, Ordering::Relaxed);
                self.nudge_maintenance();
                return Err(Error::Full { used, limit });
            }
            match self.reserved.compare_exchange_weak(
                used,
                used + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    pub fn next_seq(&self) -> u64 {
        lock(&self.tail).next_seq
    }

    /// Persist every dirty cursor (best effort; failures stay dirty).
    pub fn persist_cursors(&self) -> Result<()> {
        let consumers: Vec<_> = lock(&self.consumers).values().cloned().collect();
        let mut first_err = None;
        for c in consumers {
            if let Err(e) = persist_consumer(&c, false) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Delete sealed segments whose records every consumer has acked.
    /// Returns the bytes freed.
    pub fn reclaim_segments(&self) -> u64 {
        let min_low = {
            let consumers = lock(&self.consumers);
            consumers.values().map(|c| lock(&c.state).low).min()
        };
        let Some(min_low) = min_low else {
            return 0; // no consumer yet: keep everything for the first one
        };
        let mut freed = 0;
        let mut segs = self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        while segs.len() > 1 && segs[1].base <= min_low {
            let seg = &segs[0];
            if let Err(e) = fs::remove_file(&seg.path) {
                tracing::warn!(file = ?seg.path, error = %e, "cannot delete acked spool segment");
                break;
            }
            freed += seg.len;
            self.on_disk.fetch_sub(seg.len, Ordering::AcqRel);
            self.reserved.fetch_sub(seg.len, Ordering::AcqRel);
            segs.remove(0);
        }
        if freed > 0 {
            self.counters
                .reclaimed_bytes
                .fetch_add(freed, Ordering::Relaxed);
            tracing::debug!(freed, "reclaimed acked spool segments");
        }
        freed
    }
}

/// Write a consumer's cursor file if it changed.
pub(crate) fn persist_consumer(c: &Consumer, force: bool) -> Result<()> {
    let _serialize = lock(&c.persist_lock);
    let bytes = {
        let mut st = lock(&c.state);
        if !st.dirty && !force {
            return Ok(());
        }
        st.dirty = false;
        cursor::encode(st.low, &st.acked_above)
    };
    let res = cursor::persist(&c.path, &bytes, force);
    if res.is_err() {
        lock(&c.state).dirty = true;
    }
    res
}

/// Where a new consumer starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// The oldest record still on disk (at-least-once for everything retained).
    #[default]
    Oldest,
    /// Only records appended after the consumer is created.
    Tail,
}

/// A durable, multi-consumer on-disk queue. Cheap to clone; all clones share
/// one committer. The background threads stop when the last clone and the
/// last [`Reader`] are dropped.
#[derive(Clone)]
pub struct Spool {
    pub(crate) handle: Arc<Handle>,
}

pub(crate) struct Handle {
    pub inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::Release);
        lock(&self.inner.queue).closed = true;
        self.inner.queue_cv.notify_all();
        self.inner.nudge_maintenance();
        for t in lock(&self.threads).drain(..) {
            if t.join().is_err() {
                tracing::error!("spool background thread panicked");
            }
        }
    }
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.inner().dir)
            .finish_non_exhaustive()
    }
}

impl Spool {
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.handle.inner
    }

    /// Open (creating if needed) the spool in `dir`, recovering from any crash:
    /// torn tails are truncated, every record whose append returned `Ok` is
    /// kept. Takes an exclusive lock on the directory.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Spool> {
        let opts = opts.validated()?;
        let dir = dir.as_ref().to_path_buf();
        let seg_dir = dir.join("segments");
        let consumer_dir = dir.join("consumers");
        fs::create_dir_all(&seg_dir).at(&seg_dir)?;
        fs::create_dir_all(&consumer_dir).at(&consumer_dir)?;
        if opts.fsync != crate::FsyncPolicy::Never {
            // Make the subdirectories' entries durable before anything in
            // them is acknowledged.
            segment::sync_dir(&dir)?;
        }
        let lock_path = dir.join("LOCK");
        let lock_file = File::create(&lock_path).at(&lock_path)?;
        if let Err(e) = lock_file.try_lock() {
            let source = match e {
                fs::TryLockError::Error(e) => e,
                fs::TryLockError::WouldBlock => {
                    std::io::Error::from(std::io::ErrorKind::WouldBlock)
                }
            };
            return Err(Error::Locked {
                path: dir,
                source: Arc::new(source),
            });
        }

        let mut consumers = BTreeMap::new();
        let mut max_low = 0;
        for (name, path) in cursor::list(&consumer_dir)? {
            let state = cursor::load(&path)?;
            max_low = max_low.max(state.low);
            consumers.insert(name.clone(), Arc::new(Consumer::new(name, path, state)));
        }

        let mut recovered = segment::recover(&seg_dir, opts.max_record_bytes)?;
        // Never reuse a sequence number a consumer may already have acked.
        let next_seq = recovered.next_seq.max(max_low);
        for c in consumers.values() {
            lock(&c.state).acked_above.retain(|&s| s < next_seq);
        }
        let durable = opts.fsync != crate::FsyncPolicy::Never;
        if recovered.segments.is_empty() {
            let (_, path) = segment::create(&seg_dir, next_seq, durable)?;
            recovered.segments.push(SegMeta {
                base: next_seq,
                path,
                len: segment::MAGIC_LEN,
            });
        }
        let active = recovered.segments.last().cloned().ok_or(Error::Closed)?;
        let active_file = segment::open_append(&active.path)?;
        let on_disk: u64 = recovered.segments.iter().map(|s| s.len).sum();
        if recovered.truncated_bytes > 0 {
            tracing::warn!(
                dir = ?dir,
                truncated = recovered.truncated_bytes,
                "spool recovery truncated incomplete records"
            );
        }
        tracing::info!(
            dir = ?dir, records = recovered.records, bytes = on_disk,
            segments = recovered.segments.len(), next_seq, "spool opened"
        );

        let counters = Counters::default();
        counters
            .recovered_truncated_bytes
            .store(recovered.truncated_bytes, Ordering::Relaxed);
        let dead_letter_path = opts
            .dead_letter_path
            .clone()
            .unwrap_or_else(|| dir.join("dead-letter.jsonl"));
        let inner = Arc::new(Inner {
            dir,
            seg_dir,
            consumer_dir,
            dead_letter_path,
            queue: Mutex::new(Pending::new()),
            queue_cv: Condvar::new(),
            reserved: AtomicU64::new(on_disk),
            on_disk: AtomicU64::new(on_disk),
            segments: RwLock::new(recovered.segments),
            tail: Mutex::new(Tail {
                seg_base: active.base,
                end: active.len,
                next_seq,
                wakers: Vec::new(),
            }),
            tail_cv: Condvar::new(),
            consumers: Mutex::new(consumers),
            counters,
            shutdown: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            poison: Mutex::new(None),
            maint_nudge: Mutex::new(false),
            maint_cv: Condvar::new(),
            dead_letter: Mutex::new(None),
            _lock: lock_file,
            opts,
        });
        let threads = commit::start(&inner, active, active_file, next_seq)?;
        let mut threads = threads;
        threads.push(crate::maintenance::start(&inner)?);
        Ok(Spool {
            handle: Arc::new(Handle {
                inner,
                threads: Mutex::new(threads),
            }),
        })
    }

    /// Append one record; returns its sequence number once durable.
    /// Blocks for one group commit (an fsync under the default policy); from
    /// async code use [`Spool::append_async`].
    pub fn append(&self, payload: &[u8]) -> Result<u64> {
        self.append_batch(&[payload]).map(|r| r.start)
    }

    /// Append several records atomically with respect to ordering: they get
    /// consecutive sequence numbers and become durable together.
    pub fn append_batch<B: AsRef<[u8]>>(&self, payloads: &[B]) -> Result<Range<u64>> {
        if payloads.is_empty() {
            let n = self.inner().next_seq();
            return Ok(n..n);
        }
        self.inner().enqueue(payloads)?.wait()
    }

    /// Queue one record now; the future resolves to its sequence number once
    /// durable. Never blocks the executor: the caller only takes a short lock
    /// to copy the payload into the pending group.
    pub fn append_async(&self, payload: &[u8]) -> impl Future<Output = Result<u64>> + Send + use<> {
        let fut = self.append_batch_async(&[payload]);
        async move { fut.await.map(|r| r.start) }
    }

    /// Queue several records now; see [`Spool::append_batch`].
    pub fn append_batch_async<B: AsRef<[u8]>>(&self, payloads: &[B]) -> AppendFuture {
        if payloads.is_empty() {
            return AppendFuture::new(Ok(Ticket {
                group: {
                    let g = Arc::new(Group::default());
                    g.complete(Ok(self.inner().next_seq()));
                    g
                },
                index: 0,
                count: 0,
            }));
        }
        AppendFuture::new(self.inner().enqueue(payloads))
    }

    /// Open the reader of consumer `name`, creating the consumer (durably)
    /// at [`StartAt::Oldest`] if it does not exist.
    pub fn reader(&self, name: &str) -> Result<Reader> {
        self.reader_at(name, StartAt::Oldest)
    }

    /// Open the reader of consumer `name`; `start` applies only when the
    /// consumer is new. Only one reader per consumer may be open at a time.
    pub fn reader_at(&self, name: &str, start: StartAt) -> Result<Reader> {
        cursor::validate_name(name)?;
        let inner = self.inner();
        let consumer = {
            let mut consumers = lock(&inner.consumers);
            match consumers.get(name) {
                Some(c) => Arc::clone(c),
                None => {
                    let low = match start {
                        StartAt::Oldest => inner
                            .segments
                            .read()
                            .unwrap_or_else(PoisonError::into_inner)
                            .first()
                            .map_or(0, |s| s.base),
                        StartAt::Tail => inner.next_seq(),
                    };
                    let path = cursor::path_for(&inner.consumer_dir, name);
                    let c = Arc::new(Consumer::new(
                        name.to_string(),
                        path,
                        CursorState {
                            low,
                            ..CursorState::default()
                        },
                    ));
                    persist_consumer(&c, true)?;
                    consumers.insert(name.to_string(), Arc::clone(&c));
                    c
                }
            }
        };
        if consumer.reader_open.swap(true, Ordering::AcqRel) {
            return Err(Error::ConsumerBusy { name: name.into() });
        }
        Ok(Reader::new(self.clone(), consumer))
    }

    /// Names of all registered consumers (each pins the records it has not acked).
    pub fn consumers(&self) -> Vec<String> {
        lock(&self.inner().consumers).keys().cloned().collect()
    }

    /// Forget a consumer (e.g. an output removed from the configuration) so it
    /// no longer pins records. Returns false if it did not exist.
    pub fn remove_consumer(&self, name: &str) -> Result<bool> {
        cursor::validate_name(name)?;
        let inner = self.inner();
        let mut consumers = lock(&inner.consumers);
        let Some(c) = consumers.get(name) else {
            return Ok(false);
        };
        if c.reader_open.load(Ordering::Acquire) {
            return Err(Error::ConsumerBusy { name: name.into() });
        }
        let c = consumers.remove(name).ok_or(Error::Closed)?;
        drop(consumers);
        let _serialize = lock(&c.persist_lock);
        match fs::remove_file(&c.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&c.path, e)),
        }
        segment::sync_dir(&inner.consumer_dir)?;
        inner.nudge_maintenance();
        Ok(true)
    }

    /// Persist all cursors and delete segments every consumer has acked.
    /// Runs in the background every `cursor_sync_interval` and when an append
    /// hits the limit; call it to free space immediately. Returns bytes freed.
    pub fn reclaim(&self) -> Result<u64> {
        // Segments first: deleting acked records is safe whatever the cursor
        // files say, and frees the space a cursor write on a full disk needs.
        let freed = self.inner().reclaim_segments();
        self.inner().persist_cursors().map(|()| freed)
    }

    /// Directory this spool lives in.
    pub fn dir(&self) -> &Path {
        &self.inner().dir
    }

    /// Path of the dead-letter JSON-lines file.
    pub fn dead_letter_path(&self) -> &Path {
        &self.inner().dead_letter_path
    }

    /// Snapshot of counters and per-consumer depth.
    pub fn metrics(&self) -> Metrics {
        let inner = self.inner();
        let next_seq = inner.next_seq();
        let consumers = lock(&inner.consumers)
            .values()
            .map(|c| {
                let st = lock(&c.state);
                ConsumerMetrics {
                    name: c.name.clone(),
                    depth: st.depth(next_seq),
                    acked_low: st.low,
                }
            })
            .collect();
        let segments = inner
            .segments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        inner.counters.snapshot(
            inner.on_disk.load(Ordering::Acquire),
            inner.opts.max_bytes,
            segments,
            next_seq,
            consumers,
        )
    }
}
