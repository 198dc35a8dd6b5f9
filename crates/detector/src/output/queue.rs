//! The HTTP output's retry queue: alerts wait in memory up to a bound, then in an append-only
//! spill file up to a byte bound, and only beyond that are they dropped — and counted.
//!
//! Order is kept: once anything is on disk, new alerts go to disk behind it, and the memory part
//! is always older than the disk part. A spill file left by a previous run is resent first.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Outcome of [`SpillQueue::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Memory,
    Disk,
    /// Both bounds are full; the alert is lost (and the caller counts it).
    Dropped,
}

/// Bounded memory queue with a bounded on-disk overflow.
pub struct SpillQueue {
    memory: VecDeque<String>,
    memory_cap: usize,
    spill: Spill,
}

struct Spill {
    path: PathBuf,
    /// Reader positioned at the next unsent line; `None` when the file is empty.
    reader: Option<BufReader<File>>,
    writer: Option<File>,
    /// Bytes written (including already-sent ones) since the file was last emptied.
    written: u64,
    /// Bytes consumed by the reader.
    read: u64,
    max_bytes: u64,
}

impl SpillQueue {
    /// Open (creating `dir`) with the spill file `dir/NAME.jsonl`. Lines left there by an
    /// earlier run are queued first.
    pub fn open(dir: &Path, name: &str, memory_cap: usize, max_bytes: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.jsonl"));
        let written = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let mut spill = Spill {
            path,
            reader: None,
            writer: None,
            written,
            read: 0,
            max_bytes,
        };
        if written > 0 {
            spill.open_reader()?;
        }
        Ok(SpillQueue {
            memory: VecDeque::with_capacity(memory_cap.min(1024)),
            memory_cap: memory_cap.max(1),
            spill,
        })
    }

    /// Queue one alert (a JSON line without newline).
    pub fn push(&mut self, line: String) -> io::Result<Pushed> {
        if self.spill.pending() == 0 && self.memory.len() < self.memory_cap {
            self.memory.push_back(line);
            return Ok(Pushed::Memory);
        }
        self.spill.append(&line)
    }

    /// The oldest queued alert, without removing it.
    pub fn front(&mut self) -> io::Result<Option<&str>> {
        if self.memory.is_empty() {
            // Refill memory from disk in order; disk is always newer than memory.
            while self.memory.len() < self.memory_cap {
                match self.spill.read_line()? {
                    Some(l) => self.memory.push_back(l),
                    None => break,
                }
            }
        }
        Ok(self.memory.front().map(String::as_str))
    }

    /// Remove the alert [`SpillQueue::front`] returned.
    pub fn pop(&mut self) {
        self.memory.pop_front();
    }

    /// Alerts waiting (memory + unsent bytes on disk > 0 counts as at least one).
    pub fn is_empty(&self) -> bool {
        self.memory.is_empty() && self.spill.pending() == 0
    }

    pub fn memory_len(&self) -> usize {
        self.memory.len()
    }

    /// Unsent bytes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.spill.pending()
    }

    /// Move what is in memory to disk (on shutdown), so that nothing queued is lost.
    pub fn persist(&mut self) -> io::Result<u64> {
        if self.memory.is_empty() {
            return Ok(0);
        }
        // Memory is older than disk: rewrite the file as memory followed by the unsent rest.
        let mut rest = Vec::new();
        while let Some(l) = self.spill.read_line()? {
            rest.push(l);
        }
        self.spill.clear()?;
        let mut lost = 0;
        for line in self.memory.drain(..).chain(rest) {
            if self.spill.append(&line)? == Pushed::Dropped {
                lost += 1;
            }
        }
        self.spill.flush()?;
        Ok(lost)
    }
}

impl Spill {
    fn pending(&self) -> u64 {
        self.written - self.read
    }

    fn open_reader(&mut self) -> io::Result<()> {
        let mut f = File::open(&self.path)?;
        f.seek(SeekFrom::Start(self.read))?;
        self.reader = Some(BufReader::new(f));
        Ok(())
    }

