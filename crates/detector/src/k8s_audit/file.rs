//! Audit log files: the API server's log backend (`--audit-log-path`,
//! `--audit-log-format=json`) writes one audit `Event` per line. Each configured file is
//! polled (`k8s_audit.poll_interval_ms`); complete new lines are judged like webhook events.
//!
//! - Rotation by rename (the API server's own, logrotate's `create`): the file the detector
//!   has open is read to its end before the new file at the path is read from its start.
//! - Rotation by copy-truncate: the file shrinking below the read position, or its first
//!   line changing, means it starts over. Lines written between the last poll and the copy
//!   are read from the copy (found next to the path by its first line), then the file is
//!   read again from its start.
//! - Restarts: the position (device, inode, offset, line, and a hash of the first line) is
//!   saved after every poll that read something (and every few MiB of a backlog),
//!   atomically. On start, reading resumes there;
//!   if the file was rotated meanwhile, the rotated file is found by its inode in the same
//!   directory and finished first. No line is judged twice and none is skipped.
//! - A line that is not an audit event is counted (`aerie_k8s_audit_bad_lines_total`) and
//!   skipped with a warning naming the file and the line.

use std::fs::{self, File};
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use aerie_rules::{Matches, parse_audit_payload};

use super::AuditSource;
use super::position::{self, Position, fnv1a};
use crate::config::K8sAuditConfig;

/// Bytes of the first line hashed to recognise a file rewritten from its start.
const HEAD_BYTES: usize = 256;
/// Longest line accepted; a longer one is skipped as bad.
const MAX_LINE: usize = 16 << 20;
/// Read size per system call.
const CHUNK: usize = 64 << 10;
/// While reading a backlog, the position is saved after about this many bytes.
const CHECKPOINT_BYTES: u64 = 4 << 20;

/// The file being read and how far.
struct Open {
    file: File,
    dev: u64,
    ino: u64,
    offset: u64,
    line: u64,
    /// Length and FNV-1a hash of the first bytes of the first line; 0 until it is read.
    head_len: u64,
    head_hash: u64,
}

/// One followed audit log file.
pub struct FileFollower {
    path: PathBuf,
    state: PathBuf,
    open: Option<Open>,
    source: Arc<AuditSource>,
    matches: Matches,
    pending: Vec<u8>,
    /// The position last saved, to skip saving when nothing moved.
    saved: Option<Position>,
}

impl FileFollower {
    /// Follow `path`, resuming from the position saved in `state_dir`, if any.
    pub fn new(path: &Path, state_dir: &Path, source: Arc<AuditSource>) -> Self {
        let mut f = FileFollower {
            path: path.to_owned(),
            state: position::state_path(state_dir, path),
            open: None,
            source,
            matches: Matches::new(),
            pending: Vec::with_capacity(CHUNK),
            saved: None,
        };
        f.resume();
        f
    }

