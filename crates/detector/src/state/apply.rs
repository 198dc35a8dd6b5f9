//! Keeping the process and fd tables current from syscall exits, and telling field extraction
//! which descriptor an event is about.
//!
//! Order matters for what rules see, and follows Falco: an `open` adds its fd *before* the
//! rules run (so `fd.name` is the opened file), while `close` and credential changes apply
//! *after* (so `fd.name` is the closed file and `user.uid` is the caller's uid before
//! `setuid`).

use super::fd::{FdInfo, FdKind};
use super::paths::resolve_into;
use super::process::Process;
use super::table::ProcessTable;
use crate::fields::flags::{O_ACCMODE, O_CREAT, O_DIRECTORY, O_TMPFILE, O_TRUNC};
use crate::fields::sysevent::{Creds, SockAddr, SysEvent};

/// `AT_FDCWD`.
const AT_FDCWD: i32 = -100;
/// `EINPROGRESS`, as a negative return value.
const EINPROGRESS: i64 = -115;

/// The descriptor an event refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFd {
    None,
    /// An fd in the process's table (`fd.num`).
    Num(i32),
    /// Not in the table: the failed `open` attempt described by [`Tracker::transient`].
    Transient,
}

/// Applies syscall exits to a [`ProcessTable`].
pub struct Tracker {
    pub table: ProcessTable,
    /// The fd view of an event whose fd is not in the table (a failed open).
    pub transient: FdInfo,
    path_buf: String,
}

impl Tracker {
    pub fn new(table: ProcessTable) -> Self {
        Tracker {
            table,
            transient: FdInfo::new(FdKind::File, String::new()),
            path_buf: String::with_capacity(256),
        }
    }

