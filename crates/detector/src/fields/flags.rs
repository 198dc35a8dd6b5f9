//! Falco's text forms of flag words, enums and error codes (`O_RDONLY|O_CLOEXEC`,
//! `PTRACE_ATTACH`, `AF_PACKET`, `ENOENT`). Written into a caller's buffer: no allocation.

use std::fmt::Write as _;

/// `open` flags. The access mode is not a bit: it is shown as O_RDONLY/O_WRONLY/O_RDWR.
const OPEN_FLAGS: &[(u64, &str)] = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o10000, "O_DSYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o4000000, "O_SYNC"),
    (0o10000000, "O_PATH"),
    (0o20000000, "O_TMPFILE"),
];

pub const O_ACCMODE: u64 = 0o3;
pub const O_CREAT: u64 = 0o100;
pub const O_TRUNC: u64 = 0o1000;
pub const O_DIRECTORY: u64 = 0o200000;
pub const O_TMPFILE: u64 = 0o20000000;

pub fn open_flags(flags: u64, out: &mut String) {
    out.push_str(match flags & O_ACCMODE {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        _ => "O_RDWR",
    });
    // O_SYNC includes the O_DSYNC bit; O_TMPFILE includes O_DIRECTORY.
    for (bit, name) in OPEN_FLAGS {
        if flags & bit == *bit {
            out.push('|');
            out.push_str(name);
        }
    }
}

const CLONE_FLAGS: &[(u64, &str)] = &[
    (0x100, "CLONE_VM"),
    (0x200, "CLONE_FS"),
    (0x400, "CLONE_FILES"),
    (0x800, "CLONE_SIGHAND"),
    (0x1000, "CLONE_PIDFD"),
    (0x2000, "CLONE_PTRACE"),
    (0x4000, "CLONE_VFORK"),
    (0x8000, "CLONE_PARENT"),
    (0x10000, "CLONE_THREAD"),
    (0x20000, "CLONE_NEWNS"),
    (0x40000, "CLONE_SYSVSEM"),
    (0x80000, "CLONE_SETTLS"),
    (0x0200_0000, "CLONE_NEWCGROUP"),
    (0x0400_0000, "CLONE_NEWUTS"),
    (0x0800_0000, "CLONE_NEWIPC"),
    (0x1000_0000, "CLONE_NEWUSER"),
    (0x2000_0000, "CLONE_NEWPID"),
    (0x4000_0000, "CLONE_NEWNET"),
    (0x8000_0000, "CLONE_IO"),
];

/// Namespace and clone flags (`unshare`, `setns`, `clone`).
pub fn clone_flags(flags: u64, out: &mut String) {
    bit_names(flags, CLONE_FLAGS, out);
}

const MEMFD_FLAGS: &[(u64, &str)] = &[
    (1, "MFD_CLOEXEC"),
    (2, "MFD_ALLOW_SEALING"),
    (4, "MFD_HUGETLB"),
    (8, "MFD_NOEXEC_SEAL"),
    (16, "MFD_EXEC"),
];

pub fn memfd_flags(flags: u64, out: &mut String) {
    bit_names(flags, MEMFD_FLAGS, out);
}

const MOUNT_FLAGS: &[(u64, &str)] = &[
    (1, "RDONLY"),
    (2, "NOSUID"),
    (4, "NODEV"),
    (8, "NOEXEC"),
    (16, "SYNCHRONOUS"),
    (32, "REMOUNT"),
    (64, "MANDLOCK"),
    (128, "DIRSYNC"),
    (1024, "NOATIME"),
    (2048, "NODIRATIME"),
    (4096, "BIND"),
    (8192, "MOVE"),
    (16384, "REC"),
    (1 << 18, "PRIVATE"),
    (1 << 19, "SLAVE"),
    (1 << 20, "SHARED"),
];

pub fn mount_flags(flags: u64, out: &mut String) {
    bit_names(flags, MOUNT_FLAGS, out);
}

/// Permission bits of chmod/fchmod/fchmodat, in Falco's order (libs' `chmod_mode` table).
const CHMOD_MODE: &[(u64, &str)] = &[
    (0o1, "S_IXOTH"),
    (0o2, "S_IWOTH"),
    (0o4, "S_IROTH"),
    (0o10, "S_IXGRP"),
    (0o20, "S_IWGRP"),
    (0o40, "S_IRGRP"),
    (0o100, "S_IXUSR"),
    (0o200, "S_IWUSR"),
    (0o400, "S_IRUSR"),
    (0o1000, "S_ISVTX"),
    (0o2000, "S_ISGID"),
    (0o4000, "S_ISUID"),
];

