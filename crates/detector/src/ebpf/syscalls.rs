//! The x86_64 syscall table: Falco `evt.type` names, numbers, how each argument is captured,
//! and the decoding of raw arguments into [`SyscallArgs`].

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use detector_common::{ArgKind, SyscallSpec, spec};

use crate::event::{SockAddr, SyscallArgs};

use ArgKind::{
    Argv as V, Msghdr as M, OpenHow as H, Raw as R, Sockaddr as A, SockaddrOut as O, Str as S,
};

/// One supported syscall.
#[derive(Clone, Copy, Debug)]
pub struct SyscallDef {
    pub nr: u16,
    pub name: &'static str,
    pub kinds: [ArgKind; 6],
}

const fn d(nr: u16, name: &'static str, kinds: [ArgKind; 6]) -> SyscallDef {
    SyscallDef { nr, name, kinds }
}

/// Every syscall the detector can capture (x86_64 numbers).
pub const SYSCALLS: &[SyscallDef] = &[
    // processes
    d(59, "execve", [S, V, R, R, R, R]),
    d(322, "execveat", [R, S, V, R, R, R]),
    d(56, "clone", [R; 6]),
    d(435, "clone3", [R; 6]),
    d(57, "fork", [R; 6]),
    d(58, "vfork", [R; 6]),
    d(105, "setuid", [R; 6]),
    d(106, "setgid", [R; 6]),
    d(113, "setreuid", [R; 6]),
    d(114, "setregid", [R; 6]),
    d(117, "setresuid", [R; 6]),
    d(119, "setresgid", [R; 6]),
    d(126, "capset", [R; 6]),
    d(101, "ptrace", [R; 6]),
    d(62, "kill", [R; 6]),
    d(200, "tkill", [R; 6]),
    d(234, "tgkill", [R; 6]),
    d(80, "chdir", [S, R, R, R, R, R]),
    d(81, "fchdir", [R; 6]),
    // files
    d(2, "open", [S, R, R, R, R, R]),
    d(257, "openat", [R, S, R, R, R, R]),
    d(437, "openat2", [R, S, H, R, R, R]),
    d(85, "creat", [S, R, R, R, R, R]),
    d(3, "close", [R; 6]),
    d(32, "dup", [R; 6]),
    d(33, "dup2", [R; 6]),
    d(292, "dup3", [R; 6]),
    d(88, "symlink", [S, S, R, R, R, R]),
    d(266, "symlinkat", [S, R, S, R, R, R]),
    d(86, "link", [S, S, R, R, R, R]),
    d(265, "linkat", [R, S, R, S, R, R]),
    d(87, "unlink", [S, R, R, R, R, R]),
    d(263, "unlinkat", [R, S, R, R, R, R]),
    d(84, "rmdir", [S, R, R, R, R, R]),
    d(82, "rename", [S, S, R, R, R, R]),
    d(264, "renameat", [R, S, R, S, R, R]),
    d(316, "renameat2", [R, S, R, S, R, R]),
    d(83, "mkdir", [S, R, R, R, R, R]),
    d(258, "mkdirat", [R, S, R, R, R, R]),
    d(90, "chmod", [S, R, R, R, R, R]),
    d(91, "fchmod", [R; 6]),
    d(268, "fchmodat", [R, S, R, R, R, R]),
    d(452, "fchmodat2", [R, S, R, R, R, R]),
    d(319, "memfd_create", [S, R, R, R, R, R]),
    // network
    d(41, "socket", [R; 6]),
    d(42, "connect", [R, A, R, R, R, R]),
    d(43, "accept", [R, O, R, R, R, R]),
    d(288, "accept4", [R, O, R, R, R, R]),
    d(49, "bind", [R, A, R, R, R, R]),
    d(50, "listen", [R; 6]),
    d(44, "sendto", [R, R, R, R, A, R]),
    d(46, "sendmsg", [R, M, R, R, R, R]),
    // system
    d(175, "init_module", [R; 6]),
    d(313, "finit_module", [R; 6]),
    d(165, "mount", [S, S, S, R, R, R]),
    d(166, "umount2", [S, R, R, R, R, R]),
    d(272, "unshare", [R; 6]),
    d(308, "setns", [R; 6]),
    d(321, "bpf", [R; 6]),
    // Falco's sandbox rules flag unprivileged page-fault delegation.
    d(323, "userfaultfd", [R; 6]),
];

