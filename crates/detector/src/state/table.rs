//! The process table: bootstrapped from /proc, then kept current by fork, exec and exit.
//!
//! Owned by the single event-processing task: no locks. Lookups of unknown pids fall back to
//! reading /proc once (a process that started between the /proc scan and the attach, or
//! whose fork event was dropped).

use std::path::{Path, PathBuf};

use super::clock::BootClock;
use super::container::HOST_ID;
use super::hash::FastMap;
use super::process::Process;

/// What an exec event tells about the new image.
#[derive(Debug, Clone, Default)]
pub struct ExecInfo<'a> {
    /// Absolute path of the executable (`proc.exepath`).
    pub exepath: &'a str,
    /// NUL-separated argv.
    pub argv: &'a [u8],
    /// The new environment (NUL-separated), when the event carries it.
    pub env: Option<&'a [u8]>,
    pub comm: &'a str,
    /// New working directory, when the event carries it.
    pub cwd: Option<&'a str>,
    /// Container id from the cgroup, when the event carries the cgroup (`None` keeps the
    /// inherited one; `Some("host")` for host processes).
    pub container_id: Option<&'a str>,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub loginuid: u32,
    pub tty: u32,
    pub exe_upper_layer: bool,
    pub exe_from_memfd: bool,
    pub exe_ino: u64,
    /// (permitted, effective) capabilities after the exec, when the event carries them.
    pub caps: Option<(u64, u64)>,
    /// (session id, process group id, pid in its own namespace), when carried.
    pub ids: Option<(u32, u32, u32)>,
    /// Exe inode ctime and mtime, seconds since the epoch (0 = unknown).
    pub exe_times: (i64, i64),
}

/// All tracked processes, bounded.
pub struct ProcessTable {
    procs: FastMap<u32, Process>,
    max_processes: usize,
    max_fds: usize,
    /// Keep each process's environment (a loaded rule reads `proc.env`).
    keep_env: bool,
    proc_root: PathBuf,
    clock: BootClock,
    /// Processes not tracked because the table was full.
    pub refused: u64,
}

impl ProcessTable {
    pub fn new(max_processes: usize, max_fds: usize, clock: BootClock) -> Self {
        Self::with_proc_root("/proc", max_processes, max_fds, clock)
    }

    /// A table that reads processes from another procfs mount (tests, host /proc in a pod).
    pub fn with_proc_root(
        proc_root: impl AsRef<Path>,
        max_processes: usize,
        max_fds: usize,
        clock: BootClock,
    ) -> Self {
        ProcessTable {
            procs: FastMap::default(),
            max_processes: max_processes.max(1),
            max_fds,
            keep_env: false,
            proc_root: proc_root.as_ref().to_owned(),
            clock,
            refused: 0,
        }
    }

    pub fn clock(&self) -> &BootClock {
        &self.clock
    }

    pub fn max_fds(&self) -> usize {
        self.max_fds
    }

    /// Keep environments (read from /proc and from exec events): set before
    /// [`ProcessTable::bootstrap`] when a rule reads `proc.env`.
    pub fn set_keep_env(&mut self, on: bool) {
        self.keep_env = on;
    }

    /// `/proc/PID` as a [`Process`], with its environment when kept.
    fn load(&self, pid: u32) -> Option<Process> {
        let mut p = Process::from_proc(&self.proc_root, pid, &self.clock, self.max_fds)?;
        if self.keep_env {
            p.read_environ(&self.proc_root);
        }
        Some(p)
    }

