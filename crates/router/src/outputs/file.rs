//! The file output: JSON lines, appended, with an fsync policy, size rotation and retention.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{FsyncPolicy, OutputConfig};

pub struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    max_size: u64,
    max_files: usize,
    fsync: FsyncPolicy,
    last_sync: Instant,
    dirty: bool,
}

impl FileSink {
    pub fn open(cfg: &OutputConfig) -> anyhow::Result<FileSink> {
        let path = cfg
            .path
            .clone()
            .ok_or_else(|| anyhow::anyhow!("output {}: file output without path", cfg.name))?;
        Self::open_path(path, cfg.max_size, cfg.max_files, cfg.fsync)
    }

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
        })
    }

    pub fn path_display(&self) -> String {
        self.path.display().to_string()
    }

    pub fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_size {
            self.rotate()?;
        }
        self.out.write_all(line)?;
        self.out.write_all(b"\n")?;
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
}
