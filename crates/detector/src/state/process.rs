//! One tracked process (thread group) and how to read it from /proc.

use std::path::Path;

use super::clock::BootClock;
use super::container::{HOST_ID, container_id_from_proc_cgroup};
use super::fd::{FdInfo, FdKind, FdTable};

/// `task->loginuid` when no login session set it.
pub const NO_LOGINUID: u32 = u32::MAX;

/// What the detector knows about one process.
#[derive(Debug, Clone, Default)]
pub struct Process {
    /// Thread group id, as seen from the host (`proc.pid`).
    pub pid: u32,
    pub ppid: u32,
    /// Pid inside the process's own pid namespace (`proc.vpid`), 0 when unknown.
    pub vpid: u32,
    /// Session id and process group id, namespace-local as Falco reports them.
    pub sid: u32,
    pub vpgid: u32,
    /// `task->comm` (`proc.name`).
    pub comm: String,
    /// argv[0] (`proc.exe`).
    pub exe: String,
    /// Full path of the executable (`proc.exepath`).
    pub exepath: String,
    /// Arguments after argv[0], space-joined (`proc.args`).
    pub args: String,
    /// `comm args` (`proc.cmdline`).
    pub cmdline: String,
    /// Environment, `NAME=value` entries NUL-separated (as `/proc/PID/environ`), at most
    /// `ENV_CAP` bytes; kept only while a rule reads `proc.env` (empty otherwise).
    pub env: Vec<u8>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub loginuid: u32,
    /// Controlling terminal (dev_t), 0 when none.
    pub tty: u32,
    /// Start time, ns since the Unix epoch.
    pub start_ns: u64,
    /// 12-character container id, or `host`.
    pub container_id: String,
    pub exe_upper_layer: bool,
    pub exe_from_memfd: bool,
    pub exe_ino: u64,
    /// Exe inode ctime / mtime, seconds since the epoch; 0 when unknown.
    pub exe_ctime: i64,
    pub exe_mtime: i64,
    pub cap_effective: u64,
    pub cap_permitted: u64,
    pub cap_inheritable: u64,
    pub fds: FdTable,
}

impl Process {
    /// Set argv (NUL-separated, as the kernel stores it): fills `exe`, `args` and `cmdline`.
    /// Buffers are reused, so a process that execs often does not reallocate.
    pub fn set_argv(&mut self, argv: &[u8]) {
        let argv = argv.strip_suffix(b"\0").unwrap_or(argv);
        let mut parts = argv.split(|b| *b == 0);
        self.exe.clear();
        if let Some(a0) = parts.next() {
            self.exe.push_str(&String::from_utf8_lossy(a0));
        }
        self.args.clear();
        for (i, p) in parts.enumerate() {
            if i > 0 {
                self.args.push(' ');
            }
            self.args.push_str(&String::from_utf8_lossy(p));
        }
        self.refresh_cmdline();
    }

    /// Replace the environment with `env` (NUL-separated entries), capped at `ENV_CAP`.
    pub fn set_env(&mut self, env: &[u8]) {
        self.env.clear();
        self.env
            .extend_from_slice(&env[..env.len().min(detector_common::ENV_CAP)]);
    }