    /// Read every process in /proc. Returns how many are tracked.
    pub fn bootstrap(&mut self) -> usize {
        if let Ok(entries) = std::fs::read_dir(&self.proc_root) {
            for e in entries.flatten() {
                if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                    && let Some(p) = self.load(pid)
                {
                    self.insert(p);
                }
            }
        }
        self.procs.len()
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    pub fn get(&self, pid: u32) -> Option<&Process> {
        self.procs.get(&pid)
    }

    pub fn get_mut(&mut self, pid: u32) -> Option<&mut Process> {
        self.procs.get_mut(&pid)
    }

    /// The process, reading it from /proc if it is not tracked yet.
    pub fn get_or_load(&mut self, pid: u32) -> Option<&mut Process> {
        if !self.procs.contains_key(&pid) {
            let p = self.load(pid)?;
            if !self.insert(p) {
                return None;
            }
        }
        self.procs.get_mut(&pid)
    }

    /// Track `p`, making room if the table is full. Returns false if it could not.
    pub fn insert(&mut self, p: Process) -> bool {
        if self.procs.len() >= self.max_processes && !self.procs.contains_key(&p.pid) {
            self.sweep_dead();
            if self.procs.len() >= self.max_processes {
                self.refused += 1;
                return false;
            }
        }
        self.procs.insert(p.pid, p);
        true
    }

    /// `parent` created the process `child` (a new thread group), started at `start_ns`.
    /// The child is a copy of the parent (image, credentials, cwd, descriptors).
    pub fn on_fork(&mut self, parent: u32, child: u32, start_ns: u64) {
        if parent == child {
            return;
        }
        let mut p = match self.get_or_load(parent) {
            Some(pp) => {
                let mut c = pp.clone();
                c.ppid = parent;
                c
            }
            None => match self.load(child) {
                Some(c) => c,
                None => Process {
                    ppid: parent,
                    container_id: HOST_ID.to_owned(),
                    ..Process::default()
                },
            },
        };
        p.pid = child;
        p.start_ns = start_ns;
        self.insert(p);
    }

    /// `pid` executed a new image.
    pub fn on_exec(&mut self, pid: u32, ppid: u32, e: &ExecInfo<'_>) {
        if !self.procs.contains_key(&pid) {
            let loaded = self.get_or_load(pid).is_some();
            if !loaded {
                let p = Process {
                    pid,
                    ppid,
                    start_ns: self.clock.now_epoch_ns(),
                    container_id: HOST_ID.to_owned(),
                    ..Process::default()
                };
                if !self.insert(p) {
                    return;
                }
            }
        }
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        if ppid != 0 {
            p.ppid = ppid;
        }
        p.exepath.clear();
        p.exepath.push_str(e.exepath);
        p.comm.clear();
        p.comm.push_str(e.comm);
        p.set_argv(e.argv);
        match e.env {
            Some(env) if self.keep_env => p.set_env(env),
            // An exec replaces the environment: without it in the event, the old one is
            // no longer known.
            _ => p.env.clear(),
        }
        if let Some(cwd) = e.cwd {
            p.cwd.clear();
            p.cwd.push_str(cwd);
        }
        if let Some(cid) = e.container_id {
            p.container_id.clear();
            p.container_id.push_str(cid);
        }
        p.uid = e.uid;
        p.gid = e.gid;
        p.euid = e.euid;
        p.egid = e.egid;
        p.loginuid = e.loginuid;
        p.tty = e.tty;
        p.exe_upper_layer = e.exe_upper_layer;
        p.exe_from_memfd = e.exe_from_memfd;
        p.exe_ino = e.exe_ino;
        match e.caps {
            Some((permitted, effective)) => {
                p.cap_permitted = permitted;
                p.cap_effective = effective;
            }
            // Without them: an exec by a non-root user clears the effective and permitted
            // sets (file capabilities and ambient sets aside); root keeps them.
            None if e.euid != 0 && e.uid != 0 => {
                p.cap_effective = 0;
                p.cap_permitted = 0;
            }
            None => {}
        }
        if let Some((sid, pgid, vpid)) = e.ids {
            p.set_ids(sid, pgid, vpid);
        }
        p.exe_ctime = e.exe_times.0;
        p.exe_mtime = e.exe_times.1;
        p.fds.close_on_exec();
    }

    /// The thread group `pid` ended: forget it.
    pub fn on_exit(&mut self, pid: u32) -> Option<Process> {
        self.procs.remove(&pid)
    }

    /// Ancestor `n` of `p` (0 is `p` itself, 1 its parent). Stops at pid 1 / unknown pids.
    pub fn ancestor<'a>(&'a self, p: &'a Process, n: usize) -> Option<&'a Process> {
        let mut cur = p;
        for _ in 0..n {
            if cur.ppid == 0 || cur.ppid == cur.pid {
                return None;
            }
            cur = self.procs.get(&cur.ppid)?;
        }
        Some(cur)
    }

    /// Every ancestor, parent first.
    pub fn ancestors<'a>(&'a self, p: &'a Process) -> impl Iterator<Item = &'a Process> + 'a {
        let mut cur = Some(p);
        // Bounded, in case a corrupted ppid chain loops.
        (0..64).map_while(move |_| {
            let c = cur?;
            let next = if c.ppid == 0 || c.ppid == c.pid {
                None
            } else {
                self.procs.get(&c.ppid)
            };
            cur = next;
            next
        })
    }

