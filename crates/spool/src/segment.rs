//! Segment files: `segments/<first-seq, 20 digits>.seg`, each starting with
//! [`SEGMENT_MAGIC`] followed by frames. Recovery validates every frame and
//! truncates a torn or garbled tail.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::frame::{self, SEGMENT_MAGIC, ScanStop};

pub(crate) const MAGIC_LEN: u64 = SEGMENT_MAGIC.len() as u64;

#[derive(Debug, Clone)]
pub(crate) struct SegMeta {
    /// Sequence number of the first record this segment may hold.
    pub base: u64,
    pub path: PathBuf,
    /// Length in bytes. Final for sealed segments; for the active segment,
    /// the length at recovery / last roll (the committer tracks it live).
    pub len: u64,
}

pub(crate) fn segment_path(seg_dir: &Path, base: u64) -> PathBuf {
    seg_dir.join(format!("{base:020}.seg"))
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segment files sorted by base sequence. Unknown files are ignored (logged).
pub(crate) fn list(seg_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(seg_dir).at(seg_dir)? {
        let entry = entry.at(seg_dir)?;
        let name = entry.file_name();
        match name.to_str().and_then(parse_name) {
            Some(base) => out.push((base, entry.path())),
            None => {
                tracing::warn!(file = ?entry.path(), "ignoring unexpected file in spool segment directory")
            }
        }
    }
    out.sort_by_key(|(b, _)| *b);
    Ok(out)
}

/// Create a new segment file holding only the magic. With `durable`, the file
/// and its directory entry are fsynced before returning, so records written
/// into it can be acknowledged.
pub(crate) fn create(seg_dir: &Path, base: u64, durable: bool) -> Result<(File, PathBuf)> {
    let path = segment_path(seg_dir, base);
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&path)
        .at(&path)?;
    // Replaces a segment torn at creation; new segments are empty anyway.
    let res = file
        .set_len(0)
        .and_then(|()| file.write_all(&SEGMENT_MAGIC))
        .and_then(|()| {
            if durable {
                file.sync_all()?;
            }
            Ok(())
        });
    if let Err(e) = res {
        drop(file);
        let _ = fs::remove_file(&path);
        return Err(Error::io(&path, e));
    }
    if durable {
        sync_dir(seg_dir)?;
    }
    Ok((file, path))
}

pub(crate) fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
        .at(path)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// What recovery found.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub segments: Vec<SegMeta>,
    /// One past the highest recovered sequence number.
    pub next_seq: u64,
    pub records: u64,
    pub truncated_bytes: u64,
}

/// Validate every segment, truncating each at its first invalid frame.
/// A torn tail on the last segment is the expected result of a crash; damage
/// inside an older segment means the disk lost fsynced data and is logged as
/// an error (the valid prefix and all later segments are kept).
pub(crate) fn recover(seg_dir: &Path, max_payload: usize) -> Result<Recovered> {
    let files = list(seg_dir)?;
    let mut segments = Vec::with_capacity(files.len());
    let mut last_seq: Option<u64> = None;
    let mut records = 0;
    let mut truncated_bytes = 0;
    let count = files.len();
    let mut buf = Vec::new();
    for (i, (base, path)) in files.into_iter().enumerate() {
        let is_last = i + 1 == count;
        buf.clear();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .at(&path)?;
        let torn_creation = (buf.len() as u64) < MAGIC_LEN && SEGMENT_MAGIC.starts_with(&buf);
        let zero_filled = is_last && buf.iter().all(|&b| b == 0);
        if torn_creation || zero_filled {
            // Crash while creating the file: nothing in it was ever acknowledged.
            tracing::warn!(file = ?path, "recreating spool segment torn at creation");
            truncated_bytes += buf.len() as u64;
            let (_, path) = create(seg_dir, base, true)?;
            segments.push(SegMeta {
                base,
                path,
                len: MAGIC_LEN,
            });
            continue;
        }
        if !buf.starts_with(&SEGMENT_MAGIC) {
            return Err(Error::Corrupt {
                path,
                offset: 0,
                reason: "not a spool segment (bad magic)".into(),
            });
        }
        let body = &buf[SEGMENT_MAGIC.len()..];
        let scan = frame::scan(body, max_payload, last_seq);
        let valid = MAGIC_LEN + scan.valid_len as u64;
        if let Some(stop) = scan.stop {
            let lost = buf.len() as u64 - valid;
            truncated_bytes += lost;
            match (stop, is_last) {
                (ScanStop::TornTail, true) => {
                    tracing::info!(file = ?path, offset = valid, lost, "truncating torn spool tail")
                }
                _ => tracing::error!(
                    file = ?path, offset = valid, lost, reason = ?stop, last_segment = is_last,
                    "spool segment damaged; keeping the valid prefix"
                ),
            }
            let f = OpenOptions::new().write(true).open(&path).at(&path)?;
            f.set_len(valid).and_then(|()| f.sync_all()).at(&path)?;
        }
        records += scan.records;
        if scan.last_seq.is_some() {
            last_seq = scan.last_seq;
        }
        segments.push(SegMeta {
            base,
            path,
            len: valid,
        });
    }
    let after_records = last_seq.map_or(0, |s| s + 1);
    let next_seq = segments
        .last()
        .map_or(after_records, |s| s.base.max(after_records));
    Ok(Recovered {
        segments,
        next_seq,
        records,
        truncated_bytes,
    })
}