    /// Apply what must be visible to the rules evaluating `ev`; returns the event's fd.
    pub fn before(&mut self, ev: &SysEvent<'_>) -> EventFd {
        let max_fds = self.table.max_fds();
        let Some(p) = self.table.get_or_load(ev.pid) else {
            return EventFd::None;
        };
        if !is_cred_change(ev.name)
            && let Some(c) = ev.creds
        {
            set_creds(p, &c);
        }
        let res = ev.res;
        match ev.name {
            "open" | "openat" | "openat2" | "creat" => {
                let (dirfd, path_arg, flags) = match ev.name {
                    "open" => (AT_FDCWD, 0, ev.args[1]),
                    "creat" => (AT_FDCWD, 0, 0o1 | O_CREAT | O_TRUNC),
                    _ => (ev.fd_arg(0), 1, ev.args[2]),
                };
                let raw = String::from_utf8_lossy(ev.str_arg(path_arg));
                resolve_at(p, dirfd, &raw, &mut self.path_buf);
                let is_dir = flags & O_DIRECTORY != 0 && flags & O_TMPFILE != O_TMPFILE;
                let info = FdInfo::file(&self.path_buf, &raw, flags as u32, is_dir);
                if res >= 0 {
                    p.fds.insert(res as i32, info, max_fds);
                    EventFd::Num(res as i32)
                } else {
                    self.transient = info;
                    EventFd::Transient
                }
            }
            "memfd_create" => {
                if res < 0 {
                    return EventFd::None;
                }
                let name = String::from_utf8_lossy(ev.str_arg(0));
                let mut info = FdInfo::new(FdKind::Memfd, format!("memfd:{name}"));
                info.flags = O_ACCMODE as u32 & 2;
                p.fds.insert(res as i32, info, max_fds);
                EventFd::Num(res as i32)
            }
            "socket" => {
                if res < 0 {
                    return EventFd::None;
                }
                let info = FdInfo::socket(ev.args[0], ev.args[1], ev.args[2]);
                p.fds.insert(res as i32, info, max_fds);
                EventFd::Num(res as i32)
            }
            "connect" => {
                let fd = ev.fd_arg(0);
                if (res == 0 || res == EINPROGRESS)
                    && let Some(info) = p.fds.get_mut(fd)
                {
                    match ev.addr {
                        Some(SockAddr::Inet(remote)) => info.set_tuple(ev.local, remote, false),
                        Some(SockAddr::Unix(path, _)) => {
                            info.kind = FdKind::Unix;
                            info.name = String::from_utf8_lossy(path).into_owned();
                            info.connected = true;
                        }
                        _ => {}
                    }
                }
                EventFd::Num(fd)
            }
            "accept" | "accept4" => {
                if res < 0 {
                    return EventFd::Num(ev.fd_arg(0));
                }
                let listener = p.fds.get(ev.fd_arg(0));
                let mut info = match listener {
                    Some(l) => FdInfo {
                        name: String::new(),
                        remote: None,
                        connected: false,
                        ..l.clone()
                    },
                    None => FdInfo::new(FdKind::OtherSocket, String::new()),
                };
                match ev.addr {
                    Some(SockAddr::Inet(remote)) => {
                        let local = info.local;
                        info.set_tuple(local, remote, true);
                    }
                    Some(SockAddr::Unix(path, _)) => {
                        info.kind = FdKind::Unix;
                        info.name = String::from_utf8_lossy(path).into_owned();
                        info.connected = true;
                    }
                    _ => {}
                }
                p.fds.insert(res as i32, info, max_fds);
                EventFd::Num(res as i32)
            }
            "bind" => {
                let fd = ev.fd_arg(0);
                if res == 0
                    && let Some(info) = p.fds.get_mut(fd)
                {
                    match ev.addr {
                        Some(SockAddr::Inet(local)) => info.set_local(local),
                        Some(SockAddr::Unix(path, _)) => {
                            info.kind = FdKind::Unix;
                            info.name = String::from_utf8_lossy(path).into_owned();
                        }
                        _ => {}
                    }
                }
                EventFd::Num(fd)
            }
            "listen" => {
                let fd = ev.fd_arg(0);
                if res == 0
                    && let Some(info) = p.fds.get_mut(fd)
                {
                    info.is_server = true;
                }
                EventFd::Num(fd)
            }
            "sendto" | "sendmsg" => {
                let fd = ev.fd_arg(0);
                if res >= 0
                    && let Some(info) = p.fds.get_mut(fd)
                    && !info.connected
                    && let Some(SockAddr::Inet(remote)) = ev.addr
                {
                    info.set_tuple(None, remote, false);
                }
                EventFd::Num(fd)
            }
            "dup" | "dup2" | "dup3" => {
                let old = ev.fd_arg(0);
                if res >= 0 {
                    p.fds.dup(old, res as i32, max_fds);
                    EventFd::Num(res as i32)
                } else {
                    EventFd::Num(old)
                }
            }
            "chdir" => {
                if res == 0 {
                    let raw = String::from_utf8_lossy(ev.str_arg(0));
                    resolve_into(&p.cwd, &raw, &mut self.path_buf);
                    p.cwd.clone_from(&self.path_buf);
                }
                EventFd::None
            }
            "fchdir" => {
                let fd = ev.fd_arg(0);
                if res == 0
                    && let Some(name) = p.fds.get(fd).map(|f| f.name.clone())
                {
                    p.cwd = name;
                }
                EventFd::Num(fd)
            }
            "eventfd2" | "signalfd4" | "epoll_create1" | "inotify_init1" | "userfaultfd"
            | "pidfd_open" | "io_uring_setup" | "bpf" => {
                if res < 0 || (ev.name == "bpf" && !bpf_returns_fd(ev.args[0])) {
                    return EventFd::None;
                }
                let kind = match ev.name {
                    "eventfd2" => FdKind::Event,
                    "signalfd4" => FdKind::Signalfd,
                    "epoll_create1" => FdKind::Eventpoll,
                    "inotify_init1" => FdKind::Inotify,
                    "userfaultfd" => FdKind::Userfaultfd,
                    "pidfd_open" => FdKind::Pidfd,
                    "io_uring_setup" => FdKind::IoUring,
                    _ => FdKind::Bpf,
                };
                p.fds
                    .insert(res as i32, FdInfo::new(kind, String::new()), max_fds);
                EventFd::Num(res as i32)
            }
            "close" | "fchmod" | "finit_module" | "setns" | "read" | "write" | "ioctl"
            | "fcntl" | "recvfrom" | "recvmsg" | "ftruncate" | "fchown" => {
                EventFd::Num(ev.fd_arg(0))
            }
            _ => EventFd::None,
        }
    }

