//! A consumer's reader: fetch unacked records, ack them in any order.

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::cursor::Consumer;
use crate::error::{Error, IoContext, Result};
use crate::frame::{self, Decoded, HEADER_LEN};
use crate::segment::MAGIC_LEN;
use crate::spool::{Spool, lock, persist_consumer};

/// Read-ahead per file read.
const CHUNK: u64 = 256 << 10;

/// One record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    /// Wall-clock time of the append, unix milliseconds (for max-age policies).
    pub appended_at_ms: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    seg_base: u64,
    offset: u64,
}

/// Delivery cursor of one named consumer.
///
/// - [`Reader::fetch`] hands out the next records this consumer has not
///   acked; they stay *in flight* until acked.
/// - [`Reader::ack`] (any order) / [`Reader::ack_through`] (contiguous) mark
///   records delivered. Acks are persisted in the background, on
///   [`Reader::sync`] and on drop.
/// - [`Reader::rewind`] hands the in-flight records out again (e.g. after a
///   delivery worker restarted); a reopened spool does the same implicitly.
///
/// Delivery is at-least-once: after a crash, records acked within the last
/// `cursor_sync_interval` and records in flight are delivered again.
pub struct Reader {
    spool: Spool,
    consumer: Arc<Consumer>,
    inflight: BTreeMap<u64, Pos>,
    /// One past the last sequence number read from disk.
    fetch_pos: u64,
    pos: Pos,
    file: Option<(u64, File, PathBuf)>,
    buf: Vec<u8>,
    /// File offset of `buf[0]` in the segment `pos.seg_base`.
    buf_off: u64,
    /// Readable end of the current segment and the segment after it.
    limit: u64,
    next_base: Option<u64>,
    /// `tail.next_seq` when `limit` was computed on the tail segment.
    limit_next_seq: Option<u64>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("consumer", &self.consumer.name)
            .field("fetch_pos", &self.fetch_pos)
            .field("inflight", &self.inflight.len())
            .finish_non_exhaustive()
    }
}

impl Reader {
    pub(crate) fn new(spool: Spool, consumer: Arc<Consumer>) -> Reader {
        let low = lock(&consumer.state).low;
        let seg_base = {
            let segs = spool
                .inner()
                .segments
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            segs.iter()
                .rev()
                .find(|s| s.base <= low)
                .or(segs.first())
                .map_or(0, |s| s.base)
        };
        Reader {
            spool,
            consumer,
            inflight: BTreeMap::new(),
            fetch_pos: low,
            pos: Pos {
                seg_base,
                offset: MAGIC_LEN,
            },
            file: None,
            buf: Vec::new(),
            buf_off: MAGIC_LEN,
            limit: 0,
            next_base: None,
            limit_next_seq: None,
        }
    }

    /// Consumer name.
    pub fn name(&self) -> &str {
        &self.consumer.name
    }

    /// Records fetched and not yet acked.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Records this consumer has not acked (including in-flight ones).
    pub fn depth(&self) -> u64 {
        let next = self.spool.inner().next_seq();
        lock(&self.consumer.state).depth(next)
    }

    /// Up to `max` records after the ones already handed out, skipping acked
    /// ones. Returns an empty vector when caught up (see [`Reader::readable`]
    /// and [`Reader::fetch_wait`]). Reads hit the page cache in steady state.
    pub fn fetch(&mut self, max: usize) -> Result<Vec<Record>> {
        let mut out = Vec::with_capacity(max.min(1024));
        while out.len() < max {
            let at = self.pos;
            let Some(rec) = self.next_record()? else {
                break;
            };
            self.fetch_pos = rec.seq + 1;
            if lock(&self.consumer.state).is_acked(rec.seq) {
                continue;
            }
            self.inflight.insert(rec.seq, at);
            out.push(rec);
        }
        Ok(out)
    }