    /// The value of environment variable `name`, if set.
    pub fn env_var(&self, name: &[u8]) -> Option<&[u8]> {
        self.env_entries().find_map(|e| {
            e.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(b"="))
        })
    }

    /// The `NAME=value` entries of the environment.
    pub fn env_entries(&self) -> impl Iterator<Item = &[u8]> {
        self.env.split(|b| *b == 0).filter(|e| !e.is_empty())
    }

    /// Read `/proc/PID/environ` (under `proc_root`), capped at `ENV_CAP` bytes.
    pub fn read_environ(&mut self, proc_root: &Path) {
        use std::io::Read as _;
        let path = proc_root.join(self.pid.to_string()).join("environ");
        let mut buf = Vec::with_capacity(1024);
        if let Ok(f) = std::fs::File::open(path) {
            let _ = f
                .take(detector_common::ENV_CAP as u64)
                .read_to_end(&mut buf);
        }
        self.env = buf;
    }

    /// Set the name (`comm`) and refresh `cmdline`.
    pub fn set_comm(&mut self, comm: &str) {
        self.comm.clear();
        self.comm.push_str(comm);
        self.refresh_cmdline();
    }

    fn refresh_cmdline(&mut self) {
        self.cmdline.clear();
        self.cmdline.push_str(&self.comm);
        if !self.args.is_empty() {
            self.cmdline.push(' ');
            self.cmdline.push_str(&self.args);
        }
    }

    /// Session, process group and namespace pid from the kernel; zeros are "unknown" and
    /// leave the current values.
    pub fn set_ids(&mut self, sid: u32, pgid: u32, vpid: u32) {
        if sid != 0 {
            self.sid = sid;
        }
        if pgid != 0 {
            self.vpgid = pgid;
        }
        if vpid != 0 {
            self.vpid = vpid;
        }
    }

    pub fn in_container(&self) -> bool {
        self.container_id != HOST_ID
    }

    /// Read `/proc/PID` (under `proc_root`). `None` when the process is gone.
    pub fn from_proc(
        proc_root: &Path,
        pid: u32,
        clock: &BootClock,
        max_fds: usize,
    ) -> Option<Self> {
        let dir = proc_root.join(pid.to_string());
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let stat = parse_stat(&stat)?;
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let mut p = Process {
            pid,
            ppid: stat.ppid,
            sid: stat.session,
            vpgid: stat.pgrp,
            tty: stat.tty_nr,
            start_ns: clock.ticks_to_epoch_ns(stat.start_ticks),
            loginuid: std::fs::read_to_string(dir.join("loginuid"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(NO_LOGINUID),
            ..Process::default()
        };
        p.comm = stat.comm.to_owned();
        let ids = |key: &str| -> [u32; 2] {
            let mut it = status_field(&status, key)
                .unwrap_or("")
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0));
            [it.next().unwrap_or(0), it.next().unwrap_or(0)]
        };
        [p.uid, p.euid] = ids("Uid:");
        [p.gid, p.egid] = ids("Gid:");
        let cap = |key: &str| {
            status_field(&status, key)
                .and_then(|v| u64::from_str_radix(v, 16).ok())
                .unwrap_or(0)
        };
        p.cap_effective = cap("CapEff:");
        p.cap_permitted = cap("CapPrm:");
        p.cap_inheritable = cap("CapInh:");
        p.vpid = status_field(&status, "NSpid:")
            .and_then(|v| v.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(pid);
        let argv = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        p.set_argv(&argv);
        p.refresh_cmdline();
        if let Ok(m) = std::fs::metadata(dir.join("exe")) {
            use std::os::unix::fs::MetadataExt;
            p.exe_ino = m.ino();
            p.exe_ctime = m.ctime();
            p.exe_mtime = m.mtime();
        }
        if let Ok(exe) = std::fs::read_link(dir.join("exe")) {
            let exe = exe.to_string_lossy();
            p.exe_from_memfd = exe.starts_with("/memfd:");
            p.exepath = exe.strip_suffix(" (deleted)").unwrap_or(&exe).to_owned();
        }
        if let Ok(cwd) = std::fs::read_link(dir.join("cwd")) {
            p.cwd = cwd.to_string_lossy().into_owned();
        }
        let cgroup = std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
        p.container_id = container_id_from_proc_cgroup(&cgroup)
            .unwrap_or(HOST_ID)
            .to_owned();
        read_fds(&dir, &mut p.fds, max_fds);
        Some(p)
    }
}

/// The parts of `/proc/PID/stat` we use.
#[derive(Debug, PartialEq, Eq)]
pub struct Stat<'a> {
    pub comm: &'a str,
    pub ppid: u32,
    pub pgrp: u32,
    pub session: u32,
    pub tty_nr: u32,
    pub start_ticks: u64,
}

/// Parse `/proc/PID/stat`. The comm is in parentheses and may itself contain spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(s: &str) -> Option<Stat<'_>> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s.get(open + 1..close)?;
    let rest: Vec<&str> = s.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state).
    let field = |n: usize| rest.get(n - 3).copied();
    Some(Stat {
        comm,
        ppid: field(4)?.parse().ok()?,
        pgrp: field(5)?.parse().ok()?,
        session: field(6)?.parse().ok()?,
        tty_nr: field(7)?.parse::<i64>().ok()? as u32,
        start_ticks: field(22)?.parse().ok()?,
    })
}

fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

/// Descriptors from `/proc/PID/fd`: files by path, other objects by their kind.
fn read_fds(dir: &Path, fds: &mut FdTable, max: usize) {
    let Ok(entries) = std::fs::read_dir(dir.join("fd")) else {
        return;
    };
    for e in entries.flatten() {
        let Some(num) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let t = target.to_string_lossy();
        let info = fd_from_link(&t);
        if !fds.insert(num, info, max) {
            break;
        }
    }
}