    /// Apply what the rules must not see yet: closes and credential changes.
    pub fn after(&mut self, ev: &SysEvent<'_>) {
        let Some(p) = self.table.get_mut(ev.pid) else {
            return;
        };
        if ev.name == "close" && ev.res == 0 {
            p.fds.remove(ev.fd_arg(0));
        }
        if is_cred_change(ev.name)
            && let Some(c) = ev.creds
        {
            set_creds(p, &c);
        }
    }
}

/// Credentials read by the kernel with a process record (fork, exec): the process table
/// keeps them for the syscall records that do not carry them.
pub(crate) fn set_creds(p: &mut Process, c: &Creds) {
    p.uid = c.uid;
    p.gid = c.gid;
    p.euid = c.euid;
    p.egid = c.egid;
    p.loginuid = c.loginuid;
    p.cap_permitted = c.cap_permitted;
    p.cap_effective = c.cap_effective;
}

/// Syscalls that change the caller's credentials: their records carry fresh creds
/// (`detector_common::spec::CREDS`), the only syscall records that do.
pub(crate) fn is_cred_change(name: &str) -> bool {
    matches!(
        name,
        "setuid"
            | "setgid"
            | "setreuid"
            | "setregid"
            | "setresuid"
            | "setresgid"
            | "setfsuid"
            | "setfsgid"
            | "capset"
    )
}

/// Commands of `bpf(2)` whose return value is a new descriptor.
fn bpf_returns_fd(cmd: u64) -> bool {
    // MAP_CREATE, PROG_LOAD, OBJ_GET, BTF_LOAD, RAW_TRACEPOINT_OPEN, LINK_CREATE and the
    // *_GET_FD_BY_ID family.
    matches!(cmd, 0 | 5 | 7 | 13 | 14 | 17 | 18 | 19 | 28 | 29)
}