    /// Like [`Reader::fetch`], but waits up to `timeout` for records to arrive.
    pub fn fetch_wait(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>> {
        let deadline = Instant::now() + timeout;
        loop {
            let recs = self.fetch(max)?;
            if !recs.is_empty() {
                return Ok(recs);
            }
            let inner = self.spool.inner();
            let mut tail = lock(&inner.tail);
            while tail.next_seq <= self.fetch_pos {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || inner.shutdown.load(Ordering::Acquire) {
                    return Ok(recs);
                }
                tail = inner
                    .tail_cv
                    .wait_timeout(tail, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
    }

    /// Async [`Reader::fetch`] that waits for at least one record (the
    /// delivery worker's loop). Returns an empty vector only when the spool is
    /// shutting down. The reads themselves are short page-cache reads.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>> {
        loop {
            let recs = self.fetch(max)?;
            if !recs.is_empty() || self.spool.inner().shutdown.load(Ordering::Acquire) {
                return Ok(recs);
            }
            self.readable().await;
        }
    }

    /// Resolves when records newer than the ones fetched may be available.
    pub fn readable(&self) -> Readable<'_> {
        Readable { reader: self }
    }

    /// Ack one fetched record (any order). Acking an already-acked record is a
    /// no-op; acking a record this reader has not fetched is an error.
    pub fn ack(&mut self, seq: u64) -> Result<()> {
        if self.inflight.remove(&seq).is_none() {
            if lock(&self.consumer.state).is_acked(seq) {
                return Ok(());
            }
            return Err(Error::NotFetched {
                name: self.consumer.name.clone(),
                seq,
            });
        }
        self.record_acks(&[seq]);
        Ok(())
    }

    /// Ack every fetched record with a sequence number `<= seq`; returns how many.
    pub fn ack_through(&mut self, seq: u64) -> usize {
        let rest = match seq.checked_add(1) {
            Some(next) => self.inflight.split_off(&next),
            None => BTreeMap::new(),
        };
        let acked: Vec<u64> = std::mem::replace(&mut self.inflight, rest)
            .into_keys()
            .collect();
        if !acked.is_empty() {
            self.record_acks(&acked);
        }
        acked.len()
    }

    fn record_acks(&mut self, seqs: &[u64]) {
        // Everything below the oldest in-flight record has been fetched and
        // acked, so the watermark moves there.
        let new_low = self
            .inflight
            .first_key_value()
            .map_or(self.fetch_pos, |(s, _)| *s);
        let mut st = lock(&self.consumer.state);
        for &s in seqs {
            if s >= new_low {
                st.acked_above.insert(s);
            }
        }
        if new_low > st.low {
            st.low = new_low;
            st.acked_above = st.acked_above.split_off(&new_low);
        }
        st.dirty = true;
    }

    /// Hand out all in-flight records again on the next fetch (delivery
    /// worker restarted, or wants to retry from the oldest unacked record).
    pub fn rewind(&mut self) {
        if let Some((&seq, &pos)) = self.inflight.first_key_value() {
            self.fetch_pos = seq;
            self.seek(pos);
            self.inflight.clear();
        }
    }

    /// Write `record` to the dead-letter file with `reason` (fsynced), then ack
    /// it. Use for records past the output's maximum age.
    pub fn dead_letter(&mut self, record: &Record, reason: &str) -> Result<()> {
        crate::deadletter::write(self.spool.inner(), &self.consumer.name, record, reason)?;
        self.ack(record.seq)
    }

    /// Persist this consumer's acks now.
    pub fn sync(&mut self) -> Result<()> {
        persist_consumer(&self.consumer, false)
    }

    fn seek(&mut self, pos: Pos) {
        if pos.seg_base != self.pos.seg_base {
            self.file = None;
            self.buf.clear();
            self.buf_off = pos.offset;
        }
        self.pos = pos;
        self.limit = 0;
    }

    /// Recompute how far the current segment may be read.
    fn refresh_limit(&mut self) {
        let inner = self.spool.inner();
        let (t_base, t_end, t_next) = {
            let t = lock(&inner.tail);
            (t.seg_base, t.end, t.next_seq)
        };
        let segs = inner
            .segments
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        self.limit_next_seq = None;
        match segs.iter().position(|s| s.base == self.pos.seg_base) {
            Some(i) if self.pos.seg_base < t_base => {
                self.limit = segs[i].len;
                self.next_base = segs.get(i + 1).map(|s| s.base);
            }
            Some(_) if self.pos.seg_base == t_base => {
                self.limit = t_end;
                self.next_base = None;
                self.limit_next_seq = Some(t_next);
            }
            Some(_) => {
                // Created but nothing published in it yet.
                self.limit = MAGIC_LEN;
                self.next_base = None;
            }
            None => {
                // Our segment was reclaimed (we were behind a stale cursor):
                // continue with the oldest segment after it.
                self.limit = 0;
                self.next_base = segs
                    .iter()
                    .find(|s| s.base > self.pos.seg_base)
                    .map(|s| s.base);
            }
        }
    }

    fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            if self.pos.offset >= self.limit {
                self.refresh_limit();
                if self.pos.offset >= self.limit {
                    if let Some(base) = self.next_base {
                        self.seek(Pos {
                            seg_base: base,
                            offset: MAGIC_LEN,
                        });
                        continue;
                    }
                    if let Some(n) = self.limit_next_seq {
                        // Caught up with everything published.
                        self.fetch_pos = self.fetch_pos.max(n);
                    }
                    return Ok(None);
                }
            }
            let start = self.pos.offset;
            if start < self.buf_off || start > self.buf_off + self.buf.len() as u64 {
                self.buf.clear();
                self.buf_off = start;
            }
            let rel = (start - self.buf_off) as usize;
            let max = self.spool.inner().opts.max_record_bytes;
            let need = match frame::decode(&self.buf[rel..], max) {
                Decoded::Frame(f) => {
                    let end = start + f.encoded_len() as u64;
                    if end > self.limit {
                        return Err(self.corrupt(start, "record runs past the durable end"));
                    }
                    let rec = Record {
                        seq: f.seq,
                        appended_at_ms: f.appended_at_ms,
                        payload: f.payload.to_vec(),
                    };
                    self.pos.offset = end;
                    return Ok(Some(rec));
                }
                Decoded::Incomplete { need } => need.unwrap_or(HEADER_LEN) as u64,
                Decoded::Corrupt(reason) => return Err(self.corrupt(start, &reason.to_string())),
            };
            if start + need > self.limit {
                return Err(self.corrupt(start, "record runs past the durable end"));
            }
            self.fill(start, start + need)?;
        }
    }

