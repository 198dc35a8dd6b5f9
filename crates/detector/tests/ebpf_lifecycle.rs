//! Root-only: the capture detaches everything when dropped, and a full ring buffer is
//! counted as drops, never silent.

mod ebpf_support;

use std::time::{Duration, Instant};

use aerie_detector::ebpf::{Capture, CaptureConfig, PROGRAMS};
use ebpf_support::root_or_skip;

fn loaded_ids() -> Vec<u32> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok().map(|p| p.id()))
        .collect()
}

#[tokio::test]
async fn dropping_the_capture_unloads_every_program() {
    if !root_or_skip("dropping_the_capture_unloads_every_program") {
        return;
    }
    let cap = Capture::start(CaptureConfig {
        ring_bytes: 1 << 16,
        ..CaptureConfig::default()
    })
    .expect("start");
    let ids = cap.program_ids();
    assert_eq!(ids.len(), PROGRAMS.len());
    let loaded = loaded_ids();
    assert!(ids.iter().all(|id| loaded.contains(id)), "{ids:?} loaded");
    drop(cap);
    // Program ids are released as the last fd/link goes; allow the kernel a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let loaded = loaded_ids();
        let left: Vec<_> = ids.iter().filter(|id| loaded.contains(id)).collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "programs still loaded after drop: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_full_ring_is_counted_as_drops() {
    if !root_or_skip("a_full_ring_is_counted_as_drops") {
        return;
    }
    let page = 4096;
    let cfg = CaptureConfig {
        ring_bytes: page,
        rings: Some(1),
        syscalls: Some(vec!["close".into()]),
        exclude_self: false,
        ..CaptureConfig::default()
    };
    let mut cap = Capture::start(cfg).expect("start");
    // Each close record is 144 bytes + 8 of ring header: a 4 KiB ring holds ~26.
    for _ in 0..2000 {
        // SAFETY: closing an invalid fd only returns EBADF.
        unsafe { libc::close(-1) };
    }
    let c = cap.counters().expect("counters");
    assert!(c.drop_ring_full > 1000, "{c:?}");
    assert!(c.sent + c.drop_ring_full >= 2000, "{c:?}");
    assert!(c.dropped() >= c.drop_ring_full);
    assert_eq!(c.drops_by_reason()[0], ("ring_full", c.drop_ring_full));
    let mut out = Vec::new();
    let n = cap.drain(&mut out);
    assert!(n > 0 && n as u64 <= c.sent + 64, "drained {n}, {c:?}");
    assert_eq!(cap.counters().expect("counters").received, n as u64);
}
