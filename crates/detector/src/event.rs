//! The decoded user-space event model: what the eBPF layer (`crate::ebpf`) hands to the
//! state tracker and the rule fields.
//!
//! One [`Event`] is either a syscall *exit* (Falco `evt.dir` = `<`: every syscall is
//! reported once, at exit, with the arguments captured at entry and the return value) or a
//! process lifecycle event from the scheduler tracepoints (fork, exec, exit).
//!
//! Conventions:
//! - `pid` is the thread group id (what user space calls a pid), `tid` the thread id.
//! - Ids that the kernel encodes as `-1` ("unchanged", e.g. `setresuid(-1, 0, -1)`) are kept
//!   as `u32::MAX` in the raw form and mapped to `None` in typed fields.
//! - Paths are exactly what the process passed (not resolved against dirfd or cwd); the
//!   state layer resolves them. Invalid UTF-8 is replaced (U+FFFD).
//! - File descriptor arguments are `i32` as the kernel reads them; `AT_FDCWD` is -100.

use std::net::SocketAddr;

/// Falco's `evt.dir` for every syscall event we emit.
pub const DIRECTION_EXIT: char = '<';
/// `AT_FDCWD`.
pub const AT_FDCWD: i32 = -100;

/// `task_struct::comm`: up to 15 bytes, kept inline (no allocation per event).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Comm {
    bytes: [u8; 16],
    len: u8,
}

impl Comm {
    /// From the kernel's NUL-padded array.
    pub fn from_kernel(raw: &[u8; 16]) -> Self {
        let len = raw.iter().position(|&b| b == 0).unwrap_or(16);
        Self {
            bytes: *raw,
            len: len as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Lossy UTF-8 view (comm is usually ASCII; invalid bytes become U+FFFD).
    pub fn to_str_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_str_lossy())
    }
}

impl std::fmt::Display for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_str_lossy())
    }
}

/// Data-quality flags of one event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventFlags {
    /// A path, argv or address hit its cap (see `detector_common::{STR_CAP, ARGV_CAP}`).
    pub truncated: bool,
    /// Syscall exit seen without its entry (started before attach): entry-captured
    /// arguments (paths, addresses, argv) are missing.
    pub no_entry: bool,
    /// Reading some user memory failed (bad pointer, page not resident).
    pub read_failed: bool,
    /// `ppid`, `euid`, `egid`, `loginuid` and the capability sets were read for this event
    /// (process events and credential-changing syscalls). Otherwise they are zero / `None`
    /// and the process table's values stand.
    pub creds: bool,
}

/// One decoded kernel event.
#[derive(Clone, Debug)]
pub struct Event {
    /// Wall-clock time, ns since the Unix epoch. The kernel stamps CLOCK_BOOTTIME
    /// (`bpf_ktime_get_boot_ns`); the loader adds `CLOCK_REALTIME - CLOCK_BOOTTIME` measured
    /// once at start, so events are ordered and immune to suspend, but a later wall-clock
    /// step (NTP) is not followed.
    pub ts: u64,
    /// The raw CLOCK_BOOTTIME stamp (merge order, latency measurements).
    pub boot_ns: u64,
    /// Thread group id of the task that made the syscall / the current task.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent's pid (`real_parent->tgid`) at the time of the event.
    pub ppid: u32,
    /// Real uid / gid, effective uid / gid at the time of the event (after the syscall).
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// Audit login uid; `None` when unset (`-1`) or the kernel lacks CONFIG_AUDIT.
    pub loginuid: Option<u32>,
    /// Capability sets of the thread after the event (`thread.cap_permitted`,
    /// `thread.cap_effective`): bit N = capability N (CAP_SYS_ADMIN = 21, ...).
    pub cap_permitted: u64,
    pub cap_effective: u64,
    /// `comm` after the event (for a successful execve: the new program's).
    pub comm: Comm,
    pub flags: EventFlags,
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug)]
pub enum EventKind {
    Syscall(SyscallEvent),
    /// `sched_process_exec`: the current task now runs a new image.
    Exec(ExecEvent),
    /// `sched_process_fork`: the current task created a child (process or thread).
    Fork(ForkEvent),
    /// `sched_process_exit`: the current task ended.
    Exit(ExitEvent),
}

/// A syscall exit.
#[derive(Clone, Debug)]
pub struct SyscallEvent {
    /// x86_64 syscall number.
    pub nr: u16,
    /// Falco's `evt.type` name (`"openat"`, `"connect"`, ...), `"unknown"` if not in the table.
    pub name: &'static str,
    /// Return value (`evt.res` / `evt.rawres`): negative errno on failure.
    pub ret: i64,
    /// The six raw argument registers.
    pub raw_args: [u64; 6],
    /// Typed arguments.
    pub args: SyscallArgs,
}