    fn append(&mut self, line: &str) -> io::Result<Pushed> {
        let len = line.len() as u64 + 1;
        if self.written + len > self.max_bytes {
            return Ok(Pushed::Dropped);
        }
        if self.writer.is_none() {
            self.writer = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        if let Some(w) = self.writer.as_mut() {
            // One write per line keeps the file line-aligned even if we crash mid-way.
            let mut buf = Vec::with_capacity(line.len() + 1);
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            w.write_all(&buf)?;
        }
        self.written += len;
        if self.reader.is_none() {
            self.open_reader()?;
        }
        Ok(Pushed::Disk)
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.sync_data()?;
        }
        Ok(())
    }

    fn read_line(&mut self) -> io::Result<Option<String>> {
        if self.pending() == 0 {
            return Ok(None);
        }
        let Some(r) = self.reader.as_mut() else {
            return Ok(None);
        };
        let mut line = String::new();
        let n = r.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            // The file is shorter than we thought (truncated outside us): start over empty.
            self.clear()?;
            return Ok(None);
        }
        self.read += n as u64;
        if self.pending() == 0 {
            // Everything on disk is now in memory: empty the file so it does not grow forever.
            self.clear()?;
        }
        line.pop();
        Ok(Some(line))
    }

    fn clear(&mut self) -> io::Result<()> {
        self.reader = None;
        self.writer = None;
        self.written = 0;
        self.read = 0;
        File::create(&self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aerie-q-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn drain(q: &mut SpillQueue) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(l) = q.front().unwrap() {
            out.push(l.to_owned());
            q.pop();
        }
        out
    }

    #[test]
    fn keeps_order_across_memory_and_disk() {
        let d = dir("order");
        let mut q = SpillQueue::open(&d, "http", 2, 1 << 20).unwrap();
        let kinds: Vec<Pushed> = (0..5).map(|i| q.push(format!("a{i}")).unwrap()).collect();
        assert_eq!(
            kinds,
            [
                Pushed::Memory,
                Pushed::Memory,
                Pushed::Disk,
                Pushed::Disk,
                Pushed::Disk
            ]
        );
        assert_eq!(q.front().unwrap(), Some("a0"));
        q.pop();
        // Memory has room again, but disk is non-empty: new alerts queue behind it.
        assert_eq!(q.push("a5".into()).unwrap(), Pushed::Disk);
        assert_eq!(drain(&mut q), ["a1", "a2", "a3", "a4", "a5"]);
        assert!(q.is_empty());
        assert_eq!(std::fs::metadata(d.join("http.jsonl")).unwrap().len(), 0);
    }

    #[test]
    fn drops_beyond_the_disk_bound() {
        let d = dir("bound");
        // 1 in memory, then 3-byte lines ("bN\n") into a 7-byte file: two fit.
        let mut q = SpillQueue::open(&d, "http", 1, 7).unwrap();
        let kinds: Vec<Pushed> = (0..5).map(|i| q.push(format!("b{i}")).unwrap()).collect();
        assert_eq!(
            kinds,
            [
                Pushed::Memory,
                Pushed::Disk,
                Pushed::Disk,
                Pushed::Dropped,
                Pushed::Dropped
            ]
        );
        assert_eq!(drain(&mut q), ["b0", "b1", "b2"]);
    }

    #[test]
    fn persisted_alerts_survive_a_restart_in_order() {
        let d = dir("restart");
        {
            let mut q = SpillQueue::open(&d, "http", 2, 1 << 20).unwrap();
            for i in 0..4 {
                q.push(format!("c{i}")).unwrap();
            }
            assert_eq!(q.persist().unwrap(), 0);
        }
        let mut q = SpillQueue::open(&d, "http", 2, 1 << 20).unwrap();
        assert!(!q.is_empty());
        q.push("c4".into()).unwrap();
        assert_eq!(drain(&mut q), ["c0", "c1", "c2", "c3", "c4"]);
    }
}
