//! Root-only: process syscalls and the fork/exec/exit lifecycle, with the process details
//! read through BTF offsets (cwd, cgroup, loginuid, memfd and overlayfs exe flags).

mod ebpf_support;

use std::{
    io::Write,
    os::{fd::FromRawFd, unix::process::CommandExt},
    process::Command,
    time::Duration,
};

use aerie_detector::event::{EventKind, ExecEvent, SyscallArgs};
use ebpf_support::{TempDir, c, collect, first, gettid, root_or_skip, start, syscalls_of};

#[tokio::test]
async fn fork_exec_exit_with_cwd_cgroup_and_exit_code() {
    if !root_or_skip("fork_exec_exit_with_cwd_cgroup_and_exit_code") {
        return;
    }
    let mut cap = start(&[]);
    let me = std::process::id();
    let mut child = Command::new("/bin/sh")
        .args(["-c", "exit 3"])
        .current_dir("/tmp")
        .spawn()
        .expect("spawn sh");
    let pid = child.id();
    assert_eq!(child.wait().expect("wait").code(), Some(3));

    let evs = collect(
        &mut cap,
        Duration::from_secs(10),
        |e| e.pid == pid || (e.pid == me && matches!(e.kind, EventKind::Fork(_))),
        |evs| {
            evs.iter()
                .any(|e| matches!(e.kind, EventKind::Exit(_)) && e.pid == pid)
        },
    )
    .await;
    let fork = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Fork(f) if f.child_pid == pid => Some((e, f)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no fork of {pid}: {evs:#?}"));
    assert_eq!(fork.0.pid, me);
    assert_eq!(fork.1.child_tid, pid);
    assert!(!fork.1.is_thread);
    assert!(fork.1.details.start_ts > 0);

    let exec: &ExecEvent = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Exec(x) => Some(x),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no exec: {evs:#?}"));
    assert_eq!(exec.filename, "/bin/sh");
    assert_eq!(exec.argv, ["/bin/sh", "-c", "exit 3"]);
    assert_eq!(exec.cwd.as_deref(), Some("/tmp"));
    let own_cgroup = std::fs::read_to_string("/proc/self/cgroup").expect("cgroup");
    if let Some(v2) = own_cgroup.lines().find_map(|l| l.strip_prefix("0::")) {
        assert_eq!(
            exec.cgroup.as_deref(),
            Some(v2),
            "child inherits our cgroup"
        );
    }
    assert_eq!(
        exec.details.start_ts, fork.1.details.start_ts,
        "same task start time"
    );
    let exec_ev = evs
        .iter()
        .find(|e| matches!(e.kind, EventKind::Exec(_)))
        .expect("exec event");
    let loginuid = std::fs::read_to_string("/proc/self/loginuid")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    assert_eq!(exec_ev.loginuid, loginuid.filter(|&l| l != u32::MAX));
    assert_eq!(exec_ev.ppid, me);
    assert_eq!(exec_ev.comm.to_str_lossy(), "sh");
    // Capabilities, process group / session and namespace pid, compared with /proc.
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let cap = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .expect("cap line")
    };
    assert_eq!(
        exec_ev.cap_effective,
        cap("CapEff:"),
        "root child keeps our caps"
    );
    assert_eq!(exec_ev.cap_permitted, cap("CapPrm:"));
    assert!(
        exec_ev.cap_effective & (1 << 21) != 0,
        "CAP_SYS_ADMIN as root"
    );
    // SAFETY: getpgid/getsid have no preconditions.
    let (pgid, sid) = unsafe { (libc::getpgid(0) as u32, libc::getsid(0) as u32) };
    assert_eq!(
        (exec.details.pgid, exec.details.sid),
        (pgid, sid),
        "inherited from us"
    );
    // One NSpid entry: this test (and so its child) lives in the initial pid namespace.
    let nspid_levels = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| v.split_whitespace().count());
    if nspid_levels == Some(1) {
        assert_eq!(exec.details.vpid, pid, "host pid namespace: vpid == pid");
    }
    let meta = std::os::unix::fs::MetadataExt::ctime(&std::fs::metadata("/bin/sh").expect("stat"));
    assert_eq!(exec.details.exe_ctime, meta, "exe inode ctime");

    let exit = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Exit(x) if e.pid == pid => Some(x),
            _ => None,
        })
        .expect("exit event");
    assert_eq!(exit.exit_code, 3 << 8, "wait-status encoding");
    assert!(exit.leader);
    assert_eq!(exit.start_ts, exec.details.start_ts);
}