    /// Load bytes `[from, at least to)` of the current segment into `buf`.
    fn fill(&mut self, from: u64, to: u64) -> Result<()> {
        let base = self.pos.seg_base;
        if self.file.as_ref().is_none_or(|(b, _, _)| *b != base) {
            let path = crate::segment::segment_path(&self.spool.inner().seg_dir, base);
            let file = File::open(&path).at(&path)?;
            self.file = Some((base, file, path));
        }
        let Some((_, file, path)) = self.file.as_ref() else {
            return Err(Error::Closed);
        };
        // Drop consumed bytes, then read ahead up to the readable end.
        let consumed = (from - self.buf_off) as usize;
        self.buf.drain(..consumed);
        self.buf_off = from;
        let have_end = from + self.buf.len() as u64;
        let want_end = to.max(from + CHUNK).min(self.limit);
        if want_end > have_end {
            let old = self.buf.len();
            self.buf.resize(old + (want_end - have_end) as usize, 0);
            if let Err(e) = file.read_exact_at(&mut self.buf[old..], have_end) {
                self.buf.truncate(old);
                return Err(Error::io(path, e));
            }
        }
        Ok(())
    }

    fn corrupt(&self, offset: u64, reason: &str) -> Error {
        Error::Corrupt {
            path: crate::segment::segment_path(&self.spool.inner().seg_dir, self.pos.seg_base),
            offset,
            reason: reason.into(),
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Err(e) = persist_consumer(&self.consumer, false) {
            tracing::warn!(consumer = %self.consumer.name, error = %e, "cannot persist spool cursor on reader drop");
        }
        self.consumer.reader_open.store(false, Ordering::Release);
    }
}

/// Future returned by [`Reader::readable`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Readable<'a> {
    reader: &'a Reader,
}

impl Future for Readable<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inner = self.reader.spool.inner();
        let mut tail = lock(&inner.tail);
        if tail.next_seq > self.reader.fetch_pos || inner.shutdown.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if !tail.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            tail.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
