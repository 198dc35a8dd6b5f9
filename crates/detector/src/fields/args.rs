//! `evt.arg.NAME` / `evt.arg[N]` / `evt.args`: Falco's parameter names for each syscall exit
//! and where each value comes from in a [`SysEvent`].

/// Where one parameter's value comes from, and how Falco renders it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Src {
    /// The return value.
    Res,
    /// Raw argument `i`, as a number.
    Raw(usize),
    /// Argument `i` as a descriptor number.
    Fd(usize),
    /// Captured string argument `i` (a path or a name), as the program wrote it.
    Str(usize),
    /// The event's socket address (destination, bound address or accept's peer), as
    /// `ip:port` / unix path.
    Addr,
    /// Argument `i` in octal (`mode`), as C's `%#o`.
    Octal(usize),
    /// Argument `i` as chmod permission names (`S_IRUSR|...|S_ISUID`), the number when none.
    ChmodMode(usize),
    /// Argument `i` as `open` flags text.
    OpenFlags(usize),
    CloneFlags(usize),
    MemfdFlags(usize),
    MountFlags(usize),
    Ptrace(usize),
    SockDomain(usize),
    SockType(usize),
    BpfCmd(usize),
    /// Argument `i` is a uid / gid, rendered as the user / group name when known.
    Uid(usize),
    Gid(usize),
    /// execve: argv[0], the rest of argv, the exe flags, the file name.
    ExecExe,
    ExecArgs,
    ExecFlags,
    /// execve's `filename` is argument `i`.
    ExecFilename(usize),
    /// Fields of the calling process, as execve reports them.
    ProcPid,
    ProcPtid,
    ProcCwd,
    ProcComm,
}

use Src::*;

/// The parameters of a syscall exit event, in Falco's order.
pub fn params(syscall: &str) -> &'static [(&'static str, Src)] {
    match syscall {
        "open" => &[
            ("fd", Res),
            ("name", Str(0)),
            ("flags", OpenFlags(1)),
            ("mode", Octal(2)),
        ],
        "openat" => &[
            ("fd", Res),
            ("dirfd", Fd(0)),
            ("name", Str(1)),
            ("flags", OpenFlags(2)),
            ("mode", Octal(3)),
        ],
        "openat2" => &[
            ("fd", Res),
            ("dirfd", Fd(0)),
            ("name", Str(1)),
            ("flags", OpenFlags(2)),
            ("mode", Octal(3)),
        ],
        "creat" => &[("fd", Res), ("name", Str(0)), ("mode", Octal(1))],
        "close" => &[("res", Res), ("fd", Fd(0))],
        "dup" => &[("res", Res), ("oldfd", Fd(0))],
        "dup2" => &[("res", Res), ("oldfd", Fd(0)), ("newfd", Fd(1))],
        "dup3" => &[
            ("res", Res),
            ("oldfd", Fd(0)),
            ("newfd", Fd(1)),
            ("flags", Raw(2)),
        ],
        "socket" => &[
            ("fd", Res),
            ("domain", SockDomain(0)),
            ("type", SockType(1)),
            ("proto", Raw(2)),
        ],
        "connect" => &[("res", Res), ("fd", Fd(0)), ("tuple", Addr)],
        "accept" => &[("fd", Res), ("tuple", Addr)],
        "accept4" => &[("fd", Res), ("tuple", Addr), ("flags", Raw(3))],
        "bind" => &[("res", Res), ("fd", Fd(0)), ("addr", Addr)],
        "listen" => &[("res", Res), ("fd", Fd(0)), ("backlog", Raw(1))],
        "sendto" => &[
            ("res", Res),
            ("fd", Fd(0)),
            ("size", Raw(2)),
            ("tuple", Addr),
        ],
        "sendmsg" => &[("res", Res), ("fd", Fd(0)), ("tuple", Addr)],
        "execve" => &[
            ("res", Res),
            ("exe", ExecExe),
            ("args", ExecArgs),
            ("pid", ProcPid),
            ("ptid", ProcPtid),
            ("cwd", ProcCwd),
            ("comm", ProcComm),
            ("filename", ExecFilename(0)),
            ("flags", ExecFlags),
        ],
        "execveat" => &[
            ("res", Res),
            ("exe", ExecExe),
            ("args", ExecArgs),
            ("pid", ProcPid),
            ("ptid", ProcPtid),
            ("cwd", ProcCwd),
            ("comm", ProcComm),
            ("dirfd", Fd(0)),
            ("filename", ExecFilename(1)),
            ("flags", ExecFlags),
        ],
        "ptrace" => &[
            ("res", Res),
            ("request", Ptrace(0)),
            ("pid", Raw(1)),
            ("addr", Raw(2)),
            ("data", Raw(3)),
        ],
        "kill" => &[("res", Res), ("pid", Raw(0)), ("sig", Raw(1))],
        "tkill" => &[("res", Res), ("tid", Raw(0)), ("sig", Raw(1))],
        "tgkill" => &[
            ("res", Res),
            ("pid", Raw(0)),
            ("tid", Raw(1)),
            ("sig", Raw(2)),
        ],
        "setuid" => &[("res", Res), ("uid", Uid(0))],
        "setgid" => &[("res", Res), ("gid", Gid(0))],
        "setreuid" => &[("res", Res), ("ruid", Uid(0)), ("euid", Uid(1))],
        "setregid" => &[("res", Res), ("rgid", Gid(0)), ("egid", Gid(1))],
        "setresuid" => &[
            ("res", Res),
            ("ruid", Uid(0)),
            ("euid", Uid(1)),
            ("suid", Uid(2)),
        ],
        "setresgid" => &[
            ("res", Res),
            ("rgid", Gid(0)),
            ("egid", Gid(1)),
            ("sgid", Gid(2)),
        ],
        "capset" => &[("res", Res)],
        "chdir" => &[("res", Res), ("path", Str(0))],
        "fchdir" => &[("res", Res), ("fd", Fd(0))],
        "chroot" => &[("res", Res), ("path", Str(0))],
        "symlink" => &[("res", Res), ("target", Str(0)), ("linkpath", Str(1))],
        "symlinkat" => &[
            ("res", Res),
            ("target", Str(0)),
            ("linkdirfd", Fd(1)),
            ("linkpath", Str(2)),
        ],
        "link" => &[("res", Res), ("oldpath", Str(0)), ("newpath", Str(1))],
        "linkat" => &[
            ("res", Res),
            ("olddir", Fd(0)),
            ("oldpath", Str(1)),
            ("newdir", Fd(2)),
            ("newpath", Str(3)),
            ("flags", Raw(4)),
        ],
        "unlink" => &[("res", Res), ("path", Str(0))],
        "unlinkat" => &[
            ("res", Res),
            ("dirfd", Fd(0)),
            ("name", Str(1)),
            ("flags", Raw(2)),
        ],
        "rename" => &[("res", Res), ("oldpath", Str(0)), ("newpath", Str(1))],
        "renameat" => &[
            ("res", Res),
            ("olddirfd", Fd(0)),
            ("oldpath", Str(1)),
            ("newdirfd", Fd(2)),
            ("newpath", Str(3)),
        ],
        "renameat2" => &[
            ("res", Res),
            ("olddirfd", Fd(0)),
            ("oldpath", Str(1)),
            ("newdirfd", Fd(2)),
            ("newpath", Str(3)),
            ("flags", Raw(4)),
        ],
        "mkdir" => &[("res", Res), ("path", Str(0)), ("mode", Octal(1))],
        "mkdirat" => &[
            ("res", Res),
            ("dirfd", Fd(0)),
            ("path", Str(1)),
            ("mode", Octal(2)),
        ],
        "rmdir" => &[("res", Res), ("path", Str(0))],
        "chmod" => &[("res", Res), ("filename", Str(0)), ("mode", ChmodMode(1))],
        "fchmod" => &[("res", Res), ("fd", Fd(0)), ("mode", ChmodMode(1))],
        "fchmodat" | "fchmodat2" => &[
            ("res", Res),
            ("dirfd", Fd(0)),
            ("filename", Str(1)),
            ("mode", ChmodMode(2)),
        ],
        "memfd_create" => &[("fd", Res), ("name", Str(0)), ("flags", MemfdFlags(1))],
        "init_module" => &[("res", Res), ("length", Raw(1)), ("uargs", Str(2))],
        "finit_module" => &[
            ("res", Res),
            ("fd", Fd(0)),
            ("uargs", Str(1)),
            ("flags", Raw(2)),
        ],
        "mount" => &[
            ("res", Res),
            ("dev", Str(0)),
            ("dir", Str(1)),
            ("type", Str(2)),
            ("flags", MountFlags(3)),
        ],
        "umount2" => &[("res", Res), ("name", Str(0)), ("flags", Raw(1))],
        "unshare" => &[("res", Res), ("flags", CloneFlags(0))],
        "setns" => &[("res", Res), ("fd", Fd(0)), ("nstype", CloneFlags(1))],
        "bpf" => &[("fd", Res), ("cmd", BpfCmd(0))],
        "userfaultfd" => &[("fd", Res), ("flags", Raw(0))],
        _ => &[("res", Res)],
    }
}