/// Look a syscall up by its Falco name.
pub fn by_name(name: &str) -> Option<&'static SyscallDef> {
    SYSCALLS.iter().find(|s| s.name == name)
}

/// Look a syscall up by number.
pub fn by_nr(nr: u16) -> Option<&'static SyscallDef> {
    SYSCALLS.iter().find(|s| s.nr == nr)
}

/// The kernel-side table entry for an enabled syscall.
pub fn spec_of(def: &SyscallDef) -> SyscallSpec {
    let kinds = def.kinds.map(|k| k as u8);
    let capture_entry = def.kinds.iter().any(|k| {
        matches!(
            k,
            ArgKind::Str | ArgKind::Sockaddr | ArgKind::Msghdr | ArgKind::Argv | ArgKind::OpenHow
        )
    });
    let creds = if crate::state::apply::is_cred_change(def.name) {
        spec::CREDS
    } else {
        0
    };
    // connect's tuple names the local port the kernel picked, read at exit (as Falco).
    let local_addr = if def.name == "connect" {
        spec::LOCAL_ADDR
    } else {
        0
    };
    let enabled = spec::ENABLED | creds | fd_bits(def.name) | local_addr;
    // An open whose only captured argument is its path takes the kernel's fast entry.
    let captured: Vec<usize> = (0..6)
        .filter(|&i| !matches!(def.kinds[i], ArgKind::Raw | ArgKind::SockaddrOut))
        .collect();
    let fast_open = match captured.as_slice() {
        [i] if enabled & spec::PATH_FILTER != 0 && def.kinds[*i] == ArgKind::Str && *i < 2 => {
            (*i as u8 + 1) << spec::FAST_OPEN_SHIFT
        }
        _ => 0,
    };
    let open_flags = match (fast_open != 0, def.name) {
        (false, _) => 0,
        (true, "open") => 2 << spec::OPEN_FLAGS_SHIFT,
        (true, "openat") => 3 << spec::OPEN_FLAGS_SHIFT,
        (true, "creat") => spec::OPEN_NEVER_DIR << spec::OPEN_FLAGS_SHIFT,
        _ => 0,
    };
    SyscallSpec {
        enabled,
        capture_entry: u8::from(capture_entry) | fast_open | open_flags,
        kinds,
    }
}

/// The open-filter bits of a syscall (see `detector_common::PathFilter`).
fn fd_bits(name: &str) -> u8 {
    match name {
        "open" | "openat" | "openat2" | "creat" => spec::PATH_FILTER | spec::NEW_FD,
        "close" => spec::CLOSES_FD,
        // Every syscall user space records a new descriptor for (state/apply.rs).
        "socket" | "accept" | "accept4" | "dup" | "dup2" | "dup3" | "memfd_create" | "eventfd2"
        | "signalfd4" | "epoll_create1" | "inotify_init1" | "userfaultfd" | "pidfd_open"
        | "io_uring_setup" | "bpf" => spec::NEW_FD,
        _ => 0,
    }
}