    /// The file followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn resume(&mut self) {
        let saved = match position::load(&self.state) {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(
                    "k8s audit file {}: unreadable read position {} ({e}); reading the file from its start",
                    self.path.display(),
                    self.state.display()
                );
                return;
            }
        };
        self.saved = Some(saved);
        let found = match fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == (saved.dev, saved.ino) => Some(self.path.clone()),
            // Rotated while we were down: look for the file by its inode next to the path.
            _ => self.find_rotated(saved.dev, saved.ino),
        };
        let Some(at) = found else {
            tracing::warn!(
                "k8s audit file {}: the file read before the restart (inode {}) is gone; lines written to it after the stop were not judged",
                self.path.display(),
                saved.ino
            );
            return;
        };
        match File::open(&at) {
            Ok(file) => {
                if at != self.path {
                    tracing::info!(
                        "k8s audit file {}: rotated during the restart; finishing {} first",
                        self.path.display(),
                        at.display()
                    );
                }
                // A file truncated meanwhile is recognised by the first poll.
                self.open = Some(Open {
                    file,
                    dev: saved.dev,
                    ino: saved.ino,
                    offset: saved.offset,
                    line: saved.line,
                    head_len: saved.head_len,
                    head_hash: saved.head_hash,
                });
            }
            Err(e) => tracing::warn!(
                "k8s audit file {}: cannot reopen {} ({e}); reading the current file from its start",
                self.path.display(),
                at.display()
            ),
        }
    }

    fn find_rotated(&self, dev: u64, ino: u64) -> Option<PathBuf> {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty())?;
        fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .find_map(|e| {
                let m = e.metadata().ok()?;
                (m.is_file() && m.dev() == dev && m.ino() == ino).then(|| e.path())
            })
    }

    /// Whether the open file no longer holds what was read: shorter than the position, or a
    /// different first line (truncated and written again past the old position).
    fn rewritten(&self, open: &Open) -> bool {
        let Ok(meta) = open.file.metadata() else {
            return false;
        };
        if meta.len() < open.offset {
            return true;
        }
        if open.head_len == 0 {
            return false;
        }
        let mut head = vec![0u8; open.head_len as usize];
        match open.file.read_exact_at(&mut head, 0) {
            Ok(()) => fnv1a(&head) != open.head_hash,
            Err(_) => true,
        }
    }

    /// Read what is new (following rotation), judge it, and save the position. Returns the
    /// number of events judged.
    pub fn poll(&mut self) -> usize {
        let current = fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        let mut events = 0;
        if let Some(mut open) = self.open.take() {
            if current == Some((open.dev, open.ino)) {
                if self.rewritten(&open) {
                    tracing::info!(
                        "k8s audit file {}: truncated (copy-truncate rotation); reading it from its start",
                        self.path.display()
                    );
                    events += self.finish_copy(&open);
                    open.offset = 0;
                    open.line = 0;
                    open.head_len = 0;
                }
                events += self.read_new(&mut open, false);
                self.open = Some(open);
            } else {
                // Renamed away or removed: finish the old file; the path is a new file.
                events += self.read_new(&mut open, current.is_some());
                if current.is_some() {
                    tracing::info!(
                        "k8s audit file {}: rotated after line {}; following the new file",
                        self.path.display(),
                        open.line
                    );
                } else {
                    // No new file yet: keep the old one (and its saved position) until there is.
                    self.open = Some(open);
                }
            }
        }
        if self.open.is_none()
            && let Some((dev, ino)) = current
        {
            match File::open(&self.path) {
                Ok(file) => {
                    let mut open = Open {
                        file,
                        dev,
                        ino,
                        offset: 0,
                        line: 0,
                        head_len: 0,
                        head_hash: 0,
                    };
                    events += self.read_new(&mut open, false);
                    self.open = Some(open);
                }
                Err(e) => tracing::warn!("k8s audit file {}: {e}", self.path.display()),
            }
        }
        self.save();
        events
    }

    /// After a copy-truncate, the lines written between the last poll and the copy are only
    /// in the copy: find it next to the path (same first line, longer than the position)
    /// and judge them.
    fn finish_copy(&mut self, open: &Open) -> usize {
        if open.head_len == 0 {
            return 0;
        }
        let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) else {
            return 0;
        };
        let Ok(entries) = fs::read_dir(dir) else {
            return 0;
        };
        let mut head = vec![0u8; open.head_len as usize];
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            let Ok(m) = e.metadata() else { continue };
            if p == self.path || !m.is_file() || m.len() <= open.offset {
                continue;
            }
            let Ok(file) = File::open(&p) else { continue };
            if file.read_exact_at(&mut head, 0).is_err() || fnv1a(&head) != open.head_hash {
                continue;
            }
            tracing::info!(
                "k8s audit file {}: reading the lines after line {} from the copy {}",
                self.path.display(),
                open.line,
                p.display()
            );
            let mut copy = Open {
                file,
                dev: m.dev(),
                ino: m.ino(),
                offset: open.offset,
                line: open.line,
                head_len: open.head_len,
                head_hash: open.head_hash,
            };
            return self.read_new(&mut copy, true);
        }
        0
    }

    fn save(&mut self) {
        if let Some(o) = self.open.take() {
            self.save_pos(&o);
            self.open = Some(o);
        }
    }

    fn save_pos(&mut self, o: &Open) {
        let pos = Position {
            dev: o.dev,
            ino: o.ino,
            offset: o.offset,
            line: o.line,
            head_len: o.head_len,
            head_hash: o.head_hash,
        };
        if self.saved == Some(pos) {
            return;
        }
        match position::save(&self.state, &pos) {
            Ok(()) => self.saved = Some(pos),
            Err(e) => tracing::warn!(
                "k8s audit file {}: saving the read position to {}: {e}",
                self.path.display(),
                self.state.display()
            ),
        }
    }

    /// Judge the complete lines after the position; with `last`, the file gets no more
    /// writes and a final line without a newline counts too.
    fn read_new(&mut self, open: &mut Open, last: bool) -> usize {
        if let Err(e) = open.file.seek(SeekFrom::Start(open.offset)) {
            tracing::warn!("k8s audit file {}: {e}", self.path.display());
            return 0;
        }
        self.pending.clear();
        let mut events = 0;
        let mut checkpoint = open.offset;
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = match open.file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("k8s audit file {}: {e}", self.path.display());
                    break;
                }
            };
            self.pending.extend_from_slice(&chunk[..n]);
            let mut start = 0;
            while let Some(nl) = self.pending[start..].iter().position(|b| *b == b'\n') {
                let end = start + nl;
                let line = std::mem::take(&mut self.pending);
                events += self.judge_line(open, &line[start..end], end + 1 - start);
                self.pending = line;
                start = end + 1;
            }
            self.pending.drain(..start);
            // A long backlog: save the position now and then, so a crash repeats little.
            if open.offset >= checkpoint + CHECKPOINT_BYTES {
                self.save_pos(open);
                checkpoint = open.offset;
            }
            if self.pending.len() > MAX_LINE {
                let len = self.pending.len();
                open.line += 1;
                open.offset += len as u64;
                self.source.metrics.add_k8s_audit_bad_line();
                tracing::warn!(
                    "k8s audit file {}:{}: line longer than {MAX_LINE} bytes; skipped",
                    self.path.display(),
                    open.line
                );
                self.pending.clear();
            }
        }
        if last && !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            events += self.judge_line(open, &line, line.len());
        }
        events
    }

    /// Judge one line (`consumed` bytes of the file, with its newline).
    fn judge_line(&mut self, open: &mut Open, line: &[u8], consumed: usize) -> usize {
        if open.offset == 0 {
            let n = line.len().min(HEAD_BYTES);
            open.head_len = n as u64;
            open.head_hash = fnv1a(&line[..n]);
        }
        open.line += 1;
        open.offset += consumed as u64;
        if line.iter().all(u8::is_ascii_whitespace) {
            return 0;
        }
        match parse_audit_payload(line) {
            Ok(events) => {
                self.source
                    .metrics
                    .add_k8s_audit_file_events(events.len() as u64);
                for ev in &events {
                    self.source.judge(ev, &mut self.matches, true);
                }
                events.len()
            }
            Err(e) => {
                self.source.metrics.add_k8s_audit_bad_line();
                tracing::warn!(
                    "k8s audit file {}:{}: {e}; line skipped",
                    self.path.display(),
                    open.line
                );
                0
            }
        }
    }
}

/// The thread that polls the audit log files; stopping it reads what is left once more.
pub struct FollowerThread {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl FollowerThread {
    /// Stop after a last poll, and wait.
    pub fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            tracing::warn!("k8s audit file follower ended with a panic");
        }
    }
}

/// Follow `cfg.files` on a thread of their own until [`FollowerThread::stop`].
pub fn follow_files(cfg: &K8sAuditConfig, source: Arc<AuditSource>) -> io::Result<FollowerThread> {
    fs::create_dir_all(&cfg.state_dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("k8s_audit.state_dir {}: {e}", cfg.state_dir.display()),
        )
    })?;
    let mut followers: Vec<FileFollower> = cfg
        .files
        .iter()
        .map(|p| FileFollower::new(p, &cfg.state_dir, source.clone()))
        .collect();
    let interval = Duration::from_millis(cfg.poll_interval_ms);
    let (stop, stop_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("k8s-audit-files".into())
        .spawn(move || {
            loop {
                for f in &mut followers {
                    f.poll();
                }
                match stop_rx.recv_timeout(interval) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
            for f in &mut followers {
                f.poll();
            }
        })?;
    Ok(FollowerThread { stop, thread })
}