impl SyscallEvent {
    /// `evt.failed`.
    pub fn failed(&self) -> bool {
        self.ret < 0
    }
}

/// A decoded socket address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SockAddr {
    /// AF_INET / AF_INET6.
    Inet(SocketAddr),
    /// AF_UNIX: the path (abstract names start with `@`), empty when unnamed.
    Unix(String),
    /// Any other family (AF_NETLINK, AF_PACKET, ...), or too short to decode.
    Other { family: u16 },
}

/// Typed syscall arguments, grouped by family. Integers (flags, modes) are raw kernel values.
#[derive(Clone, Debug, PartialEq)]
pub enum SyscallArgs {
    /// open, openat, openat2, creat. `dirfd` is `None` for open/creat; for creat `flags`
    /// is `O_CREAT|O_WRONLY|O_TRUNC`; for openat2 flags/mode come from `struct open_how`.
    /// The new fd is the return value.
    Open {
        dirfd: Option<i32>,
        path: String,
        flags: u32,
        mode: u32,
    },
    /// execve, execveat. `argv` is read at entry (capped at `detector_common::ARGV_MAX_ARGS`
    /// entries / `ARGV_CAP` bytes); the filename exactly as passed.
    Execve {
        dirfd: Option<i32>,
        filename: String,
        argv: Vec<String>,
        flags: u32,
    },
    /// clone, clone3, fork, vfork: `flags` is `None` for clone3 (in a struct) and for
    /// fork/vfork. The child's pid is the return value in the parent.
    Clone { flags: Option<u64> },
    /// setuid / setgid.
    SetId { id: u32 },
    /// setreuid / setregid (`None` = -1, unchanged).
    SetReId {
        real: Option<u32>,
        effective: Option<u32>,
    },
    /// setresuid / setresgid (`None` = -1, unchanged).
    SetResId {
        real: Option<u32>,
        effective: Option<u32>,
        saved: Option<u32>,
    },
    /// capset: pointers only (not dereferenced).
    Capset { header: u64, data: u64 },
    /// ptrace.
    Ptrace {
        request: i64,
        pid: i32,
        addr: u64,
        data: u64,
    },
    /// kill(pid, sig), tkill(tid, sig), tgkill(tgid, tid, sig) — `pid` is the target
    /// (tid for tkill/tgkill).
    Kill { pid: i32, sig: i32 },
    /// chdir (path) or fchdir (fd).
    Chdir {
        path: Option<String>,
        fd: Option<i32>,
    },
    /// close.
    Close { fd: i32 },
    /// dup (`newfd` = `None`: the result is the return value), dup2, dup3.
    Dup {
        oldfd: i32,
        newfd: Option<i32>,
        flags: u32,
    },
    /// symlink/symlinkat (`symbolic`), link/linkat. `target` is the existing file (or the
    /// symlink's content), `linkpath` the new name.
    Link {
        symbolic: bool,
        target_dirfd: Option<i32>,
        target: String,
        link_dirfd: Option<i32>,
        linkpath: String,
        flags: u32,
    },
    /// unlink, unlinkat (`flags` may hold AT_REMOVEDIR), also rmdir.
    Unlink {
        dirfd: Option<i32>,
        path: String,
        flags: u32,
    },
    /// rename, renameat, renameat2.
    Rename {
        old_dirfd: Option<i32>,
        oldpath: String,
        new_dirfd: Option<i32>,
        newpath: String,
        flags: u32,
    },
    /// mkdir, mkdirat.
    Mkdir {
        dirfd: Option<i32>,
        path: String,
        mode: u32,
    },
    /// chmod, fchmodat, fchmodat2 (`path`), fchmod (`fd`).
    Chmod {
        dirfd: Option<i32>,
        path: Option<String>,
        fd: Option<i32>,
        mode: u32,
    },
    /// memfd_create. The fd is the return value.
    MemfdCreate { name: String, flags: u32 },
    /// socket. The fd is the return value.
    Socket { domain: i32, ty: i32, protocol: i32 },
    /// connect (address captured at entry).
    /// `local`: the socket's own address after the call (the kernel reads it at exit).
    Connect {
        fd: i32,
        addr: Option<SockAddr>,
        local: Option<SockAddr>,
    },
    /// bind.
    Bind { fd: i32, addr: Option<SockAddr> },
    /// listen.
    Listen { fd: i32, backlog: i32 },
    /// accept, accept4: the peer address (read at exit), the new fd is the return value.
    Accept {
        fd: i32,
        peer: Option<SockAddr>,
        flags: u32,
    },
    /// sendto, sendmsg: only the destination address (None on connected sockets).
    Send { fd: i32, addr: Option<SockAddr> },
    /// init_module (image in memory), finit_module (from `fd`).
    InitModule {
        fd: Option<i32>,
        len: u64,
        flags: u32,
    },
    /// mount.
    Mount {
        source: Option<String>,
        target: String,
        fstype: Option<String>,
        flags: u64,
    },
    /// umount2.
    Umount { target: String, flags: u32 },
    /// unshare.
    Unshare { flags: u64 },
    /// setns.
    Setns { fd: i32, nstype: i32 },
    /// bpf(cmd, ...).
    Bpf { cmd: i32 },
    /// A syscall without a typed form; see `raw_args`.
    Other,
}

