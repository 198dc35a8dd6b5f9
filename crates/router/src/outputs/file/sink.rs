//! The file output's writer: JSON lines, appended, with an fsync policy, size rotation and
//! retention.
//!
//! A line is only ever appended after a newline: a torn last line (left by a crash mid-write,
//! or by a write cut short by a full disk before a restart) is cut off at open, kept in
//! `<path>.torn`, logged and counted, so the next alert never glues onto a fragment. Within
//! one run a failed write loses nothing: the buffer keeps what the kernel did not take, and
//! before the next line it is written out and the tail checked again (a line too long for the
//! buffer goes straight to the file and may stop halfway: that fragment is cut off before the
//! line is written again).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};


#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync after every batch written (safe, slower).
    Always,
    /// fsync at most once a second.
    Interval,
    /// Leave it to the kernel.
    Never,
}

pub struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    max_size: u64,
    max_files: usize,
    fsync: FsyncPolicy,
    last_sync: Instant,
    dirty: bool,
    /// Torn tails cut off and not yet reported to the metrics.
    torn: u64,
    /// A write failed: finish the buffer and check the tail before the next line.
    suspect: bool,
}

impl FileSink {
    pub fn open_path(
        path: PathBuf,
        max_size: u64,
        max_files: usize,
        fsync: FsyncPolicy,
    ) -> anyhow::Result<FileSink> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        }
        let torn = repair_tail(&path)
            .map_err(|e| anyhow::anyhow!("cannot repair {}: {e}", path.display()))?;
        let file = open_append(&path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(FileSink {
            path,
            out: BufWriter::with_capacity(256 << 10, file),
            size,
            max_size: max_size.max(1),
            max_files,
            fsync,
            last_sync: Instant::now(),
            dirty: false,
            torn: u64::from(torn),
            suspect: false,
        })
    }

    /// Torn tails cut off since the last call (for the metrics).
    pub fn take_torn(&mut self) -> u64 {
        std::mem::take(&mut self.torn)
    }

    /// After a failed write: write out what the buffer still holds (nothing is dropped), then
    /// cut a fragment the failed write may have left, and append from there.
    fn recover(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        if repair_tail(&self.path)? {
            self.torn += 1;
            let file = open_append(&self.path)?;
            self.size = file.metadata()?.len();
            self.out = BufWriter::with_capacity(256 << 10, file);
        }
        self.suspect = false;
        Ok(())
    }

    pub fn path_display(&self) -> String {
        self.path.display().to_string()
    }

    pub fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_size {
            self.rotate()?;
        }
        if self.suspect {
            self.recover()?;
        }
        let res = self
            .out
            .write_all(line)
            .and_then(|()| self.out.write_all(b"\n"));
        if res.is_err() {
            self.suspect = true;
        }
        res?;
        self.size += len;
        self.dirty = true;
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.out.flush()?;
        let sync = match self.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval => self.last_sync.elapsed() >= Duration::from_secs(1),
            FsyncPolicy::Never => false,
        };
        if sync {
            self.out.get_ref().sync_data()?;
            self.last_sync = Instant::now();
            self.dirty = false;
        }
        Ok(())
    }

    /// alerts.jsonl → alerts.jsonl.1 → … → alerts.jsonl.<max_files> (the oldest is removed).
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        if self.max_files == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let numbered = |n: usize| rotated_name(&self.path, n);
            let _ = std::fs::remove_file(numbered(self.max_files));
            for n in (1..self.max_files).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.out = BufWriter::with_capacity(256 << 10, open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

/// Cut a last line without its newline off `path` and append it to `<path>.torn`. True when
/// there was one.
fn repair_tail(path: &Path) -> std::io::Result<bool> {
    let mut f = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    f.seek(SeekFrom::Start(len - 1))?;
    f.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(false);
    }
    // Walk back to the last newline, a block at a time.
    let mut end = len; // the fragment is [keep, len)
    let mut keep = 0;
    let mut buf = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    let mut fragment = Vec::with_capacity((len - keep) as usize);
    f.seek(SeekFrom::Start(keep))?;
    (&mut f).take(len - keep).read_to_end(&mut fragment)?;
    let mut torn_path = path.as_os_str().to_owned();
    torn_path.push(".torn");
    let torn_path = PathBuf::from(torn_path);
    let mut side = open_append(&torn_path)?;
    side.write_all(&fragment)?;
    side.write_all(b"\n")?;
    side.sync_data()?;
    f.set_len(keep)?;
    f.sync_data()?;
    tracing::warn!(
        file = %path.display(),
        bytes = len - keep,
        kept_in = %torn_path.display(),
        "the file ended in a torn line; cut it off before appending"
    );
    Ok(true)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

pub fn rotated_name(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let dir = std::env::temp_dir().join(format!("aerie-router-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("a.jsonl");
        let mut f = FileSink::open_path(path.clone(), 100, 2, FsyncPolicy::Always).unwrap();
        let line = [b'x'; 39]; // 40 bytes with the newline: two lines per file
        for _ in 0..7 {
            f.write_line(&line).unwrap();
        }
        f.flush().unwrap();
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert_eq!(len(&path), 40);
        assert_eq!(len(&rotated_name(&path, 1)), 80);
        assert_eq!(len(&rotated_name(&path, 2)), 80);
        assert!(!rotated_name(&path, 3).exists());
        // Appends to an existing file after a restart.
        drop(f);
        let mut f = FileSink::open_path(path.clone(), 1000, 2, FsyncPolicy::Never).unwrap();
        f.write_line(b"{}").unwrap();
        f.flush().unwrap();
        assert_eq!(len(&path), 43);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_last_line_is_cut_off_kept_and_counted() {
        let dir = std::env::temp_dir().join(format!("aerie-router-torn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.jsonl");
        // A complete line, then a write cut short (a crash, or ENOSPC).
        std::fs::write(&path, "{\"rule\":\"one\"}\n{\"rule\":\"tw").unwrap();
        let mut f = FileSink::open_path(path.clone(), 1 << 20, 2, FsyncPolicy::Always).unwrap();
        assert_eq!(f.take_torn(), 1);
        assert_eq!(f.take_torn(), 0, "counted once");
        f.write_line(b"{\"rule\":\"three\"}").unwrap();
        f.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let rules: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("unparseable line {l:?}: {e}"));
                v["rule"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(rules, ["one", "three"]);
        let mut torn = path.as_os_str().to_owned();
        torn.push(".torn");
        assert_eq!(
            std::fs::read_to_string(PathBuf::from(torn)).unwrap(),
            "{\"rule\":\"tw\n"
        );
        // A file that is one fragment (no newline at all) is cut to nothing.
        drop(f);
        std::fs::write(&path, "garbage").unwrap();
        let mut f = FileSink::open_path(path.clone(), 1 << 20, 2, FsyncPolicy::Always).unwrap();
        assert_eq!(f.take_torn(), 1);
        f.write_line(b"{}").unwrap();
        f.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A real full disk (a 1 MiB tmpfs, as root) in the middle of a run: nothing written is
    /// lost or glued, whether the failed write was buffered or went straight to the file.
    #[test]
    fn a_full_disk_mid_run_neither_loses_nor_glues_lines() {
        use std::process::Command;
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        let is_root = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        if !is_root {
            assert!(!ci, "CI must run this test as root (it mounts a tmpfs)");
            println!("NOTICE: not root; skipping the full-disk file test");
            return;
        }
        let dir = std::env::temp_dir().join(format!("aerie-router-enospc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs");
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&self.0)
                    .status();
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _unmount = Unmount(dir.clone());
        let filler = dir.join("filler");
        let path = dir.join("a.jsonl");
        let line = |n: usize, pad: usize| format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(pad));

        // Buffered lines: the flush stops partway; the buffer keeps the rest.
        std::fs::write(&filler, vec![0u8; 1000 << 10]).unwrap();
        let mut f = FileSink::open_path(path.clone(), 64 << 20, 1, FsyncPolicy::Never).unwrap();
        for n in 0..1000 {
            f.write_line(line(n, 60).as_bytes()).unwrap();
        }
        assert!(f.flush().is_err(), "the disk is full");
        std::fs::remove_file(&filler).unwrap();
        f.flush().unwrap();

        // A line longer than the buffer goes straight to the file and stops halfway.
        std::fs::write(&filler, vec![0u8; 600 << 10]).unwrap();
        let big = line(1000, 400 << 10);
        assert!(f.write_line(big.as_bytes()).is_err(), "the disk is full");
        std::fs::remove_file(&filler).unwrap();
        f.write_line(big.as_bytes()).unwrap();
        f.write_line(line(1001, 10).as_bytes()).unwrap();
        f.flush().unwrap();
        assert_eq!(f.take_torn(), 1, "the half-written long line was cut off");

        let text = std::fs::read_to_string(&path).unwrap();
        let ns: Vec<u64> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("unparseable line of {} bytes: {e}", l.len()));
                v["n"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(ns, (0..1002).collect::<Vec<u64>>());
    }
}