#[tokio::test]
async fn ptrace_kill_setid_chdir_and_failed_execve() {
    if !root_or_skip("ptrace_kill_setid_chdir_and_failed_execve") {
        return;
    }
    let names = [
        "ptrace",
        "kill",
        "setuid",
        "setgid",
        "setresuid",
        "setresgid",
        "setreuid",
        "chdir",
        "fchdir",
        "execve",
    ];
    let mut cap = start(&names);
    let tid = gettid();
    let mut sleeper = Command::new("/bin/sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let spid = sleeper.id() as i32;
    let cwd = std::env::current_dir().expect("cwd");
    let uid = unsafe { libc::getuid() };
    let gid = unsafe { libc::getgid() };
    // SAFETY: raw syscalls affecting only this thread (set*id via syscall(), not glibc's
    // process-wide wrappers) or a child we own; cwd is restored.
    unsafe {
        assert_eq!(libc::ptrace(libc::PTRACE_ATTACH, spid, 0, 0), 0);
        let mut status = 0;
        libc::waitpid(spid, &mut status, libc::__WALL);
        assert_eq!(libc::ptrace(libc::PTRACE_DETACH, spid, 0, 0), 0);
        assert_eq!(libc::syscall(libc::SYS_setuid, uid), 0);
        assert_eq!(libc::syscall(libc::SYS_setgid, gid), 0);
        assert_eq!(libc::syscall(libc::SYS_setresuid, -1, uid, -1), 0);
        assert_eq!(libc::syscall(libc::SYS_setresgid, -1, -1, -1), 0);
        assert_eq!(libc::syscall(libc::SYS_setreuid, -1, uid), 0);
        assert_eq!(libc::chdir(c("/tmp").as_ptr()), 0);
        let dirfd = libc::open(
            c(cwd.to_str().expect("utf-8 cwd")).as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY,
        );
        assert!(dirfd >= 0);
        assert_eq!(libc::fchdir(dirfd), 0);
        libc::close(dirfd);
        let argv = [
            c("/nonexistent/aerie-bin").into_raw(),
            c("--flag").into_raw(),
            std::ptr::null_mut(),
        ];
        let envp = [std::ptr::null_mut::<libc::c_char>()];
        assert_eq!(
            libc::execve(argv[0], argv.as_ptr().cast(), envp.as_ptr().cast()),
            -1
        );
        for p in &argv[..2] {
            drop(std::ffi::CString::from_raw(*p));
        }
        assert_eq!(libc::kill(spid, libc::SIGKILL), 0);
    }
    let _ = sleeper.wait();
    let evs = syscalls_of(
        &mut cap,
        tid,
        &[
            "ptrace",
            "kill",
            "setuid",
            "setgid",
            "setresuid",
            "setresgid",
            "setreuid",
            "chdir",
            "fchdir",
            "execve",
        ],
    )
    .await;

    let ptraces: Vec<_> = evs
        .iter()
        .filter(|(_, s)| s.name == "ptrace")
        .map(|(_, s)| &s.args)
        .collect();
    assert!(
        ptraces.iter().any(|a| matches!(a, SyscallArgs::Ptrace { request, pid, .. } if *request == libc::PTRACE_ATTACH as i64 && *pid == spid)),
        "{ptraces:#?}"
    );
    assert_eq!(
        first(&evs, "kill").args,
        SyscallArgs::Kill {
            pid: spid,
            sig: libc::SIGKILL
        }
    );
    assert_eq!(first(&evs, "setuid").args, SyscallArgs::SetId { id: uid });
    assert_eq!(first(&evs, "setgid").args, SyscallArgs::SetId { id: gid });
    assert_eq!(
        first(&evs, "setresuid").args,
        SyscallArgs::SetResId {
            real: None,
            effective: Some(uid),
            saved: None
        }
    );
    assert_eq!(
        first(&evs, "setresgid").args,
        SyscallArgs::SetResId {
            real: None,
            effective: None,
            saved: None
        }
    );
    assert_eq!(
        first(&evs, "setreuid").args,
        SyscallArgs::SetReId {
            real: None,
            effective: Some(uid)
        }
    );
    let (ev, _) = evs
        .iter()
        .find(|(_, s)| s.name == "setuid")
        .expect("setuid");
    assert_eq!((ev.uid, ev.euid), (uid, uid));
    assert_eq!(
        first(&evs, "chdir").args,
        SyscallArgs::Chdir {
            path: Some("/tmp".into()),
            fd: None
        }
    );
    assert!(matches!(
        first(&evs, "fchdir").args,
        SyscallArgs::Chdir {
            path: None,
            fd: Some(_)
        }
    ));
    let ex = first(&evs, "execve");
    assert_eq!(ex.ret, -i64::from(libc::ENOENT));
    assert_eq!(
        ex.args,
        SyscallArgs::Execve {
            dirfd: None,
            filename: "/nonexistent/aerie-bin".into(),
            argv: vec!["/nonexistent/aerie-bin".into(), "--flag".into()],
            flags: 0
        }
    );
}

#[tokio::test]
async fn memfd_exec_is_flagged() {
    if !root_or_skip("memfd_exec_is_flagged") {
        return;
    }
    let mut cap = start(&[]);
    // SAFETY: memfd_create with a valid name; the fd is owned by the File below.
    let fd = unsafe { libc::memfd_create(c("aerie-fileless").as_ptr(), 0) };
    assert!(fd >= 0);
    // SAFETY: fd is a fresh, owned descriptor.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(&std::fs::read("/bin/true").expect("read /bin/true"))
        .expect("fill memfd");
    let path = format!("/proc/self/fd/{fd}");
    let mut child = Command::new(&path)
        .arg0("fileless")
        .spawn()
        .expect("exec memfd");
    let pid = child.id();
    assert!(child.wait().expect("wait").success());
    let evs = collect(
        &mut cap,
        Duration::from_secs(10),
        |e| e.pid == pid && matches!(e.kind, EventKind::Exec(_)),
        |evs| !evs.is_empty(),
    )
    .await;
    let EventKind::Exec(x) = &evs
        .first()
        .unwrap_or_else(|| panic!("no exec of {pid}"))
        .kind
    else {
        unreachable!()
    };
    assert!(x.details.exe_from_memfd, "{x:#?}");
    assert!(
        x.exe_name
            .as_deref()
            .is_some_and(|n| n.starts_with("memfd:aerie-fileless")),
        "{x:#?}"
    );
    assert_eq!(x.argv, ["fileless"]);

    // A normal binary is not flagged.
    let mut cap2 = cap; // same capture
    let mut child = Command::new("/bin/true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    let evs = collect(
        &mut cap2,
        Duration::from_secs(10),
        |e| e.pid == pid && matches!(e.kind, EventKind::Exec(_)),
        |evs| !evs.is_empty(),
    )
    .await;
    let EventKind::Exec(x) = &evs.first().expect("exec of /bin/true").kind else {
        unreachable!()
    };
    assert!(!x.details.exe_from_memfd && !x.details.exe_upper_layer);
}

#[tokio::test]
async fn overlay_upper_layer_exe_is_flagged() {
    if !root_or_skip("overlay_upper_layer_exe_is_flagged") {
        return;
    }
    let dir = TempDir::new("ovl");
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir_all(dir.0.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/true", dir.0.join("lower/lower-true")).expect("copy lower");
    let mut cap = start(&[]);
    // In a private mount namespace: mount the overlay, add a binary in the upper layer, run both.
    let script = format!(
        "set -e; cd {d}; mount -t overlay overlay -o lowerdir=lower,upperdir=upper,workdir=work merged; \
         cp /bin/true merged/upper-true; merged/upper-true; merged/lower-true",
        d = dir.0.display()
    );
    let status = Command::new("unshare")
        .args(["-m", "--propagation", "private", "/bin/sh", "-c", &script])
        .status();
    let Ok(status) = status else {
        panic!("unshare (util-linux) is needed; scripts/bootstrap installs it");
    };
    assert!(status.success(), "overlay script failed: {status}");
    let evs = collect(
        &mut cap,
        Duration::from_secs(10),
        |e| matches!(&e.kind, EventKind::Exec(x) if x.filename.ends_with("upper-true") || x.filename.ends_with("lower-true")),
        |evs| evs.len() >= 2,
    )
    .await;
    let get = |suffix: &str| {
        evs.iter()
            .find_map(|e| match &e.kind {
                EventKind::Exec(x) if x.filename.ends_with(suffix) => Some(x.details.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no exec of {suffix}: {evs:#?}"))
    };
    let upper = get("upper-true");
    assert!(upper.exe_on_overlay && upper.exe_upper_layer, "{upper:#?}");
    let lower = get("lower-true");
    assert!(lower.exe_on_overlay && !lower.exe_upper_layer, "{lower:#?}");
}

#[tokio::test]
async fn controlling_tty_is_reported() {
    if !root_or_skip("controlling_tty_is_reported") {
        return;
    }
    let mut cap = start(&[]);
    // script(1) runs the command on a new pty that becomes its controlling terminal.
    let marker = format!("aerie-tty-{}", std::process::id());
    let status = Command::new("script")
        .args([
            "-q",
            "-e",
            "-c",
            &format!("/bin/echo {marker}"),
            "/dev/null",
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("script(1) (util-linux) is needed; scripts/bootstrap installs it");
    assert!(status.success());
    let evs = collect(
        &mut cap,
        Duration::from_secs(10),
        |e| matches!(&e.kind, EventKind::Exec(x) if x.argv.contains(&marker) && x.filename == "/bin/echo"),
        |evs| !evs.is_empty(),
    )
    .await;
    let EventKind::Exec(x) = &evs.first().expect("exec of echo under script").kind else {
        unreachable!()
    };
    // Encoded as /proc/PID/stat's tty_nr (and Falco's proc.tty): major in bits 8..20.
    let major = (x.details.tty >> 8) & 0xfff;
    assert!(
        (136..=143).contains(&major),
        "pty slave major, got tty {:#x}",
        x.details.tty
    );

    // Without a terminal: no tty.
    let mut child = Command::new("/bin/true")
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("true");
    let pid = child.id();
    child.wait().expect("wait");
    let evs = collect(
        &mut cap,
        Duration::from_secs(10),
        |e| e.pid == pid && matches!(e.kind, EventKind::Exec(_)),
        |evs| !evs.is_empty(),
    )
    .await;
    let EventKind::Exec(x) = &evs.first().expect("exec of true").kind else {
        unreachable!()
    };
    let own_tty = std::fs::read_link("/proc/self/fd/0")
        .ok()
        .is_some_and(|p| p.starts_with("/dev/pts") || p.starts_with("/dev/tty"));
    if !own_tty {
        // only meaningful when the test itself has no controlling terminal (CI)
        let ctty = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                s.rsplit(')').next().and_then(|rest| {
                    rest.split_whitespace()
                        .nth(4)
                        .and_then(|v| v.parse::<i32>().ok())
                })
            });
        if ctty == Some(0) {
            assert_eq!(x.details.tty, 0);
        }
    }
}

#[tokio::test]
async fn vpid_is_the_pid_inside_a_new_pid_namespace() {
    if !root_or_skip("vpid_is_the_pid_inside_a_new_pid_namespace") {
        return;
    }
    let mut cap = start(&[]);
    let marker = format!("aerie-pidns-{}", std::process::id());
    let status = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "/bin/sh",
            "-c",
            &format!("exec /bin/echo {marker}"),
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("unshare (util-linux) is needed; scripts/bootstrap installs it");
    assert!(status.success());
    let evs = collect(
        &mut cap,
        Duration::from_secs(10),
        |e| matches!(&e.kind, EventKind::Exec(x) if x.filename == "/bin/echo" && x.argv.contains(&marker)),
        |evs| !evs.is_empty(),
    )
    .await;
    let ev = evs.first().expect("exec of echo in the new pid namespace");
    let EventKind::Exec(x) = &ev.kind else {
        unreachable!()
    };
    assert_eq!(x.details.vpid, 1, "first process of the namespace");
    assert_ne!(ev.pid, 1, "the event's pid is the host pid");
}

#[tokio::test]
async fn execve_from_a_non_leader_thread_keeps_its_entry_data() {
    if !root_or_skip("execve_from_a_non_leader_thread_keeps_its_entry_data") {
        return;
    }
    let mut cap = start(&["execve"]);
    let marker = format!("aerie-thread-exec-{}", std::process::id());
    let path = c("/bin/echo");
    let arg = c(&marker);
    // SAFETY: the child only spawns a thread that execs (or exits); nothing returns to Rust
    // test code in the child.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork");
    if child == 0 {
        let t = std::thread::spawn(move || {
            let argv = [path.as_ptr(), arg.as_ptr(), std::ptr::null()];
            // SAFETY: NUL-terminated argv of valid C strings.
            unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
            // SAFETY: leave without unwinding into the forked test harness.
            unsafe { libc::_exit(127) };
        });
        let _ = t.join();
        // SAFETY: as above.
        unsafe { libc::_exit(126) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status:#x}"
    );
    let evs = collect(
        &mut cap,
        Duration::from_secs(10),
        |e| {
            e.pid == child as u32
                && matches!(&e.kind, EventKind::Syscall(s) if s.name == "execve" && s.ret == 0)
        },
        |evs| !evs.is_empty(),
    )
    .await;
    let ev = evs.first().expect("successful execve exit of the child");
    assert_eq!(
        ev.tid, child as u32,
        "the exec'ing thread took the leader's pid"
    );
    assert!(!ev.flags.no_entry, "entry moved to the new tid");
    let EventKind::Syscall(s) = &ev.kind else {
        unreachable!()
    };
    assert!(
        matches!(&s.args, SyscallArgs::Execve { filename, argv, .. } if filename == "/bin/echo" && argv.contains(&marker)),
        "{s:#?}"
    );
}

#[tokio::test]
async fn process_exit_is_flagged_on_the_last_thread_not_the_leader() {
    if !root_or_skip("process_exit_is_flagged_on_the_last_thread_not_the_leader") {
        return;
    }
    let mut cap = start(&[]);
    // SAFETY: the child only spawns a thread and exits through exit(2) / _exit.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork");
    if child == 0 {
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            // SAFETY: ends the whole child process.
            unsafe { libc::_exit(5) };
        });
        // SAFETY: exit(2) ends only the calling (leader) thread, without unwinding; the
        // process lives on in the other thread.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
        // SAFETY: not reached.
        unsafe { libc::_exit(99) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 5,
        "status {status:#x}"
    );
    let evs = collect(
        &mut cap,
        Duration::from_secs(10),
        |e| e.pid == child as u32 && matches!(e.kind, EventKind::Exit(_)),
        |evs| evs.len() >= 2,
    )
    .await;
    let exits: Vec<_> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Exit(x) => Some((e.tid, x.leader, x.exit_code)),
            _ => None,
        })
        .collect();
    assert_eq!(exits.len(), 2, "{exits:?}");
    let leader = exits
        .iter()
        .find(|(tid, ..)| *tid == child as u32)
        .expect("leader exit");
    let other = exits
        .iter()
        .find(|(tid, ..)| *tid != child as u32)
        .expect("thread exit");
    assert!(
        !leader.1,
        "the leader left first: process still alive {exits:?}"
    );
    assert!(other.1, "the last thread ends the process {exits:?}");
    assert_eq!(other.2, 5 << 8);
}