    /// Every tracked process, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Process> {
        self.procs.values()
    }

    /// Drop processes whose /proc entry is gone (their exit event was lost).
    pub fn sweep_dead(&mut self) -> usize {
        let before = self.procs.len();
        let root = self.proc_root.clone();
        self.procs
            .retain(|pid, _| root.join(pid.to_string()).exists());
        before - self.procs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ProcessTable {
        // A proc root with nothing in it: every process comes from events.
        let empty = std::env::temp_dir().join(format!("aerie-noproc-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        ProcessTable::with_proc_root(&empty, 8, 16, BootClock::fixed(0))
    }

    fn exec<'a>(path: &'a str, argv: &'a [u8], comm: &'a str) -> ExecInfo<'a> {
        ExecInfo {
            exepath: path,
            argv,
            comm,
            container_id: Some("host"),
            loginuid: u32::MAX,
            ..Default::default()
        }
    }

    #[test]
    fn fork_exec_exit_keep_lineage() {
        let mut t = table();
        t.on_exec(100, 1, &exec("/usr/sbin/httpd", b"httpd\0-D\0", "httpd"));
        t.on_fork(100, 101, 42);
        let child = t.get(101).unwrap();
        assert_eq!(
            (child.ppid, child.comm.as_str(), child.start_ns),
            (100, "httpd", 42)
        );
        t.on_exec(101, 100, &exec("/bin/sh", b"sh\0-c\0id\0", "sh"));
        let sh = t.get(101).unwrap();
        assert_eq!(sh.cmdline, "sh -c id");
        assert_eq!(t.ancestor(sh, 1).unwrap().comm, "httpd");
        assert_eq!(t.ancestor(sh, 0).unwrap().comm, "sh");
        assert!(t.ancestor(sh, 2).is_none());
        let names: Vec<_> = t.ancestors(sh).map(|p| p.comm.as_str()).collect();
        assert_eq!(names, ["httpd"]);
        assert!(t.on_exit(101).is_some());
        assert!(t.get(101).is_none());
    }

    #[test]
    fn environment_is_kept_only_when_asked_and_replaced_by_exec() {
        let env: &[u8] = b"HOME=/root\0GLIBC_TUNABLES=glibc.malloc.mxfast=0\0";
        let with_env = |argv: &'static [u8]| ExecInfo {
            env: Some(env),
            ..exec("/bin/true", argv, "true")
        };
        let mut t = table();
        t.on_exec(100, 1, &with_env(b"true\0"));
        assert!(t.get(100).unwrap().env.is_empty(), "not kept unless asked");

        t.set_keep_env(true);
        t.on_exec(100, 1, &with_env(b"true\0"));
        let p = t.get(100).unwrap();
        assert_eq!(
            p.env_var(b"GLIBC_TUNABLES"),
            Some(&b"glibc.malloc.mxfast=0"[..])
        );
        assert_eq!(p.env_var(b"HOME"), Some(&b"/root"[..]));
        assert_eq!(
            p.env_var(b"HOM"),
            None,
            "a prefix of a name is not the name"
        );
        assert_eq!(p.env_entries().count(), 2);
        // A child inherits it; an exec whose event carries none forgets it.
        t.on_fork(100, 101, 1);
        assert_eq!(t.get(101).unwrap().env, env);
        t.on_exec(101, 100, &exec("/bin/sh", b"sh\0", "sh"));
        assert!(t.get(101).unwrap().env.is_empty());
    }

    #[test]
    fn fork_inherits_descriptors_and_container() {
        let mut t = table();
        let mut e = exec("/bin/sh", b"sh\0", "sh");
        e.container_id = Some("3f2a9c1b7d4e");
        t.on_exec(10, 1, &e);
        let p = t.get_mut(10).unwrap();
        p.fds.insert(
            5,
            super::super::fd::FdInfo::file("/etc/passwd", "/etc/passwd", 0, false),
            16,
        );
        t.on_fork(10, 11, 7);
        let c = t.get(11).unwrap();
        assert_eq!(c.container_id, "3f2a9c1b7d4e");
        assert_eq!(c.fds.get(5).unwrap().name, "/etc/passwd");
        // exec without cgroup info keeps the inherited container.
        let mut e2 = exec("/bin/ls", b"ls\0", "ls");
        e2.container_id = None;
        t.on_exec(11, 10, &e2);
        assert_eq!(t.get(11).unwrap().container_id, "3f2a9c1b7d4e");
    }

    #[test]
    fn table_is_bounded() {
        // Every pid "exists" in this proc root, so sweeping cannot make room.
        let root = std::env::temp_dir().join(format!("aerie-fullproc-{}", std::process::id()));
        for pid in 1..=20 {
            std::fs::create_dir_all(root.join(pid.to_string())).unwrap();
        }
        let mut t = ProcessTable::with_proc_root(&root, 8, 16, BootClock::fixed(0));
        for pid in 1..=20 {
            t.on_exec(pid, 0, &exec("/bin/true", b"true\0", "true"));
        }
        assert_eq!(t.len(), 8);
        assert_eq!(t.refused, 12);
        // Once their /proc entries are gone, dead processes make room.
        std::fs::remove_dir(root.join("1")).unwrap();
        t.on_exec(21, 0, &exec("/bin/true", b"true\0", "true"));
        assert!(t.get(21).is_some() && t.get(1).is_none());
    }

    #[test]
    fn bootstrap_finds_this_process_and_its_parent() {
        let mut t = ProcessTable::new(1 << 16, 64, BootClock::now());
        assert!(t.bootstrap() > 1);
        let me = t.get(std::process::id()).unwrap();
        let parent = t.ancestor(me, 1).unwrap();
        assert_eq!(parent.pid, me.ppid);
        assert!(t.get(1).is_some());
    }
}
