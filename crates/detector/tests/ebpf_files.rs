//! Root-only: file syscalls made by this test thread are decoded with their paths, flags,
//! modes, fds and return values.

mod ebpf_support;

use aerie_detector::event::{AT_FDCWD, SyscallArgs};
use ebpf_support::{TempDir, c, first, gettid, root_or_skip, start, syscalls_of};

#[tokio::test]
async fn open_close_dup_and_memfd() {
    if !root_or_skip("open_close_dup_and_memfd") {
        return;
    }
    let mut cap = start(&[
        "openat",
        "openat2",
        "creat",
        "close",
        "dup",
        "dup2",
        "dup3",
        "memfd_create",
    ]);
    let dir = TempDir::new("files");
    let path = dir.path("syslog");
    let tid = gettid();
    let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC | libc::O_CLOEXEC;
    // SAFETY: plain syscalls on valid C strings; every fd is closed below.
    let (fd, fd2, dup_fd, memfd, created, fd3) = unsafe {
        let fd = libc::openat(libc::AT_FDCWD, c(&path).as_ptr(), flags, 0o640);
        assert!(fd >= 0);
        // struct open_how { u64 flags; u64 mode; u64 resolve; }
        let how: [u64; 3] = [libc::O_RDONLY as u64, 0, 0];
        let fd2 = libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c(&path).as_ptr(),
            how.as_ptr(),
            size_of::<[u64; 3]>(),
        ) as i32;
        assert!(fd2 >= 0);
        let dup_fd = libc::dup(fd);
        assert_eq!(libc::dup2(fd, 200), 200);
        assert_eq!(libc::dup3(fd, 201, libc::O_CLOEXEC), 201);
        let memfd = libc::memfd_create(c("aerie-memfd").as_ptr(), libc::MFD_CLOEXEC);
        let created = libc::creat(c(&dir.path("created")).as_ptr(), 0o600);
        let fd3 = libc::openat(
            libc::AT_FDCWD,
            c("/nonexistent/aerie").as_ptr(),
            libc::O_RDONLY,
        );
        for f in [fd, fd2, dup_fd, 200, 201, memfd, created] {
            libc::close(f);
        }
        (fd, fd2, dup_fd, memfd, created, fd3)
    };
    let evs = syscalls_of(
        &mut cap,
        tid,
        &[
            "openat",
            "openat2",
            "creat",
            "close",
            "dup",
            "dup2",
            "dup3",
            "memfd_create",
        ],
    )
    .await;

    let opens: Vec<_> = evs
        .iter()
        .filter(|(_, s)| s.name == "openat")
        .map(|(_, s)| s)
        .collect();
    let ok = opens
        .iter()
        .find(|s| matches!(&s.args, SyscallArgs::Open { path: p, .. } if *p == path))
        .unwrap_or_else(|| panic!("no openat of {path}: {opens:#?}"));
    assert_eq!(ok.ret, i64::from(fd));
    assert_eq!(
        ok.args,
        SyscallArgs::Open {
            dirfd: Some(AT_FDCWD),
            path: path.clone(),
            flags: flags as u32,
            mode: 0o640
        }
    );
    let failed = opens
        .iter()
        .find(|s| matches!(&s.args, SyscallArgs::Open { path: p, .. } if p == "/nonexistent/aerie"))
        .expect("failed openat reported");
    assert_eq!(fd3, -1);
    assert_eq!(failed.ret, -i64::from(libc::ENOENT));
    assert!(failed.failed());

    let o2 = first(&evs, "openat2");
    assert_eq!(o2.ret, i64::from(fd2));
    assert_eq!(
        o2.args,
        SyscallArgs::Open {
            dirfd: Some(AT_FDCWD),
            path: path.clone(),
            flags: 0,
            mode: 0
        }
    );

    let cr = first(&evs, "creat");
    assert_eq!(cr.ret, i64::from(created));
    assert!(
        matches!(&cr.args, SyscallArgs::Open { path: p, mode: 0o600, flags: f, .. }
        if *p == dir.path("created") && *f as i32 & libc::O_TRUNC != 0)
    );

    assert_eq!(
        first(&evs, "dup").args,
        SyscallArgs::Dup {
            oldfd: fd,
            newfd: None,
            flags: 0
        }
    );
    assert_eq!(first(&evs, "dup").ret, i64::from(dup_fd));
    assert_eq!(
        first(&evs, "dup2").args,
        SyscallArgs::Dup {
            oldfd: fd,
            newfd: Some(200),
            flags: 0
        }
    );
    assert_eq!(
        first(&evs, "dup3").args,
        SyscallArgs::Dup {
            oldfd: fd,
            newfd: Some(201),
            flags: libc::O_CLOEXEC as u32
        }
    );
    let m = first(&evs, "memfd_create");
    assert_eq!(m.ret, i64::from(memfd));
    assert_eq!(
        m.args,
        SyscallArgs::MemfdCreate {
            name: "aerie-memfd".into(),
            flags: libc::MFD_CLOEXEC
        }
    );
    let closes: Vec<_> = evs
        .iter()
        .filter_map(|(_, s)| match s.args {
            SyscallArgs::Close { fd } => Some(fd),
            _ => None,
        })
        .collect();
    assert!(
        closes.contains(&fd) && closes.contains(&200) && closes.contains(&memfd),
        "{closes:?}"
    );
}

