//! Root-only: in-kernel filtering by syscall and exclusion of the detector's own process.

mod ebpf_support;

use std::{process::Command, time::Duration};

use aerie_detector::{
    ebpf::{Capture, CaptureConfig},
    event::{EventKind, SyscallArgs},
};
use ebpf_support::{c, collect, gettid, root_or_skip, start, start_with, syscalls_of};

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

/// The open filter: an open whose path no rule can match, and the close of its descriptor,
/// stay in the kernel; everything user space needs still comes out.
#[tokio::test]
async fn opens_no_rule_can_match_stay_in_the_kernel_with_their_closes() {
    if !root_or_skip("opens_no_rule_can_match_stay_in_the_kernel_with_their_closes") {
        return;
    }
    open_filter_case(true).await;
}

/// The same with the descriptor table walked by helper reads (the fallback for kernels whose
/// verifier refuses the direct loads): directories must still be told apart.
#[tokio::test]
async fn opens_no_rule_can_match_stay_in_the_kernel_with_helper_reads() {
    if !root_or_skip("opens_no_rule_can_match_stay_in_the_kernel_with_helper_reads") {
        return;
    }
    open_filter_case(false).await;
}

async fn open_filter_case(direct_fd_walk: bool) {
    let dir = ebpf_support::TempDir::new("pathfilter");
    let dir_path = dir.path("");
    let dir_path = dir_path.trim_end_matches('/');
    std::fs::write(dir.path("plain"), b"x").expect("write");
    std::fs::write(dir.path("syslog"), b"x").expect("write");
    std::fs::create_dir_all(dir.path("sub")).expect("mkdir");
    std::fs::create_dir_all(dir.path("opath")).expect("mkdir");
    let mut cap = start_with(
        &["openat", "close", "dup2", "socket"],
        CaptureConfig {
            direct_fd_walk,
            ..CaptureConfig::default()
        },
    );
    // This kernel's verifier accepts the direct walk: a fallback here would hide a bug.
    assert_eq!(cap.direct_fd_walk(), direct_fd_walk, "descriptor walk");
    cap.set_path_filter(Some(&aerie_rules::OpenPathFilter {
        prefixes: vec![b"/etc".to_vec()],
        suffixes: vec![b"/syslog".to_vec()],
    }))
    .expect("set_path_filter");
    let before = cap.counters().expect("counters");
    let tid = gettid();
    let open = |p: &str, flags: i32| -> i32 {
        // SAFETY: a NUL-terminated path.
        unsafe { libc::open(c(p).as_ptr(), flags) }
    };
    let close = |fd: i32| {
        // SAFETY: closing a descriptor this test opened.
        unsafe { libc::close(fd) };
    };

    // 1. filtered: a plain absolute path under no prefix and with no suffix, and its close.
    let plain = open(&dir.path("plain"), libc::O_RDONLY);
    assert!(plain >= 0);
    close(plain);
    // ... and opened for writing, which skips the in-kernel directory check.
    let written = open(&dir.path("plain"), libc::O_WRONLY | libc::O_APPEND);
    assert!(written >= 0);
    close(written);
    // 2. sent: a prefix, a suffix, a non-normal spelling, a directory opened without
    //    O_DIRECTORY, a relative open through that directory, and its close.
    let etc = open("/etc/hostname", libc::O_RDONLY);
    close(etc);
    let log = open(&dir.path("syslog"), libc::O_RDONLY);
    close(log);
    let dotted = open(&format!("{dir_path}/./plain"), libc::O_RDONLY);
    close(dotted);
    let sub = open(&dir.path("sub"), libc::O_RDONLY);
    assert!(sub >= 0);
    // SAFETY: a relative path under an open directory.
    let rel = unsafe { libc::openat(sub, c("../plain").as_ptr(), libc::O_RDONLY) };
    close(rel);
    close(sub);
    // O_PATH ignores the access mode: a "write" open of a directory succeeds, and is sent.
    let opath = open(&dir.path("opath"), libc::O_PATH | libc::O_WRONLY);
    assert!(opath >= 0);
    close(opath);
    // 3. a filtered descriptor replaced by a socket through dup2: its close must be sent,
    //    or user space would keep the socket under that number forever.
    let reused = open(&dir.path("plain"), libc::O_RDONLY);
    // SAFETY: plain socket + dup2 onto a descriptor this test owns.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(sock >= 0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::dup2(sock, reused) }, reused);
    close(reused);
    close(sock);
    // The end marker.
    let end = open("/etc/passwd", libc::O_RDONLY);
    close(end);

    let evs = collect(
        &mut cap,
        Duration::from_secs(10),
        |e| e.tid == tid && matches!(e.kind, EventKind::Syscall(_)),
        |evs| {
            evs.iter().any(|e| {
                matches!(&e.kind, EventKind::Syscall(s)
                if s.name == "close" && matches!(s.args, SyscallArgs::Close { fd } if fd == end))
            })
        },
    )
    .await;
    let opens: Vec<String> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Syscall(s) => match &s.args {
                SyscallArgs::Open { path, .. } => Some(path.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let closes: Vec<i32> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Syscall(s) => match s.args {
                SyscallArgs::Close { fd } => Some(fd),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let plain_path = dir.path("plain");
    assert_eq!(
        opens.iter().filter(|p| **p == plain_path).count(),
        0,
        "the plain opens stay in the kernel: {opens:?}"
    );
    for sent in [
        "/etc/hostname".to_string(),
        dir.path("syslog"),
        format!("{dir_path}/./plain"),
        dir.path("sub"),
        dir.path("opath"),
        "../plain".to_string(),
        "/etc/passwd".to_string(),
    ] {
        assert!(opens.contains(&sent), "{sent} must be sent: {opens:?}");
    }
    // Closes: the filtered `plain` fd's close stays; every other close is sent.
    for fd in [etc, log, dotted, sub, rel, opath, reused, sock, end] {
        assert!(closes.contains(&fd), "close({fd}) must be sent: {closes:?}");
    }
    let after = cap.counters().expect("counters");
    assert!(
        after.filtered_opens >= before.filtered_opens + 3,
        "three filtered opens counted: {before:?} -> {after:?}"
    );
    assert!(
        after.filtered_closes > before.filtered_closes,
        "the filtered close counted: {before:?} -> {after:?}"
    );
    // Descriptor numbers are reused, so check by count: 11 closes made, 9 sent.
    assert_eq!(
        closes.len(),
        9,
        "every close but the two filtered ones: {closes:?}"
    );

    // Filter off again: the same open is sent.
    cap.set_path_filter(None).expect("set_path_filter");
    let again = open(&dir.path("plain"), libc::O_RDONLY);
    close(again);
    let evs = syscalls_of(&mut cap, tid, &["openat", "close"]).await;
    assert!(
        evs.iter()
            .any(|(_, s)| matches!(&s.args, SyscallArgs::Open { path, .. } if *path == plain_path)),
        "with the filter off the open is sent"
    );
}