/// Text of a captured string slot (up to the first NUL).
pub fn slot_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// NUL-separated strings (argv), dropping the trailing empty piece.
pub fn split_nul(b: &[u8]) -> Vec<String> {
    let b = b.strip_suffix(&[0]).unwrap_or(b);
    if b.is_empty() {
        return Vec::new();
    }
    b.split(|&c| c == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Decode a `struct sockaddr` as captured (possibly truncated).
pub fn decode_sockaddr(b: &[u8]) -> Option<SockAddr> {
    let family = u16::from_le_bytes([*b.first()?, *b.get(1)?]);
    Some(match family {
        2 if b.len() >= 8 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            SockAddr::Inet(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        10 if b.len() >= 24 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[8..24]);
            let scope = b
                .get(24..28)
                .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
            SockAddr::Inet(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                0,
                scope,
            )))
        }
        1 => {
            let path = &b[2..];
            if let Some(rest) = path.strip_prefix(&[0]) {
                // abstract: the name is the bytes up to the given length, shown with '@'
                let end = rest.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
                SockAddr::Unix(format!("@{}", String::from_utf8_lossy(&rest[..end])))
            } else {
                SockAddr::Unix(slot_str(path))
            }
        }
        f => SockAddr::Other { family: f },
    })
}

fn fd(v: u64) -> i32 {
    v as i32
}

fn id(v: u64) -> Option<u32> {
    let v = v as u32;
    (v != u32::MAX).then_some(v)
}