/// Process details from the kernel's task and exe (exec, fork child).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcDetails {
    /// Task start, wall-clock ns (`proc.start_ts` style; `task->start_boottime` + offset).
    pub start_ts: u64,
    /// Inode number and device (kernel dev_t: major << 20 | minor) of the exe.
    pub exe_ino: u64,
    pub exe_dev: u32,
    /// Filesystem magic of the exe's superblock (0x794c7630 = overlayfs).
    pub exe_fs_magic: u32,
    /// The exe lives in the overlayfs upper layer (`proc.is_exe_upper_layer`).
    pub exe_upper_layer: bool,
    /// The exe is a memfd (`proc.is_exe_from_memfd`).
    pub exe_from_memfd: bool,
    /// The exe lives on overlayfs.
    pub exe_on_overlay: bool,
    /// Controlling tty, encoded as /proc/PID/stat's `tty_nr` and Falco's `proc.tty`
    /// (`minor & 0xff | major << 8 | (minor & !0xff) << 12`), 0 = none.
    pub tty: u32,
    /// cgroup v2 id of the task's cgroup.
    pub cgroup_id: u64,
    /// Process group and session ids, host pid namespace (`proc.vpgid.*`, `proc.sname`
    /// look these up; a process is its group's leader when `pgid == pid`).
    pub pgid: u32,
    pub sid: u32,
    /// Pid inside the task's own pid namespace (`proc.vpid`; equals the host pid on the host).
    pub vpid: u32,
    /// Exe inode ctime / mtime, seconds since the epoch (`proc.exe_ino.ctime` / `.mtime`);
    /// 0 for fork events' children when unreadable.
    pub exe_ctime: i64,
    pub exe_mtime: i64,
}

/// `sched_process_exec`.
#[derive(Clone, Debug)]
pub struct ExecEvent {
    /// `linux_binprm::filename`: the path as given to execve (e.g. `/bin/sh` for a script's
    /// interpreter is NOT substituted: this is the file the user executed).
    pub filename: String,
    /// The new image's argv (from `mm->arg_start..arg_end`, capped at `ARGV_CAP` bytes).
    pub argv: Vec<String>,
    /// The pid before exec (differs from `pid` only when a non-leader thread exec'd).
    pub old_pid: u32,
    /// cgroup v2 path (`/system.slice/docker-<id>.scope`, ...), `None` if unreadable.
    pub cgroup: Option<String>,
    /// Working directory, absolute within its mount namespace root when the walk fit
    /// (mount crossings are not followed: best effort, prefer /proc when it exists).
    pub cwd: Option<String>,
    /// Name of the exe's dentry (`memfd:x (deleted)` style names show memfd execs).
    pub exe_name: Option<String>,
    /// The new image's environment (`NAME=value` entries, NUL-separated, capped at
    /// `ENV_CAP` bytes) when the capture reads it (`CaptureConfig::capture_env`).
    pub env: Option<Vec<u8>>,
    pub details: ProcDetails,
}

/// `sched_process_fork`: the header fields describe the parent (current task).
#[derive(Clone, Debug)]
pub struct ForkEvent {
    pub child_pid: u32,
    pub child_tid: u32,
    /// `true` for a new thread in the same process (`child_pid == pid`).
    pub is_thread: bool,
    pub details: ProcDetails,
}

/// `sched_process_exit`.
#[derive(Clone, Debug)]
pub struct ExitEvent {
    /// `task->exit_code` (wait status encoding: `code << 8 | signal`).
    pub exit_code: i32,
    /// The whole process ended: this was its last live thread (`signal->live` reached 0).
    /// Treat the process as gone only then; a leader that exits early (pthread_exit in
    /// main) while other threads run has `leader == false`.
    pub leader: bool,
    /// Start time (wall ns) of the exiting task, to match the right process entry.
    pub start_ts: u64,
}
