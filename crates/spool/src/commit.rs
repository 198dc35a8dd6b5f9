//! Group commit. Appenders copy frames into [`Pending`]; one committer thread
//! takes everything pending, writes it with one `write`, and hands the group
//! to a pool of syncer threads that fdatasync and then publish groups strictly
//! in order (readers never see a record that is not durable, and no group is
//! reported durable after an earlier one failed).

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result, is_disk_full};
use crate::group::Group;
use crate::options::FsyncPolicy;
use crate::segment::{self, MAGIC_LEN, SegMeta};
use crate::spool::{Inner, lock};

/// Frames queued by appenders for the next group commit.
pub(crate) struct Pending {
    /// Unsealed frames (see [`crate::frame::push_unsealed`]).
    pub buf: Vec<u8>,
    pub count: u64,
    pub group: Arc<Group>,
    /// Set at shutdown: no more appends.
    pub closed: bool,
}

impl Pending {
    pub fn new() -> Pending {
        Pending {
            buf: Vec::with_capacity(64 << 10),
            count: 0,
            group: Arc::new(Group::default()),
            closed: false,
        }
    }
}

struct Active {
    base: u64,
    path: Arc<PathBuf>,
    file: Arc<File>,
    len: u64,
}

/// A written group waiting for its fsync.
struct SyncJob {
    no: u64,
    file: Arc<File>,
    path: Arc<PathBuf>,
    group: Arc<Group>,
    first_seq: u64,
    count: u64,
    seg_base: u64,
    end: u64,
}

#[derive(Default)]
struct SyncState {
    jobs: VecDeque<SyncJob>,
    /// Jobs queued or being synced.
    in_flight: usize,
    /// Synced jobs waiting for earlier ones, by job number.
    done: BTreeMap<u64, SyncJob>,
    next_publish: u64,
    stop: bool,
}

#[derive(Default)]
struct SyncShared {
    state: Mutex<SyncState>,
    cv: Condvar,
}

/// Capacity kept by the committer's recycled group buffer.
const SPARE_CAPACITY: usize = 4 << 20;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Start the committer (and syncers under [`FsyncPolicy::Always`]).
pub(crate) fn start(
    inner: &Arc<Inner>,
    active: SegMeta,
    file: File,
    next_seq: u64,
) -> Result<Vec<JoinHandle<()>>> {
    let shared = Arc::new(SyncShared::default());
    let spawn_err = |e: std::io::Error| Error::io(&inner.dir, e);
    let mut threads = Vec::new();
    if inner.opts.fsync == FsyncPolicy::Always {
        for i in 0..inner.opts.sync_parallelism {
            let (inner, shared) = (Arc::clone(inner), Arc::clone(&shared));
            threads.push(
                std::thread::Builder::new()
                    .name(format!("spool-sync-{i}"))
                    .spawn(move || run_syncer(&inner, &shared))
                    .map_err(spawn_err)?,
            );
        }
    }
    let committer = Committer {
        inner: Arc::clone(inner),
        shared: Arc::clone(&shared),
        active: Active {
            base: active.base,
            path: Arc::new(active.path),
            file: Arc::new(file),
            len: active.len,
        },
        next_seq,
        repair_to: None,
        next_job: 0,
        last_sync: Instant::now(),
        unsynced: false,
        failing: false,
    };
    let spawned = std::thread::Builder::new()
        .name("spool-commit".into())
        .spawn(move || committer.run());
    match spawned {
        Ok(t) => threads.push(t),
        Err(e) => {
            lock(&shared.state).stop = true;
            shared.cv.notify_all();
            for t in threads {
                let _ = t.join();
            }
            return Err(spawn_err(e));
        }
    }
    Ok(threads)
}

enum Work {
    Group {
        buf: Vec<u8>,
        count: u64,
        group: Arc<Group>,
    },
    SyncDue,
    Shutdown,
}

struct Committer {
    inner: Arc<Inner>,
    shared: Arc<SyncShared>,
    active: Active,
    next_seq: u64,
    /// After a failed write whose partial bytes could not be cut off, the
    /// length to truncate back to before writing anything else.
    repair_to: Option<u64>,
    next_job: u64,
    last_sync: Instant,
    unsynced: bool,
    /// The last group failed: log the next failure quietly, the recovery loudly.
    failing: bool,
}

