//! Per-consumer delivery state and its file, `consumers/<name>.cursor`.
//!
//! State = a low watermark (every record below it is acked) plus the set of
//! records above it acked out of order. The file is replaced atomically
//! (write temp, fsync, rename) and carries a CRC; a missing or damaged file
//! falls back to "nothing acked", which redelivers rather than loses.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use crate::error::{Error, IoContext, Result};

const MAGIC: [u8; 8] = *b"AESPCUR1";
const SUFFIX: &str = ".cursor";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CursorState {
    /// Every record with a smaller sequence number is acked (or never existed).
    pub low: u64,
    /// Records at or above `low` acked out of order.
    pub acked_above: BTreeSet<u64>,
    /// Changed since the last successful persist.
    pub dirty: bool,
}

impl CursorState {
    pub fn is_acked(&self, seq: u64) -> bool {
        seq < self.low || self.acked_above.contains(&seq)
    }

    /// Unacked records out of `next_seq` written so far (exact while sequence
    /// numbers are dense, which they are unless recovery cut a damaged segment).
    pub fn depth(&self, next_seq: u64) -> u64 {
        next_seq
            .saturating_sub(self.low)
            .saturating_sub(self.acked_above.len() as u64)
    }
}

#[derive(Debug)]
pub(crate) struct Consumer {
    pub name: String,
    pub path: PathBuf,
    pub state: Mutex<CursorState>,
    /// One reader per consumer at a time.
    pub reader_open: AtomicBool,
    /// Serializes cursor file writes (reader sync vs background thread).
    pub persist_lock: Mutex<()>,
}

impl Consumer {
    pub fn new(name: String, path: PathBuf, state: CursorState) -> Consumer {
        Consumer {
            name,
            path,
            state: Mutex::new(state),
            reader_open: AtomicBool::new(false),
            persist_lock: Mutex::new(()),
        }
    }
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    let ok = (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConsumerName { name: name.into() })
    }
}

pub(crate) fn path_for(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{SUFFIX}"))
}

/// Names of the consumers persisted in `dir`; stale temp files are removed.
pub(crate) fn list(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        if name.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        } else if let Some(consumer) = name.strip_suffix(SUFFIX)
            && validate_name(consumer).is_ok()
        {
            out.push((consumer.to_string(), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Most acked-out-of-order records a cursor file may describe (sanity bound
/// when decoding).
const MAX_ACKED_ABOVE: u64 = 1 << 24;

/// File layout: magic, `low`, run count, runs of `(first, len)` covering
/// `acked_above`, CRC32. Runs keep the file small in the usual case of one
/// stuck record with everything after it acked.
pub(crate) fn encode(low: u64, acked_above: &BTreeSet<u64>) -> Vec<u8> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &s in acked_above {
        match runs.last_mut() {
            Some((first, len)) if *first + *len == s => *len += 1,
            _ => runs.push((s, 1)),
        }
    }
    let mut out = Vec::with_capacity(24 + runs.len() * 16);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&low.to_le_bytes());
    out.extend_from_slice(&(runs.len() as u64).to_le_bytes());
    for (first, len) in runs {
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

pub(crate) fn decode(bytes: &[u8]) -> Option<CursorState> {
    let (body, crc) = bytes.split_last_chunk::<4>()?;
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return None;
    }
    let rest = body.strip_prefix(&MAGIC)?;
    let (low, rest) = rest.split_first_chunk::<8>()?;
    let (n, mut rest) = rest.split_first_chunk::<8>()?;
    let low = u64::from_le_bytes(*low);
    let n = u64::from_le_bytes(*n);
    if rest.len() as u64 != n.checked_mul(16)? {
        return None;
    }
    let mut acked_above = BTreeSet::new();
    let mut total = 0u64;
    while let Some((first, tail)) = rest.split_first_chunk::<8>() {
        let (len, tail) = tail.split_first_chunk::<8>()?;
        let (first, len) = (u64::from_le_bytes(*first), u64::from_le_bytes(*len));
        total = total.checked_add(len)?;
        if total > MAX_ACKED_ABOVE {
            return None;
        }
        acked_above.extend(first..first.checked_add(len)?);
        rest = tail;
    }
    Some(CursorState {
        low,
        acked_above,
        dirty: false,
    })
}

/// Load a cursor file; damage is logged and treated as "nothing acked".
pub(crate) fn load(path: &Path) -> Result<CursorState> {
    let bytes = fs::read(path).at(path)?;
    Ok(decode(&bytes).unwrap_or_else(|| {
        tracing::error!(file = ?path, "damaged spool cursor; redelivering from the oldest record");
        CursorState::default()
    }))
}

/// Atomically replace the cursor file. `sync_dir` makes a new consumer's
/// registration durable; routine updates skip it (an old cursor after power
/// loss only means redelivery).
pub(crate) fn persist(path: &Path, bytes: &[u8], sync_dir: bool) -> Result<()> {
    let tmp = path.with_extension("cursor.tmp");
    let res = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_data()
    });
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    fs::rename(&tmp, path).at(path)?;
    if sync_dir && let Some(parent) = path.parent() {
        crate::segment::sync_dir(parent)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_damage() {
        let set: BTreeSet<u64> = [12, 15, 16, 17, 99]
            .into_iter()
            .chain(200..10_000)
            .collect();
        let bytes = encode(10, &set);
        // Four runs, not 9,805 entries.
        assert_eq!(bytes.len(), 8 + 8 + 8 + 4 * 16 + 4);
        let st = decode(&bytes).expect("valid");
        assert_eq!(st.low, 10);
        assert_eq!(st.acked_above, set);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(decode(&b).is_none(), "flip at {i} undetected");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_none());
    }

    #[test]
    fn names() {
        assert!(validate_name("slack-secops_1.x").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "ä", &"x".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
