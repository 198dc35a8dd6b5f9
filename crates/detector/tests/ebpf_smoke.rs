//! Smoke test of the kernel path: load + attach the eBPF programs, perform a real execve,
//! and check the decoded event. Root only (skips with a notice otherwise; fails if CI=true).

mod ebpf_support;

use std::{process::Command, time::Duration};

use aerie_detector::{
    ebpf::PROGRAMS,
    event::{EventKind, SyscallArgs},
};

#[tokio::test]
async fn sees_an_exec_with_pid_comm_filename_and_argv() {
    if !ebpf_support::root_or_skip("ebpf_smoke") {
        return;
    }
    let mut cap = ebpf_support::start(&["execve"]);
    assert_eq!(cap.attached_programs(), PROGRAMS);

    let marker = format!("aerie-smoke-{}", std::process::id());
    let mut child = Command::new("/bin/true")
        .args([marker.as_str(), "two words"])
        .spawn()
        .expect("spawn /bin/true");
    let pid = child.id();
    assert!(child.wait().expect("wait").success());

    let want_argv = vec![
        "/bin/true".to_string(),
        marker.clone(),
        "two words".to_string(),
    ];
    let events = ebpf_support::collect(
        &mut cap,
        Duration::from_secs(10),
        |e| e.pid == pid,
        |evs| {
            evs.iter().any(|e| matches!(e.kind, EventKind::Exec(_)))
                && evs.iter().any(|e| matches!(e.kind, EventKind::Syscall(_)))
        },
    )
    .await;

    let exec = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Exec(x) => Some((e, x)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no sched_process_exec for pid {pid}; got {events:#?}"));
    assert_eq!(exec.0.pid, pid);
    assert_eq!(exec.0.tid, pid);
    assert_eq!(
        exec.0.ppid,
        std::process::id(),
        "parent is this test process"
    );
    assert_eq!(exec.0.comm.to_str_lossy(), "true");
    assert_eq!(exec.1.filename, "/bin/true");
    assert_eq!(exec.1.argv, want_argv);
    assert!(
        exec.1.details.exe_ino != 0,
        "exe inode read through BTF offsets"
    );

    let sys = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Syscall(s) if s.name == "execve" => Some((e, s)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no execve exit for pid {pid}; got {events:#?}"));
    assert_eq!(sys.1.ret, 0);
    assert_eq!(
        sys.0.comm.to_str_lossy(),
        "true",
        "comm after a successful execve"
    );
    assert_eq!(
        sys.1.args,
        SyscallArgs::Execve {
            dirfd: None,
            filename: "/bin/true".into(),
            argv: want_argv,
            flags: 0
        }
    );
    // The wall-clock conversion puts the event within a minute of now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert!((now.as_nanos() as i128 - sys.0.ts as i128).abs() < 60_000_000_000);

    let counters = cap.counters().expect("drop counters readable");
    assert!(counters.sent >= 2, "{counters:?}");
    assert_eq!(counters.drop_ring_full, 0, "{counters:?}");
    assert!(counters.received >= 2);
}

/// The benchmark's calibration programs load, attach as a pair, pause and resume (links
/// go and come back, programs stay loaded), and go away on drop.
#[test]
fn calibration_programs_attach_pause_resume_and_detach() {
    use aerie_detector::ebpf::calibration::{Calibration, HookFloor};
    if !ebpf_support::root_or_skip("ebpf_smoke calibration") {
        return;
    }
    let (progs, links) = (bpf_fds("bpf-prog"), bpf_fds("bpf_link"));
    for floor in [HookFloor::Empty, HookFloor::PathRead] {
        let mut cal = Calibration::attach(floor).unwrap_or_else(|e| panic!("{floor:?}: {e}"));
        assert_eq!(bpf_fds("bpf-prog"), progs + 2, "{floor:?}: programs loaded");
        assert_eq!(bpf_fds("bpf_link"), links + 2, "{floor:?}: attached");
        // An open still works under them.
        std::fs::read("/etc/hostname").expect("open under the calibration programs");
        cal.pause().expect("pause");
        assert_eq!(bpf_fds("bpf_link"), links, "{floor:?}: paused");
        assert_eq!(bpf_fds("bpf-prog"), progs + 2, "{floor:?}: still loaded");
        cal.resume().expect("resume");
        assert_eq!(bpf_fds("bpf_link"), links + 2, "{floor:?}: resumed");
        drop(cal);
        assert_eq!(
            bpf_fds("bpf-prog"),
            progs,
            "{floor:?}: programs left after drop"
        );
        assert_eq!(
            bpf_fds("bpf_link"),
            links,
            "{floor:?}: links left after drop"
        );
    }
}

/// Descriptors of this process whose link is `anon_inode:<kind>`.
fn bpf_fds(kind: &str) -> usize {
    let want = format!("anon_inode:{kind}");
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(Result::ok)
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == want))
        .count()
}
