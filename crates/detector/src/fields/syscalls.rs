//! x86_64 syscall numbers and Falco's event-type names for the syscalls aerie knows.

/// (number, name) for every syscall the detector can report or needs for state.
pub const X86_64: &[(u16, &str)] = &[
    (0, "read"),
    (1, "write"),
    (2, "open"),
    (3, "close"),
    (16, "ioctl"),
    (22, "pipe"),
    (32, "dup"),
    (33, "dup2"),
    (41, "socket"),
    (42, "connect"),
    (43, "accept"),
    (44, "sendto"),
    (45, "recvfrom"),
    (46, "sendmsg"),
    (47, "recvmsg"),
    (49, "bind"),
    (50, "listen"),
    (53, "socketpair"),
    (56, "clone"),
    (57, "fork"),
    (58, "vfork"),
    (59, "execve"),
    (62, "kill"),
    (72, "fcntl"),
    (76, "truncate"),
    (77, "ftruncate"),
    (80, "chdir"),
    (81, "fchdir"),
    (82, "rename"),
    (83, "mkdir"),
    (84, "rmdir"),
    (85, "creat"),
    (86, "link"),
    (87, "unlink"),
    (88, "symlink"),
    (90, "chmod"),
    (91, "fchmod"),
    (92, "chown"),
    (93, "fchown"),
    (94, "lchown"),
    (101, "ptrace"),
    (105, "setuid"),
    (106, "setgid"),
    (109, "setpgid"),
    (112, "setsid"),
    (113, "setreuid"),
    (114, "setregid"),
    (117, "setresuid"),
    (119, "setresgid"),
    (122, "setfsuid"),
    (123, "setfsgid"),
    (126, "capset"),
    (133, "mknod"),
    (155, "pivot_root"),
    (157, "prctl"),
    (161, "chroot"),
    (165, "mount"),
    (166, "umount2"),
    (175, "init_module"),
    (176, "delete_module"),
    (200, "tkill"),
    (234, "tgkill"),
    (257, "openat"),
    (258, "mkdirat"),
    (259, "mknodat"),
    (260, "fchownat"),
    (263, "unlinkat"),
    (264, "renameat"),
    (265, "linkat"),
    (266, "symlinkat"),
    (268, "fchmodat"),
    (272, "unshare"),
    (288, "accept4"),
    (289, "signalfd4"),
    (290, "eventfd2"),
    (291, "epoll_create1"),
    (292, "dup3"),
    (293, "pipe2"),
    (294, "inotify_init1"),
    (299, "recvmmsg"),
    (307, "sendmmsg"),
    (308, "setns"),
    (310, "process_vm_readv"),
    (311, "process_vm_writev"),
    (313, "finit_module"),
    (316, "renameat2"),
    (319, "memfd_create"),
    (321, "bpf"),
    (322, "execveat"),
    (323, "userfaultfd"),
    (425, "io_uring_setup"),
    (434, "pidfd_open"),
    (435, "clone3"),
    (437, "openat2"),
    (438, "pidfd_getfd"),
    (452, "fchmodat2"),
];

/// The name of syscall `nr`, if aerie knows it.
pub fn name_of(nr: u16) -> Option<&'static str> {
    // The table is sorted by number.
    X86_64
        .binary_search_by_key(&nr, |(n, _)| *n)
        .ok()
        .map(|i| X86_64[i].1)
}

/// The number of the syscall named `name`.
pub fn nr_of(name: &str) -> Option<u16> {
    X86_64.iter().find(|(_, n)| *n == name).map(|(nr, _)| *nr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_lookups_agree() {
        assert!(X86_64.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(name_of(257), Some("openat"));
        assert_eq!(name_of(59), Some("execve"));
        assert_eq!(nr_of("ptrace"), Some(101));
        assert_eq!(name_of(9999), None);
        for (nr, name) in X86_64 {
            assert_eq!(nr_of(name), Some(*nr));
        }
    }
}