/// Resolve `path` relative to `dirfd` (or the cwd for AT_FDCWD) into `out`.
fn resolve_at(p: &Process, dirfd: i32, path: &str, out: &mut String) {
    let base = if path.starts_with('/') || dirfd == AT_FDCWD {
        p.cwd.as_str()
    } else {
        match p.fds.get(dirfd) {
            Some(d) => d.name.as_str(),
            None => p.cwd.as_str(),
        }
    };
    let base = if base.is_empty() { "/" } else { base };
    resolve_into(base, path, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::clock::BootClock;
    use crate::state::table::ExecInfo;

    fn tracker() -> Tracker {
        let empty = std::env::temp_dir().join(format!("aerie-apply-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let mut t = ProcessTable::with_proc_root(&empty, 64, 64, BootClock::fixed(0));
        t.on_exec(
            50,
            1,
            &ExecInfo {
                exepath: "/bin/sh",
                argv: b"sh\0",
                comm: "sh",
                cwd: Some("/home/u"),
                container_id: Some("host"),
                ..Default::default()
            },
        );
        Tracker::new(t)
    }

    fn ev(name: &'static str, res: i64) -> SysEvent<'static> {
        SysEvent {
            name,
            pid: 50,
            tid: 50,
            res,
            ..Default::default()
        }
    }

    #[test]
    fn open_resolves_paths_and_close_applies_after() {
        let mut t = tracker();
        let mut e = ev("openat", 3);
        e.args[0] = AT_FDCWD as u32 as u64;
        e.strs[1] = b"../../etc/../etc/shadow\0";
        e.args[2] = 0;
        assert_eq!(t.before(&e), EventFd::Num(3));
        let f = t.table.get(50).unwrap().fds.get(3).unwrap();
        assert_eq!(f.name, "/etc/shadow");
        assert_eq!(f.raw_name(), "../../etc/../etc/shadow");

        let mut c = ev("close", 0);
        c.args[0] = 3;
        assert_eq!(t.before(&c), EventFd::Num(3));
        assert!(
            t.table.get(50).unwrap().fds.get(3).is_some(),
            "visible to rules"
        );
        t.after(&c);
        assert!(t.table.get(50).unwrap().fds.get(3).is_none());
    }

    #[test]
    fn failed_open_is_transient_and_openat_uses_dirfd() {
        let mut t = tracker();
        let mut d = ev("openat", 4);
        d.args[0] = AT_FDCWD as u32 as u64;
        d.strs[1] = b"/var/log\0";
        d.args[2] = O_DIRECTORY;
        t.before(&d);
        let mut e = ev("openat", -2);
        e.args[0] = 4;
        e.strs[1] = b"syslog\0";
        e.args[2] = 0o1 | O_TRUNC;
        assert_eq!(t.before(&e), EventFd::Transient);
        assert_eq!(t.transient.name, "/var/log/syslog");
        assert_eq!(
            t.table.get(50).unwrap().fds.get(4).unwrap().kind,
            FdKind::Directory
        );
    }

    #[test]
    fn socket_connect_dup_track_tuples() {
        let mut t = tracker();
        let mut s = ev("socket", 5);
        s.args = [2, 1, 0, 0, 0, 0];
        t.before(&s);
        let mut c = ev("connect", 0);
        c.args[0] = 5;
        c.addr = Some(SockAddr::Inet("127.0.0.1:4444".parse().unwrap()));
        c.local = Some("127.0.0.1:51000".parse().unwrap());
        t.before(&c);
        let mut d = ev("dup2", 1);
        d.args = [5, 1, 0, 0, 0, 0];
        assert_eq!(t.before(&d), EventFd::Num(1));
        let f = t.table.get(50).unwrap().fds.get(1).unwrap();
        assert_eq!(f.kind, FdKind::Ipv4);
        assert_eq!(f.server().unwrap().to_string(), "127.0.0.1:4444");
        // The local port the kernel picked names the client side, as in Falco.
        assert_eq!(f.name, "127.0.0.1:51000->127.0.0.1:4444");
        assert!(f.connected);
    }

    #[test]
    fn accept_inherits_listener_local_address() {
        let mut t = tracker();
        let mut s = ev("socket", 3);
        s.args = [2, 1, 0, 0, 0, 0];
        t.before(&s);
        let mut b = ev("bind", 0);
        b.args[0] = 3;
        b.addr = Some(SockAddr::Inet("0.0.0.0:8080".parse().unwrap()));
        t.before(&b);
        let mut l = ev("listen", 0);
        l.args[0] = 3;
        t.before(&l);
        let mut a = ev("accept4", 6);
        a.args[0] = 3;
        a.addr = Some(SockAddr::Inet("10.0.0.9:40000".parse().unwrap()));
        t.before(&a);
        let f = t.table.get(50).unwrap().fds.get(6).unwrap();
        assert_eq!(f.name, "10.0.0.9:40000->0.0.0.0:8080");
        assert_eq!(f.server().unwrap().port(), 8080);
        assert!(f.is_server);
    }

    #[test]
    fn setuid_credentials_change_after_the_rules() {
        let mut t = tracker();
        t.table.get_mut(50).unwrap().euid = 1000;
        let mut e = ev("setuid", 0);
        e.creds = Some(Creds::default());
        t.before(&e);
        assert_eq!(t.table.get(50).unwrap().euid, 1000);
        t.after(&e);
        assert_eq!(t.table.get(50).unwrap().euid, 0);
    }

    #[test]
    fn chdir_updates_cwd() {
        let mut t = tracker();
        let mut e = ev("chdir", 0);
        e.strs[0] = b"../x\0";
        t.before(&e);
        assert_eq!(t.table.get(50).unwrap().cwd, "/home/x");
    }
}
