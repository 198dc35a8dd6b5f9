//! Shared helpers for the root-only eBPF integration tests (`tests/ebpf_*.rs`).
#![allow(dead_code, reason = "each test binary uses a subset")]

use std::time::{Duration, Instant};

use aerie_detector::{
    ebpf::{Capture, CaptureConfig},
    event::Event,
};

/// `true` when the test can run. Without root it prints a notice and returns `false`,
/// except under `CI=true`, where missing privileges are a failure.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: CI=true but not running as root: the eBPF tests must run in CI");
    }
    eprintln!("NOTICE {test}: skipped, needs root (CAP_BPF + CAP_PERFMON) to load eBPF");
    false
}

/// Start a capture of `syscalls` (plus the sched events), including this test process.
pub fn start(syscalls: &[&str]) -> Capture {
    start_with(syscalls, CaptureConfig::default())
}

/// As [`start`], from `base` for the settings `start` does not fix.
pub fn start_with(syscalls: &[&str], base: CaptureConfig) -> Capture {
    let cfg = CaptureConfig {
        ring_bytes: 1 << 20,
        rings: None,
        syscalls: Some(syscalls.iter().map(|s| s.to_string()).collect()),
        exclude_self: false,
        ..base
    };
    Capture::start(cfg).unwrap_or_else(|e| panic!("Capture::start: {e}"))
}

/// Read events until `done` has seen what it needs (returns true) or `timeout` passes;
/// returns every event for which `keep` held.
pub async fn collect(
    cap: &mut Capture,
    timeout: Duration,
    mut keep: impl FnMut(&Event) -> bool,
    mut done: impl FnMut(&[Event]) -> bool,
) -> Vec<Event> {
    let deadline = Instant::now() + timeout;
    let mut kept = Vec::new();
    let mut batch = Vec::new();
    while Instant::now() < deadline {
        batch.clear();
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, cap.next_batch(&mut batch)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("next_batch: {e}"),
            Err(_) => break,
        }
        kept.extend(batch.drain(..).filter(|e| keep(e)));
        if done(&kept) {
            break;
        }
    }
    kept
}

/// This thread's id (the tests make their syscalls on the test thread).
pub fn gettid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// Syscall exits of thread `tid`, collected until every name in `wanted` was seen.
pub async fn syscalls_of(
    cap: &mut Capture,
    tid: u32,
    wanted: &[&str],
) -> Vec<(Event, aerie_detector::event::SyscallEvent)> {
    use aerie_detector::event::EventKind;
    let events = collect(
        cap,
        Duration::from_secs(10),
        |e| e.tid == tid && matches!(e.kind, EventKind::Syscall(_)),
        |evs| {
            wanted.iter().all(|w| {
                evs.iter()
                    .any(|e| matches!(&e.kind, EventKind::Syscall(s) if s.name == *w))
            })
        },
    )
    .await;
    events
        .into_iter()
        .filter_map(|e| match e.kind.clone() {
            EventKind::Syscall(s) => Some((e, s)),
            _ => None,
        })
        .collect()
}

/// The first event named `name`, or a panic listing what was seen.
pub fn first<'a>(
    evs: &'a [(Event, aerie_detector::event::SyscallEvent)],
    name: &str,
) -> &'a aerie_detector::event::SyscallEvent {
    evs.iter()
        .map(|(_, s)| s)
        .find(|s| s.name == name)
        .unwrap_or_else(|| {
            let seen: Vec<_> = evs.iter().map(|(_, s)| s.name).collect();
            panic!("no {name} event; saw {seen:?}")
        })
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("aerie-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self, name: &str) -> String {
        self.0
            .join(name)
            .to_str()
            .expect("utf-8 temp path")
            .to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A C string for raw syscalls.
pub fn c(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).expect("no NUL in test string")
}