/// The mode of a chmod-family call as Falco resolves it for `evt.arg.mode`
/// (`S_IXOTH|S_IROTH|...|S_ISUID`; rules test it with `contains "S_ISUID"`). Writes
/// nothing when no permission bit is set: the caller then shows the number.
pub fn chmod_mode(mode: u64, out: &mut String) {
    push_bit_names(mode, CHMOD_MODE, out);
}

/// A number as C's `%#o` prints it (Falco's octal parameters): `0644`, and `0` for zero.
pub fn octal(n: u64, out: &mut String) {
    if n == 0 {
        out.push('0');
    } else {
        let _ = write!(out, "0{n:o}");
    }
}

/// `exe_flags` of an execve event (Falco's `evt.arg.flags` there).
pub fn exe_flags(writable: bool, upper: bool, memfd: bool, out: &mut String) {
    let mut sep = false;
    for (on, name) in [
        (writable, "EXE_WRITABLE"),
        (upper, "EXE_UPPER_LAYER"),
        (memfd, "EXE_FROM_MEMFD"),
    ] {
        if on {
            if sep {
                out.push('|');
            }
            out.push_str(name);
            sep = true;
        }
    }
}

/// Append the names of `table`'s bits set in `flags`, `|`-separated. Returns the bits no
/// name covered and whether a name was written.
fn push_bit_names(flags: u64, table: &[(u64, &str)], out: &mut String) -> (u64, bool) {
    let mut first = true;
    let mut rest = flags;
    for (bit, name) in table {
        if flags & bit == *bit {
            if !first {
                out.push('|');
            }
            out.push_str(name);
            first = false;
            rest &= !bit;
        }
    }
    (rest, !first)
}

/// Flag names, then any unnamed bits in hex; `0` when none is set.
fn bit_names(flags: u64, table: &[(u64, &str)], out: &mut String) {
    let (rest, named) = push_bit_names(flags, table, out);
    if rest != 0 {
        if named {
            out.push('|');
        }
        let _ = write!(out, "{rest:#x}");
    } else if !named {
        out.push('0');
    }
}

pub fn ptrace_request(req: u64) -> Option<&'static str> {
    Some(match req {
        0 => "PTRACE_TRACEME",
        1 => "PTRACE_PEEKTEXT",
        2 => "PTRACE_PEEKDATA",
        3 => "PTRACE_PEEKUSR",
        4 => "PTRACE_POKETEXT",
        5 => "PTRACE_POKEDATA",
        6 => "PTRACE_POKEUSR",
        7 => "PTRACE_CONT",
        8 => "PTRACE_KILL",
        9 => "PTRACE_SINGLESTEP",
        12 => "PTRACE_GETREGS",
        13 => "PTRACE_SETREGS",
        14 => "PTRACE_GETFPREGS",
        15 => "PTRACE_SETFPREGS",
        16 => "PTRACE_ATTACH",
        17 => "PTRACE_DETACH",
        24 => "PTRACE_SYSCALL",
        0x4200 => "PTRACE_SETOPTIONS",
        0x4201 => "PTRACE_GETEVENTMSG",
        0x4202 => "PTRACE_GETSIGINFO",
        0x4203 => "PTRACE_SETSIGINFO",
        0x4204 => "PTRACE_GETREGSET",
        0x4205 => "PTRACE_SETREGSET",
        0x4206 => "PTRACE_SEIZE",
        0x4207 => "PTRACE_INTERRUPT",
        0x4208 => "PTRACE_LISTEN",
        0x4209 => "PTRACE_PEEKSIGINFO",
        _ => return None,
    })
}

pub fn socket_domain(d: u64) -> Option<&'static str> {
    Some(match d {
        0 => "AF_UNSPEC",
        1 => "AF_UNIX",
        2 => "AF_INET",
        10 => "AF_INET6",
        16 => "AF_NETLINK",
        17 => "AF_PACKET",
        _ => return None,
    })
}

pub fn socket_type(t: u64, out: &mut String) {
    out.push_str(match t & 0xf {
        1 => "SOCK_STREAM",
        2 => "SOCK_DGRAM",
        3 => "SOCK_RAW",
        4 => "SOCK_RDM",
        5 => "SOCK_SEQPACKET",
        10 => "SOCK_PACKET",
        _ => "SOCK_UNKNOWN",
    });
    if t & 0o4000 != 0 {
        out.push_str("|SOCK_NONBLOCK");
    }
    if t & 0o2000000 != 0 {
        out.push_str("|SOCK_CLOEXEC");
    }
}