/// Interpret a `/proc/PID/fd/N` link target.
pub fn fd_from_link(t: &str) -> FdInfo {
    if t.starts_with('/') {
        if t.starts_with("/memfd:") {
            return FdInfo::new(FdKind::Memfd, t.strip_suffix(" (deleted)").unwrap_or(t));
        }
        // Directory-ness would need a stat per fd; Falco reports bootstrap fds as files too.
        return FdInfo::file(t, t, 0, false);
    }
    let kind = if t.starts_with("socket:") {
        // The family is unknown until a socket call shows it.
        FdKind::OtherSocket
    } else if t.starts_with("pipe:") {
        FdKind::Pipe
    } else if let Some(anon) = t.strip_prefix("anon_inode:") {
        match anon.trim_matches(|c| c == '[' || c == ']') {
            "eventfd" => FdKind::Event,
            "eventpoll" => FdKind::Eventpoll,
            "signalfd" => FdKind::Signalfd,
            "inotify" => FdKind::Inotify,
            "timerfd" => FdKind::Timerfd,
            "bpf-map" | "bpf-prog" | "bpf_link" | "bpf-link" => FdKind::Bpf,
            "userfaultfd" => FdKind::Userfaultfd,
            "io_uring" => FdKind::IoUring,
            "pidfd" => FdKind::Pidfd,
            _ => FdKind::Unknown,
        }
    } else {
        FdKind::Unknown
    };
    FdInfo::new(kind, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_tricky_comm() {
        let s = "1234 (a) (b c) S 1 1234 1234 34816 1234 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100 0";
        let st = parse_stat(s).unwrap();
        assert_eq!(st.comm, "a) (b c");
        assert_eq!(st.ppid, 1);
        assert_eq!(st.pgrp, 1234);
        assert_eq!(st.session, 1234);
        assert_eq!(st.tty_nr, 34816);
        assert_eq!(st.start_ticks, 98765);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn argv_sets_exe_args_and_cmdline() {
        let mut p = Process {
            comm: "bash".into(),
            ..Default::default()
        };
        p.set_argv(b"/bin/bash\0-c\0echo hi\0");
        assert_eq!(p.exe, "/bin/bash");
        assert_eq!(p.args, "-c echo hi");
        assert_eq!(p.cmdline, "bash -c echo hi");
        p.set_argv(b"");
        assert_eq!(p.cmdline, "bash");
    }

    #[test]
    fn reads_the_environment_from_proc_capped() {
        let me = std::process::id();
        let mut p = Process {
            pid: me,
            ..Default::default()
        };
        p.read_environ(Path::new("/proc"));
        // The environment this process started with (/proc/self/environ shows that one).
        let path = std::env::var_os("PATH").expect("tests run with PATH set");
        assert_eq!(
            p.env_var(b"PATH"),
            Some(path.as_encoded_bytes()),
            "PATH from /proc/{me}/environ"
        );
        assert!(p.env.len() <= detector_common::ENV_CAP);
        p.set_env(&vec![b'x'; detector_common::ENV_CAP + 10]);
        assert_eq!(p.env.len(), detector_common::ENV_CAP);
    }

    #[test]
    fn reads_this_process_from_proc() {
        let clock = BootClock::now();
        let me = std::process::id();
        let p = Process::from_proc(Path::new("/proc"), me, &clock, 1024).unwrap();
        assert_eq!(p.pid, me);
        assert!(p.ppid > 0);
        let exe = std::env::current_exe().unwrap();
        assert_eq!(p.exepath, exe.to_string_lossy());
        assert_eq!(p.cwd, std::env::current_dir().unwrap().to_string_lossy());
        // Started in the last hour, not in the future.
        let now = clock.now_epoch_ns();
        assert!(p.start_ns <= now + 1_000_000_000 && now - p.start_ns < 3_600_000_000_000);
        // Standard descriptors exist for a test process.
        assert!(!p.fds.is_empty());
        // The exe's inode and times match stat(2) of the file.
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&exe).unwrap();
        assert_eq!((p.exe_ino, p.exe_ctime), (m.ino(), m.ctime()));
    }

    #[test]
    fn link_targets_become_fd_kinds() {
        assert_eq!(fd_from_link("/etc/passwd").kind, FdKind::File);
        assert_eq!(fd_from_link("socket:[123]").kind, FdKind::OtherSocket);
        assert_eq!(fd_from_link("pipe:[9]").kind, FdKind::Pipe);
        assert_eq!(fd_from_link("anon_inode:[eventfd]").kind, FdKind::Event);
        assert_eq!(fd_from_link("anon_inode:bpf-map").kind, FdKind::Bpf);
        let m = fd_from_link("/memfd:x (deleted)");
        assert_eq!((m.kind, m.name.as_str()), (FdKind::Memfd, "/memfd:x"));
    }
}