impl Committer {
    fn run(mut self) {
        let mut spare = Vec::with_capacity(64 << 10);
        loop {
            if self.inner.opts.fsync == FsyncPolicy::Always {
                self.wait_for_sync_slot();
            }
            match self.next_work(&mut spare) {
                Work::Group {
                    mut buf,
                    count,
                    group,
                } => {
                    self.commit(&mut buf, count, group);
                    buf.clear();
                    // Do not keep a burst-sized buffer around forever.
                    buf.shrink_to(SPARE_CAPACITY);
                    spare = buf;
                }
                Work::SyncDue => self.sync_inline(),
                Work::Shutdown => break,
            }
        }
        if self.unsynced {
            self.sync_inline();
        }
        lock(&self.shared.state).stop = true;
        self.shared.cv.notify_all();
    }

    fn wait_for_sync_slot(&self) {
        let max = self.inner.opts.sync_parallelism;
        let mut st = lock(&self.shared.state);
        while st.in_flight >= max {
            st = self
                .shared
                .cv
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn next_work(&self, spare: &mut Vec<u8>) -> Work {
        let mut q = lock(&self.inner.queue);
        loop {
            if q.count > 0 {
                let buf = std::mem::replace(&mut q.buf, std::mem::take(spare));
                let group = std::mem::replace(&mut q.group, Arc::new(Group::default()));
                let count = std::mem::take(&mut q.count);
                return Work::Group { buf, count, group };
            }
            if q.closed {
                return Work::Shutdown;
            }
            match self.inner.opts.fsync {
                FsyncPolicy::Interval(every) if self.unsynced => {
                    let left = every.saturating_sub(self.last_sync.elapsed());
                    if left.is_zero() {
                        return Work::SyncDue;
                    }
                    q = self
                        .inner
                        .queue_cv
                        .wait_timeout(q, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                _ => {
                    q = self
                        .inner
                        .queue_cv
                        .wait(q)
                        .unwrap_or_else(PoisonError::into_inner)
                }
            }
        }
    }

    /// Fail a group that never reached the file, releasing its reservation.
    fn fail(&mut self, group: &Group, bytes: usize, err: Error) {
        self.inner
            .reserved
            .fetch_sub(bytes as u64, Ordering::AcqRel);
        let counter = if err.is_full() {
            &self.inner.counters.disk_full_errors
        } else {
            &self.inner.counters.io_errors
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if self.failing {
            tracing::debug!(error = %err, "spool group commit failed");
        } else {
            tracing::warn!(error = %err, "spool group commit failed; appends fail until this clears");
            self.failing = true;
        }
        group.complete(Err(err));
    }

    fn commit(&mut self, buf: &mut [u8], count: u64, group: Arc<Group>) {
        if self.inner.poisoned.load(Ordering::Acquire) {
            return self.fail(&group, buf.len(), self.inner.poison_error());
        }
        if let Some(len) = self.repair_to {
            if let Err(e) = self.active.file.set_len(len) {
                return self.fail(&group, buf.len(), Error::io(&self.active.path, e));
            }
            self.repair_to = None;
        }
        if self.active.len >= self.inner.opts.segment_bytes
            && self.active.len > MAGIC_LEN
            && let Err(e) = self.roll()
        {
            return self.fail(&group, buf.len(), e);
        }
        crate::frame::seal(buf, self.next_seq, now_ms());
        if let Err(e) = (&*self.active.file).write_all(buf) {
            // Cut off whatever part of the group reached the file, so the next
            // group does not land behind garbage (which recovery would cut,
            // taking the acknowledged records after it along).
            if let Err(te) = self.active.file.set_len(self.active.len) {
                tracing::error!(file = ?self.active.path, error = %te, "cannot truncate failed spool write; will retry");
                self.repair_to = Some(self.active.len);
            }
            return self.fail(&group, buf.len(), Error::io(&self.active.path, e));
        }
        let written = buf.len() as u64;
        self.active.len += written;
        self.inner.on_disk.fetch_add(written, Ordering::AcqRel);
        if self.failing {
            tracing::info!("spool group commits succeed again");
            self.failing = false;
        }
        let first_seq = self.next_seq;
        self.next_seq += count;
        self.inner
            .counters
            .commit_groups
            .fetch_add(1, Ordering::Relaxed);
        let job = SyncJob {
            no: self.next_job,
            file: Arc::clone(&self.active.file),
            path: Arc::clone(&self.active.path),
            group,
            first_seq,
            count,
            seg_base: self.active.base,
            end: self.active.len,
        };
        match self.inner.opts.fsync {
            FsyncPolicy::Always => {
                self.next_job += 1;
                let mut st = lock(&self.shared.state);
                st.in_flight += 1;
                st.jobs.push_back(job);
                drop(st);
                self.shared.cv.notify_all();
            }
            FsyncPolicy::Interval(every) => {
                self.unsynced = true;
                publish(&self.inner, job);
                if self.last_sync.elapsed() >= every {
                    self.sync_inline();
                }
            }
            FsyncPolicy::Never => publish(&self.inner, job),
        }
    }

    /// Seal the active segment and start a new one at `next_seq`.
    fn roll(&mut self) -> Result<()> {
        if self.unsynced {
            self.sync_inline();
        }
        let durable = self.inner.opts.fsync != FsyncPolicy::Never;
        let (file, path) = segment::create(&self.inner.seg_dir, self.next_seq, durable)?;
        {
            let mut segs = self
                .inner
                .segments
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(last) = segs.last_mut() {
                last.len = self.active.len;
            }
            segs.push(SegMeta {
                base: self.next_seq,
                path: path.clone(),
                len: MAGIC_LEN,
            });
        }
        self.inner.on_disk.fetch_add(MAGIC_LEN, Ordering::AcqRel);
        self.inner.reserved.fetch_add(MAGIC_LEN, Ordering::AcqRel);
        self.active = Active {
            base: self.next_seq,
            path: Arc::new(path),
            file: Arc::new(file),
            len: MAGIC_LEN,
        };
        Ok(())
    }

    fn sync_inline(&mut self) {
        self.inner.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.active.file.sync_data() {
            poison(&self.inner, &self.active.path, e);
        }
        self.last_sync = Instant::now();
        self.unsynced = false;
    }
}

fn poison(inner: &Inner, path: &std::path::Path, e: std::io::Error) {
    tracing::error!(file = ?path, error = %e, "spool fsync failed; refusing appends until reopened");
    let mut p = lock(&inner.poison);
    if p.is_none() {
        *p = Some(Error::Poisoned {
            path: path.to_path_buf(),
            source: Arc::new(e),
        });
    }
    inner.poisoned.store(true, Ordering::Release);
}

/// Make a durable group visible to readers and resolve its appenders.
fn publish(inner: &Inner, job: SyncJob) {
    let wakers = {
        let mut tail = lock(&inner.tail);
        tail.seg_base = job.seg_base;
        tail.end = job.end;
        tail.next_seq = job.first_seq + job.count;
        std::mem::take(&mut tail.wakers)
    };
    inner.tail_cv.notify_all();
    for w in wakers {
        w.wake();
    }
    inner
        .counters
        .appended_records
        .fetch_add(job.count, Ordering::Relaxed);
    job.group.complete(Ok(job.first_seq));
}

fn run_syncer(inner: &Inner, shared: &SyncShared) {
    loop {
        let jobs: Vec<SyncJob> = {
            let mut st = lock(&shared.state);
            loop {
                if !st.jobs.is_empty() {
                    break st.jobs.drain(..).collect();
                }
                if st.stop {
                    return;
                }
                st = shared.cv.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
        };
        // One fdatasync per distinct file covers every job written before it.
        let mut synced: Vec<*const File> = Vec::with_capacity(2);
        for job in &jobs {
            let ptr = Arc::as_ptr(&job.file);
            if synced.contains(&ptr) {
                continue;
            }
            synced.push(ptr);
            inner.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = job.file.sync_data() {
                if is_disk_full(&e) {
                    inner
                        .counters
                        .disk_full_errors
                        .fetch_add(1, Ordering::Relaxed);
                }
                poison(inner, &job.path, e);
                break;
            }
        }
        let mut st = lock(&shared.state);
        st.in_flight -= jobs.len();
        for job in jobs {
            st.done.insert(job.no, job);
        }
        loop {
            let no = st.next_publish;
            let Some(job) = st.done.remove(&no) else {
                break;
            };
            st.next_publish += 1;
            if inner.poisoned.load(Ordering::Acquire) {
                job.group.complete(Err(inner.poison_error()));
            } else {
                publish(inner, job);
            }
        }
        drop(st);
        shared.cv.notify_all();
    }
}