/// Typed arguments of syscall `name` from its raw registers and captured slots.
pub fn decode_args(name: &str, a: &[u64; 6], slots: &[&[u8]; 8]) -> SyscallArgs {
    let s = |i: usize| slot_str(slots[i]);
    let opt_s = |i: usize| (!slots[i].is_empty()).then(|| slot_str(slots[i]));
    let addr = |i: usize| decode_sockaddr(slots[i]);
    match name {
        "open" => SyscallArgs::Open {
            dirfd: None,
            path: s(0),
            flags: a[1] as u32,
            mode: a[2] as u32,
        },
        "openat" => SyscallArgs::Open {
            dirfd: Some(fd(a[0])),
            path: s(1),
            flags: a[2] as u32,
            mode: a[3] as u32,
        },
        "openat2" => {
            let how = slots[2];
            let word = |i: usize| {
                how.get(i * 8..i * 8 + 8).map_or(0, |w| {
                    u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])
                })
            };
            SyscallArgs::Open {
                dirfd: Some(fd(a[0])),
                path: s(1),
                flags: word(0) as u32,
                mode: word(1) as u32,
            }
        }
        "creat" => SyscallArgs::Open {
            dirfd: None,
            path: s(0),
            flags: (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u32,
            mode: a[1] as u32,
        },
        "execve" => SyscallArgs::Execve {
            dirfd: None,
            filename: s(0),
            argv: split_nul(slots[detector_common::slot::SYS_ARGV]),
            flags: 0,
        },
        "execveat" => SyscallArgs::Execve {
            dirfd: Some(fd(a[0])),
            filename: s(1),
            argv: split_nul(slots[detector_common::slot::SYS_ARGV]),
            flags: a[4] as u32,
        },
        "clone" => SyscallArgs::Clone { flags: Some(a[0]) },
        "clone3" | "fork" | "vfork" => SyscallArgs::Clone { flags: None },
        "setuid" | "setgid" => SyscallArgs::SetId { id: a[0] as u32 },
        "setreuid" | "setregid" => SyscallArgs::SetReId {
            real: id(a[0]),
            effective: id(a[1]),
        },
        "setresuid" | "setresgid" => SyscallArgs::SetResId {
            real: id(a[0]),
            effective: id(a[1]),
            saved: id(a[2]),
        },
        "capset" => SyscallArgs::Capset {
            header: a[0],
            data: a[1],
        },
        "ptrace" => SyscallArgs::Ptrace {
            request: a[0] as i64,
            pid: a[1] as i32,
            addr: a[2],
            data: a[3],
        },
        "kill" | "tkill" => SyscallArgs::Kill {
            pid: a[0] as i32,
            sig: a[1] as i32,
        },
        "tgkill" => SyscallArgs::Kill {
            pid: a[1] as i32,
            sig: a[2] as i32,
        },
        "chdir" => SyscallArgs::Chdir {
            path: Some(s(0)),
            fd: None,
        },
        "fchdir" => SyscallArgs::Chdir {
            path: None,
            fd: Some(fd(a[0])),
        },
        "close" => SyscallArgs::Close { fd: fd(a[0]) },
        "dup" => SyscallArgs::Dup {
            oldfd: fd(a[0]),
            newfd: None,
            flags: 0,
        },
        "dup2" => SyscallArgs::Dup {
            oldfd: fd(a[0]),
            newfd: Some(fd(a[1])),
            flags: 0,
        },
        "dup3" => SyscallArgs::Dup {
            oldfd: fd(a[0]),
            newfd: Some(fd(a[1])),
            flags: a[2] as u32,
        },
        "symlink" => SyscallArgs::Link {
            symbolic: true,
            target_dirfd: None,
            target: s(0),
            link_dirfd: None,
            linkpath: s(1),
            flags: 0,
        },
        "symlinkat" => SyscallArgs::Link {
            symbolic: true,
            target_dirfd: None,
            target: s(0),
            link_dirfd: Some(fd(a[1])),
            linkpath: s(2),
            flags: 0,
        },
        "link" => SyscallArgs::Link {
            symbolic: false,
            target_dirfd: None,
            target: s(0),
            link_dirfd: None,
            linkpath: s(1),
            flags: 0,
        },
        "linkat" => SyscallArgs::Link {
            symbolic: false,
            target_dirfd: Some(fd(a[0])),
            target: s(1),
            link_dirfd: Some(fd(a[2])),
            linkpath: s(3),
            flags: a[4] as u32,
        },
        "unlink" => SyscallArgs::Unlink {
            dirfd: None,
            path: s(0),
            flags: 0,
        },
        "rmdir" => SyscallArgs::Unlink {
            dirfd: None,
            path: s(0),
            flags: libc::AT_REMOVEDIR as u32,
        },
        "unlinkat" => SyscallArgs::Unlink {
            dirfd: Some(fd(a[0])),
            path: s(1),
            flags: a[2] as u32,
        },
        "rename" => SyscallArgs::Rename {
            old_dirfd: None,
            oldpath: s(0),
            new_dirfd: None,
            newpath: s(1),
            flags: 0,
        },
        "renameat" | "renameat2" => SyscallArgs::Rename {
            old_dirfd: Some(fd(a[0])),
            oldpath: s(1),
            new_dirfd: Some(fd(a[2])),
            newpath: s(3),
            flags: if name == "renameat2" { a[4] as u32 } else { 0 },
        },
        "mkdir" => SyscallArgs::Mkdir {
            dirfd: None,
            path: s(0),
            mode: a[1] as u32,
        },
        "mkdirat" => SyscallArgs::Mkdir {
            dirfd: Some(fd(a[0])),
            path: s(1),
            mode: a[2] as u32,
        },
        "chmod" => SyscallArgs::Chmod {
            dirfd: None,
            path: Some(s(0)),
            fd: None,
            mode: a[1] as u32,
        },
        "fchmod" => SyscallArgs::Chmod {
            dirfd: None,
            path: None,
            fd: Some(fd(a[0])),
            mode: a[1] as u32,
        },
        "fchmodat" | "fchmodat2" => SyscallArgs::Chmod {
            dirfd: Some(fd(a[0])),
            path: Some(s(1)),
            fd: None,
            mode: a[2] as u32,
        },
        "memfd_create" => SyscallArgs::MemfdCreate {
            name: s(0),
            flags: a[1] as u32,
        },
        "socket" => SyscallArgs::Socket {
            domain: a[0] as i32,
            ty: a[1] as i32,
            protocol: a[2] as i32,
        },
        "connect" => SyscallArgs::Connect {
            fd: fd(a[0]),
            addr: addr(1),
            local: addr(detector_common::slot::SYS_EXIT_ADDR),
        },
        "bind" => SyscallArgs::Bind {
            fd: fd(a[0]),
            addr: addr(1),
        },
        "listen" => SyscallArgs::Listen {
            fd: fd(a[0]),
            backlog: a[1] as i32,
        },
        "accept" => SyscallArgs::Accept {
            fd: fd(a[0]),
            peer: addr(detector_common::slot::SYS_EXIT_ADDR),
            flags: 0,
        },
        "accept4" => SyscallArgs::Accept {
            fd: fd(a[0]),
            peer: addr(detector_common::slot::SYS_EXIT_ADDR),
            flags: a[3] as u32,
        },
        "sendto" => SyscallArgs::Send {
            fd: fd(a[0]),
            addr: addr(4),
        },
        "sendmsg" => SyscallArgs::Send {
            fd: fd(a[0]),
            addr: addr(1),
        },
        "init_module" => SyscallArgs::InitModule {
            fd: None,
            len: a[1],
            flags: 0,
        },
        "finit_module" => SyscallArgs::InitModule {
            fd: Some(fd(a[0])),
            len: 0,
            flags: a[2] as u32,
        },
        "mount" => SyscallArgs::Mount {
            source: opt_s(0),
            target: s(1),
            fstype: opt_s(2),
            flags: a[3],
        },
        "umount2" => SyscallArgs::Umount {
            target: s(0),
            flags: a[1] as u32,
        },
        "unshare" => SyscallArgs::Unshare { flags: a[0] },
        "setns" => SyscallArgs::Setns {
            fd: fd(a[0]),
            nstype: a[1] as i32,
        },
        "bpf" => SyscallArgs::Bpf { cmd: a[0] as i32 },
        _ => SyscallArgs::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_unique() {
        for (i, a) in SYSCALLS.iter().enumerate() {
            for b in &SYSCALLS[i + 1..] {
                assert_ne!(a.nr, b.nr, "{} and {}", a.name, b.name);
                assert_ne!(a.name, b.name);
            }
            assert!(u32::from(a.nr) < detector_common::MAX_SYSCALLS);
        }
        assert_eq!(
            by_name("openat").map(|d| d.nr),
            Some(libc::SYS_openat as u16)
        );
        assert_eq!(
            by_name("connect").map(|d| d.nr),
            Some(libc::SYS_connect as u16)
        );
        assert_eq!(
            by_name("execveat").map(|d| d.nr),
            Some(libc::SYS_execveat as u16)
        );
        assert_eq!(
            by_name("memfd_create").map(|d| d.nr),
            Some(libc::SYS_memfd_create as u16)
        );
        assert_eq!(by_name("fchmodat2").map(|d| d.nr), Some(452));
    }

    #[test]
    fn every_number_matches_libc() {
        let libc_nr = |name: &str| -> Option<i64> {
            Some(match name {
                "execve" => libc::SYS_execve,
                "clone3" => libc::SYS_clone3,
                "setresgid" => libc::SYS_setresgid,
                "capset" => libc::SYS_capset,
                "ptrace" => libc::SYS_ptrace,
                "tgkill" => libc::SYS_tgkill,
                "symlinkat" => libc::SYS_symlinkat,
                "linkat" => libc::SYS_linkat,
                "renameat2" => libc::SYS_renameat2,
                "accept4" => libc::SYS_accept4,
                "sendmsg" => libc::SYS_sendmsg,
                "finit_module" => libc::SYS_finit_module,
                "umount2" => libc::SYS_umount2,
                "setns" => libc::SYS_setns,
                "bpf" => libc::SYS_bpf,
                "openat2" => libc::SYS_openat2,
                "userfaultfd" => libc::SYS_userfaultfd,
                _ => return None,
            })
        };
        let mut checked = 0;
        for s in SYSCALLS {
            if let Some(n) = libc_nr(s.name) {
                assert_eq!(i64::from(s.nr), n, "{}", s.name);
                checked += 1;
            }
        }
        assert_eq!(checked, 17);
    }

    #[test]
    fn entry_capture_only_where_user_memory_is_read() {
        assert_eq!(
            spec_of(by_name("openat").unwrap()).capture_entry,
            1 | (2 << spec::FAST_OPEN_SHIFT) | (3 << spec::OPEN_FLAGS_SHIFT)
        );
        assert_eq!(
            spec_of(by_name("creat").unwrap()).capture_entry,
            1 | (1 << spec::FAST_OPEN_SHIFT) | (spec::OPEN_NEVER_DIR << spec::OPEN_FLAGS_SHIFT)
        );
        assert_eq!(
            spec_of(by_name("open").unwrap()).capture_entry,
            1 | (1 << spec::FAST_OPEN_SHIFT) | (2 << spec::OPEN_FLAGS_SHIFT)
        );
        assert_eq!(spec_of(by_name("openat2").unwrap()).capture_entry, 1);
        assert_eq!(spec_of(by_name("connect").unwrap()).capture_entry, 1);
        assert_eq!(spec_of(by_name("close").unwrap()).capture_entry, 0);
        // Only credential changes carry the full identity; the rest leave it to user space.
        assert_eq!(
            spec_of(by_name("setresuid").unwrap()).enabled,
            spec::ENABLED | spec::CREDS
        );
        assert_eq!(
            spec_of(by_name("openat").unwrap()).enabled,
            spec::ENABLED | spec::PATH_FILTER | spec::NEW_FD
        );
        assert_eq!(
            spec_of(by_name("close").unwrap()).enabled,
            spec::ENABLED | spec::CLOSES_FD
        );
        assert_eq!(
            spec_of(by_name("dup2").unwrap()).enabled,
            spec::ENABLED | spec::NEW_FD
        );
        // accept's peer address is an output: read at exit
        assert_eq!(spec_of(by_name("accept4").unwrap()).capture_entry, 0);
    }

    #[test]
    fn sockaddr_decoding() {
        let mut v4 = vec![2u8, 0, 0x1f, 0x90, 127, 0, 0, 1];
        v4.extend([0; 8]);
        assert_eq!(
            decode_sockaddr(&v4),
            Some(SockAddr::Inet("127.0.0.1:8080".parse().unwrap()))
        );
        let mut v6 = vec![10u8, 0, 0, 80, 0, 0, 0, 0];
        v6.extend(Ipv6Addr::LOCALHOST.octets());
        v6.extend([0; 4]);
        assert_eq!(
            decode_sockaddr(&v6),
            Some(SockAddr::Inet("[::1]:80".parse().unwrap()))
        );
        let mut un = vec![1u8, 0];
        un.extend(b"/run/docker.sock\0junk");
        assert_eq!(
            decode_sockaddr(&un),
            Some(SockAddr::Unix("/run/docker.sock".into()))
        );
        let abs = [1u8, 0, 0, b'x', b'y'];
        assert_eq!(decode_sockaddr(&abs), Some(SockAddr::Unix("@xy".into())));
        assert_eq!(
            decode_sockaddr(&[17, 0, 1]),
            Some(SockAddr::Other { family: 17 })
        );
        assert_eq!(decode_sockaddr(&[2]), None);
        // truncated AF_INET: not enough bytes for the address
        assert_eq!(
            decode_sockaddr(&[2, 0, 0, 80]),
            Some(SockAddr::Other { family: 2 })
        );
    }

    #[test]
    fn argv_splitting() {
        assert_eq!(split_nul(b"ls\0-l\0/tmp\0"), vec!["ls", "-l", "/tmp"]);
        assert_eq!(split_nul(b"a\0\0b\0"), vec!["a", "", "b"]);
        assert!(split_nul(b"").is_empty());
        assert_eq!(slot_str(b"/etc/shadow\0"), "/etc/shadow");
    }
}