#[tokio::test]
async fn links_renames_unlinks_mkdir_chmod() {
    if !root_or_skip("links_renames_unlinks_mkdir_chmod") {
        return;
    }
    let names = [
        "symlinkat",
        "symlink",
        "linkat",
        "link",
        "renameat2",
        "rename",
        "unlinkat",
        "unlink",
        "mkdir",
        "mkdirat",
        "fchmodat",
        "chmod",
        "fchmod",
    ];
    let dir = TempDir::new("links");
    let target = dir.path("target");
    std::fs::write(&target, b"x").expect("write target");
    let mut cap = start(&names);
    let tid = gettid();
    // SAFETY: raw syscalls on valid C strings, all inside the temp dir.
    unsafe {
        assert_eq!(
            libc::symlink(c("/etc").as_ptr(), c(&dir.path("sym")).as_ptr()),
            0
        );
        assert_eq!(
            libc::symlinkat(
                c("/etc/shadow").as_ptr(),
                libc::AT_FDCWD,
                c(&dir.path("sym2")).as_ptr()
            ),
            0
        );
        assert_eq!(
            libc::link(c(&target).as_ptr(), c(&dir.path("hard")).as_ptr()),
            0
        );
        assert_eq!(
            libc::linkat(
                libc::AT_FDCWD,
                c(&target).as_ptr(),
                libc::AT_FDCWD,
                c(&dir.path("hard2")).as_ptr(),
                0
            ),
            0
        );
        assert_eq!(
            libc::rename(
                c(&dir.path("hard")).as_ptr(),
                c(&dir.path("moved")).as_ptr()
            ),
            0
        );
        assert_eq!(
            libc::renameat2(
                libc::AT_FDCWD,
                c(&dir.path("moved")).as_ptr(),
                libc::AT_FDCWD,
                c(&dir.path("moved2")).as_ptr(),
                libc::RENAME_NOREPLACE
            ),
            0
        );
        assert_eq!(libc::mkdir(c(&dir.path("d")).as_ptr(), 0o750), 0);
        assert_eq!(libc::chmod(c(&target).as_ptr(), 0o4755), 0);
        assert_eq!(libc::unlink(c(&dir.path("moved2")).as_ptr()), 0);
        assert_eq!(
            libc::unlinkat(
                libc::AT_FDCWD,
                c(&dir.path("d")).as_ptr(),
                libc::AT_REMOVEDIR
            ),
            0
        );
    }
    let evs = syscalls_of(
        &mut cap,
        tid,
        &[
            "symlink",
            "symlinkat",
            "link",
            "linkat",
            "rename",
            "renameat2",
            "mkdir",
            "chmod",
            "unlink",
            "unlinkat",
        ],
    )
    .await;
    assert_eq!(
        first(&evs, "symlink").args,
        SyscallArgs::Link {
            symbolic: true,
            target_dirfd: None,
            target: "/etc".into(),
            link_dirfd: None,
            linkpath: dir.path("sym"),
            flags: 0
        }
    );
    assert_eq!(
        first(&evs, "symlinkat").args,
        SyscallArgs::Link {
            symbolic: true,
            target_dirfd: None,
            target: "/etc/shadow".into(),
            link_dirfd: Some(AT_FDCWD),
            linkpath: dir.path("sym2"),
            flags: 0
        }
    );
    assert_eq!(
        first(&evs, "link").args,
        SyscallArgs::Link {
            symbolic: false,
            target_dirfd: None,
            target: target.clone(),
            link_dirfd: None,
            linkpath: dir.path("hard"),
            flags: 0
        }
    );
    assert_eq!(
        first(&evs, "linkat").args,
        SyscallArgs::Link {
            symbolic: false,
            target_dirfd: Some(AT_FDCWD),
            target: target.clone(),
            link_dirfd: Some(AT_FDCWD),
            linkpath: dir.path("hard2"),
            flags: 0
        }
    );
    assert_eq!(
        first(&evs, "rename").args,
        SyscallArgs::Rename {
            old_dirfd: None,
            oldpath: dir.path("hard"),
            new_dirfd: None,
            newpath: dir.path("moved"),
            flags: 0
        }
    );
    assert_eq!(
        first(&evs, "renameat2").args,
        SyscallArgs::Rename {
            old_dirfd: Some(AT_FDCWD),
            oldpath: dir.path("moved"),
            new_dirfd: Some(AT_FDCWD),
            newpath: dir.path("moved2"),
            flags: libc::RENAME_NOREPLACE
        }
    );
    assert_eq!(
        first(&evs, "mkdir").args,
        SyscallArgs::Mkdir {
            dirfd: None,
            path: dir.path("d"),
            mode: 0o750
        }
    );
    assert_eq!(
        first(&evs, "chmod").args,
        SyscallArgs::Chmod {
            dirfd: None,
            path: Some(target.clone()),
            fd: None,
            mode: 0o4755
        }
    );
    assert_eq!(
        first(&evs, "unlink").args,
        SyscallArgs::Unlink {
            dirfd: None,
            path: dir.path("moved2"),
            flags: 0
        }
    );
    assert_eq!(
        first(&evs, "unlinkat").args,
        SyscallArgs::Unlink {
            dirfd: Some(AT_FDCWD),
            path: dir.path("d"),
            flags: libc::AT_REMOVEDIR as u32
        }
    );
    for (_, s) in &evs {
        assert_eq!(s.ret, 0, "{} succeeded", s.name);
    }
}
