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
    let cfg = CaptureConfig {
        ring_bytes: 1 << 20,
        rings: None,
        syscalls: Some(syscalls.iter().map(|s| s.to_string()).collect()),
        exclude_self: false,
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