/// The parameter named `key` (`evt.arg.flags`), or at position `key` when numeric.
pub fn find(syscall: &str, key: &str) -> Option<Src> {
    let ps = params(syscall);
    if let Ok(i) = key.parse::<usize>() {
        return ps.get(i).map(|(_, s)| *s);
    }
    ps.iter().find(|(n, _)| *n == key).map(|(_, s)| *s)
}

/// A path argument: its position, and the position of the dirfd it is relative to.
pub type PathArg = Option<(usize, Option<usize>)>;

/// Paths an event names, for `fs.path.*` and `evt.abspath`: `name` (or `source`) and
/// `target` for two-path operations.
pub fn fs_paths(syscall: &str) -> (PathArg, PathArg) {
    match syscall {
        "mkdir" | "rmdir" | "unlink" | "chmod" | "chdir" | "chroot" | "truncate" => {
            (Some((0, None)), None)
        }
        "mkdirat" | "unlinkat" | "fchmodat" | "fchmodat2" => (Some((1, Some(0))), None),
        "rename" | "link" => (Some((0, None)), Some((1, None))),
        "renameat" | "renameat2" | "linkat" => (Some((1, Some(0))), Some((3, Some(2)))),
        "symlink" => (Some((0, None)), Some((1, None))),
        "symlinkat" => (Some((0, None)), Some((2, Some(1)))),
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_name_and_position() {
        assert_eq!(find("openat", "flags"), Some(Src::OpenFlags(2)));
        assert_eq!(find("openat", "2"), Some(Src::Str(1)));
        assert_eq!(find("ptrace", "request"), Some(Src::Ptrace(0)));
        assert_eq!(find("symlinkat", "linkpath"), Some(Src::Str(2)));
        assert_eq!(find("openat", "nope"), None);
        assert_eq!(find("getpid", "res"), Some(Src::Res));
    }
}