pub fn bpf_cmd(c: u64) -> Option<&'static str> {
    Some(match c {
        0 => "BPF_MAP_CREATE",
        1 => "BPF_MAP_LOOKUP_ELEM",
        2 => "BPF_MAP_UPDATE_ELEM",
        3 => "BPF_MAP_DELETE_ELEM",
        4 => "BPF_MAP_GET_NEXT_KEY",
        5 => "BPF_PROG_LOAD",
        6 => "BPF_OBJ_PIN",
        7 => "BPF_OBJ_GET",
        8 => "BPF_PROG_ATTACH",
        9 => "BPF_PROG_DETACH",
        10 => "BPF_PROG_TEST_RUN",
        17 => "BPF_RAW_TRACEPOINT_OPEN",
        18 => "BPF_BTF_LOAD",
        28 => "BPF_LINK_CREATE",
        _ => return None,
    })
}

/// Falco's `evt.res`: `SUCCESS`, or the errno name of a failure.
pub fn errno_name(res: i64) -> Option<&'static str> {
    if res >= 0 {
        return Some("SUCCESS");
    }
    Some(match -res {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        10 => "ECHILD",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        18 => "EXDEV",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        23 => "ENFILE",
        24 => "EMFILE",
        25 => "ENOTTY",
        26 => "ETXTBSY",
        27 => "EFBIG",
        28 => "ENOSPC",
        29 => "ESPIPE",
        30 => "EROFS",
        31 => "EMLINK",
        32 => "EPIPE",
        36 => "ENAMETOOLONG",
        38 => "ENOSYS",
        39 => "ENOTEMPTY",
        40 => "ELOOP",
        88 => "ENOTSOCK",
        93 => "EPROTONOSUPPORT",
        95 => "EOPNOTSUPP",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        101 => "ENETUNREACH",
        104 => "ECONNRESET",
        106 => "EISCONN",
        107 => "ENOTCONN",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        113 => "EHOSTUNREACH",
        114 => "EALREADY",
        115 => "EINPROGRESS",
        _ => return None,
    })
}

/// Capability names by bit (`thread.cap_effective`), space-separated as Falco prints them.
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

pub fn capabilities(mask: u64, out: &mut String) {
    let mut first = true;
    for (i, name) in CAPS.iter().enumerate() {
        if mask & (1u64 << i) != 0 {
            if !first {
                out.push(' ');
            }
            out.push_str(name);
            first = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut String)) -> String {
        let mut o = String::new();
        f(&mut o);
        o
    }

    #[test]
    fn chmod_mode_and_octal_texts() {
        assert_eq!(
            s(|o| chmod_mode(0o4755, o)),
            "S_IXOTH|S_IROTH|S_IXGRP|S_IRGRP|S_IXUSR|S_IWUSR|S_IRUSR|S_ISUID"
        );
        assert_eq!(s(|o| chmod_mode(0o2000, o)), "S_ISGID");
        // File-type bits are not permissions, and no bit writes nothing.
        assert_eq!(
            s(|o| chmod_mode(0o100644, o)),
            "S_IROTH|S_IRGRP|S_IWUSR|S_IRUSR"
        );
        assert_eq!(s(|o| chmod_mode(0, o)), "");
        assert_eq!(s(|o| octal(0o640, o)), "0640");
        assert_eq!(s(|o| octal(0, o)), "0");
    }

    #[test]
    fn open_flags_text() {
        assert_eq!(s(|o| open_flags(0, o)), "O_RDONLY");
        assert_eq!(
            s(|o| open_flags(0o1 | 0o100 | 0o1000 | 0o2000000, o)),
            "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC"
        );
        assert_eq!(s(|o| open_flags(2, o)), "O_RDWR");
    }

    #[test]
    fn enum_and_bit_texts() {
        assert_eq!(ptrace_request(16), Some("PTRACE_ATTACH"));
        assert_eq!(ptrace_request(0), Some("PTRACE_TRACEME"));
        assert_eq!(socket_domain(17), Some("AF_PACKET"));
        assert_eq!(errno_name(-2), Some("ENOENT"));
        assert_eq!(errno_name(3), Some("SUCCESS"));
        assert_eq!(
            s(|o| clone_flags(0x2000_0000 | 0x20000, o)),
            "CLONE_NEWNS|CLONE_NEWPID"
        );
        assert_eq!(s(|o| clone_flags(0, o)), "0");
        assert_eq!(s(|o| memfd_flags(1 | 0x100, o)), "MFD_CLOEXEC|0x100");
        assert_eq!(
            s(|o| capabilities((1 << 21) | 1, o)),
            "CAP_CHOWN CAP_SYS_ADMIN"
        );
        assert_eq!(
            s(|o| exe_flags(false, true, true, o)),
            "EXE_UPPER_LAYER|EXE_FROM_MEMFD"
        );
    }
}
