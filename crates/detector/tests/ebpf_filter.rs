//! Root-only: in-kernel filtering by syscall and exclusion of the detector's own process.

mod ebpf_support;

use std::{process::Command, time::Duration};

use aerie_detector::{
    ebpf::{Capture, CaptureConfig},
    event::{EventKind, SyscallArgs},
};
use ebpf_support::{c, collect, gettid, root_or_skip, start, syscalls_of};

fn open_close(path: &str) {
    // SAFETY: open + close of a readable file.
    unsafe {
        let fd = libc::open(c(path).as_ptr(), libc::O_RDONLY);
        assert!(fd >= 0);
        libc::close(fd);
    }
}

#[tokio::test]
async fn only_interesting_syscalls_leave_the_kernel() {
    if !root_or_skip("only_interesting_syscalls_leave_the_kernel") {
        return;
    }
    let mut cap = start(&["openat"]);
    let tid = gettid();
    open_close("/etc/hostname");
    let evs = syscalls_of(&mut cap, tid, &["openat"]).await;
    assert!(
        evs.iter().all(|(_, s)| s.name == "openat"),
        "only openat: {:?}",
        evs.iter().map(|(_, s)| s.name).collect::<Vec<_>>()
    );

    let interest = cap
        .set_interesting(&["close", "no_such_syscall"])
        .expect("set_interesting");
    assert_eq!(interest.enabled, ["close"]);
    assert_eq!(interest.unsupported, ["no_such_syscall"]);
    open_close("/etc/hostname");
    let evs = syscalls_of(&mut cap, tid, &["close"]).await;
    assert!(evs.iter().any(|(_, s)| s.name == "close"));
    assert!(
        evs.iter().all(|(_, s)| s.name == "close"),
        "openat is no longer captured"
    );
    let counters = cap.counters().expect("counters");
    assert_eq!(counters.dropped(), 0, "{counters:?}");
}

#[tokio::test]
async fn the_detector_itself_is_excluded() {
    if !root_or_skip("the_detector_itself_is_excluded") {
        return;
    }
    let cfg = CaptureConfig {
        ring_bytes: 1 << 20,
        syscalls: Some(vec!["openat".into()]),
        ..CaptureConfig::default()
    };
    let mut cap = Capture::start(cfg).expect("start");
    let me = std::process::id();
    open_close("/etc/hostname");
    let mut child = Command::new("/bin/cat")
        .arg("/etc/hostname")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("cat");
    let pid = child.id();
    child.wait().expect("wait");
    let evs = collect(
        &mut cap,
        Duration::from_secs(10),
        |e| e.pid == me || e.pid == pid,
        |evs| evs.iter().any(|e| e.pid == pid && matches!(&e.kind, EventKind::Syscall(s) if matches!(&s.args, SyscallArgs::Open { path, .. } if path == "/etc/hostname"))),
    )
    .await;
    assert!(evs.iter().any(|e| e.pid == pid), "the child's open is seen");
    assert!(
        evs.iter().all(|e| e.pid != me),
        "nothing from the detector's own process"
    );
}
