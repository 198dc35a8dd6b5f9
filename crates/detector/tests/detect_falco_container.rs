//! Acceptance in a test container built here: a cgroup named the way docker names one
//! (`/docker/<64 hex>`), new mount, pid, uts and net namespaces, an overlayfs root made from
//! busybox-static, started by a launcher named `runc` on a pseudo-terminal. With Falco's
//! falco_rules.yaml loaded unmodified, real actions inside raise the named upstream rules; a
//! second detector that also loads falco-incubating_rules.yaml checks two of its container
//! rules against the same run.
//! Needs root, cgroup v2, overlayfs and /bin/busybox (skips with a notice; fails under CI=true).

mod detect_support;

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use detect_support::*;

const WAIT: Duration = Duration::from_secs(10);

/// The cgroup v2 mount point (`/sys/fs/cgroup` or `/sys/fs/cgroup/unified` on hybrid hosts).
fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| PathBuf::from(f[1]))
}

fn container_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let seed = t ^ ((std::process::id() as u128) << 64);
    format!("{:032x}{:032x}", seed, seed.rotate_left(17) ^ 0xa5a5_5a5a)
}

/// busybox-static root: lower layer with /bin/busybox and its applet links.
fn build_rootfs(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let (lower, upper, work, merged) = (
        dir.join("lower"),
        dir.join("upper"),
        dir.join("work"),
        dir.join("merged"),
    );
    for d in [&lower, &upper, &work, &merged] {
        std::fs::create_dir_all(d).unwrap();
    }
    for d in ["bin", "proc", "tmp", "dev"] {
        std::fs::create_dir_all(lower.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", lower.join("bin/busybox")).unwrap();
    std::fs::set_permissions(
        lower.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    for applet in [
        "sh", "nc", "cat", "cp", "sleep", "ip", "arping", "true", "echo", "mount", "chroot", "apk",
    ] {
        std::os::unix::fs::symlink("/bin/busybox", lower.join("bin").join(applet)).unwrap();
    }
    (lower, upper, work, merged)
}

/// A pseudo-terminal pair: (master fd, slave path).
fn open_pty() -> (i32, CString) {
    // SAFETY: standard pty allocation; the returned name is copied out immediately.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(m >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let mut buf = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()), 0);
        let name = std::ffi::CStr::from_ptr(buf.as_ptr()).to_owned();
        (m, name)
    }
}

#[test]
fn falco_rules_fire_on_real_actions_in_a_test_container() {
    if !privileged() {
        return;
    }
    let Some(rules) = falco_rules() else { return };
    let Some(cg_root) = cgroup2_root() else {
        panic!("no cgroup2 mount: the test container needs one");
    };
    if !Path::new("/bin/busybox").exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("/bin/busybox missing (scripts/bootstrap installs busybox-static)");
        }
        eprintln!("notice: skipping: /bin/busybox missing");
        return;
    }
    let dir = scratch("container");
    let id = container_id();
    let short = id[..12].to_owned();
    let cgroup = cg_root.join("docker").join(&id);
    std::fs::create_dir_all(&cgroup).unwrap();
    let (lower, upper, work, merged) = build_rootfs(&dir);
    let runc = dir.join("runc");
    std::fs::copy("/usr/bin/unshare", &runc).unwrap();
    std::fs::set_permissions(&runc, std::fs::Permissions::from_mode(0o755)).unwrap();

    let d = Detector::start(std::slice::from_ref(&rules), &dir);
    // A second detector, with the incubating rules too, watches the same container for
    // the container rules that read the environment, tty and tool names.
    let more_dir = scratch("container-more");
    let incubating = rules.with_file_name("falco-incubating_rules.yaml");
    let more = Detector::start(&[rules, incubating], &more_dir);
    let mut f = Failures::default();

    // Inside the container: every case, one after the other.
    // Applets are named by path: busybox's shell runs bare applet names through
    // /proc/self/exe, which the kernel (and Falco) would then call `exe`.
    let inner = [
        "/bin/ip link set lo up",
        // Netcat Remote Code Execution in Container (nothing listens on port 9).
        "/bin/nc -e /bin/sh 127.0.0.1 9 </dev/null; true",
        // Redirect STDOUT/STDIN to Network Connection in Container: nc -e dup2()s the
        // connected loopback socket onto fds 0 and 1 (busybox wants -e PROG last).
        "(/bin/nc -l -p 4444 </dev/null >/dev/null &) ; /bin/sleep 1; /bin/nc 127.0.0.1 4444 -e /bin/true </dev/null; true",
        // Packet socket created in container.
        "/bin/arping -c 1 -w 1 -I lo 127.0.0.1 >/dev/null 2>&1; true",
        // Detect release_agent File Container Escapes.
        "echo 1 > /release_agent",
        // Drop and execute new binary in container.
        "/bin/cp /bin/busybox /tmp/true && /tmp/true",
        // Incubating: Read environment variable from /proc files; Launch Package Management
        // Process in Container (busybox has no apk applet: the exec is what counts).
        "/bin/cat /proc/self/environ >/dev/null",
        "/bin/apk --help >/dev/null 2>&1; true",
    ]
    .join("; ");
    let outer = format!(
        "mount -t overlay overlay -o lowerdir={},upperdir={},workdir={} {m} && mount -t proc proc {m}/proc && mknod -m 666 {m}/dev/null c 1 3 && exec chroot {m} /bin/sh -c '{inner}'",
        lower.display(),
        upper.display(),
        work.display(),
        m = merged.display(),
    );
    let (master, slave) = open_pty();
    // Keep the terminal drained so that nothing inside blocks on output.
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // SAFETY: reading our own master fd until the slave side closes.
        while unsafe { libc::read(master, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    });
    let procs = CString::new(cgroup.join("cgroup.procs").to_str().unwrap()).unwrap();
    let mut launcher = Command::new(&runc);
    launcher
        .args(["-m", "-u", "-n", "-p", "-f", "/bin/sh", "-c", &outer])
        .stdin(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls (open/write/close/setsid/ioctl/dup2) on
    // pre-built C strings between fork and exec.
    unsafe {
        launcher.pre_exec(move || {
            // Join the container's cgroup: "0" means the writing process.
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            // A new session whose controlling terminal is the pty.
            libc::setsid();
            let t = libc::open(slave.as_ptr(), libc::O_RDWR);
            if t < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::ioctl(t, libc::TIOCSCTTY, 0);
            libc::dup2(t, 1);
            libc::dup2(t, 2);
            Ok(())
        });
    }
    let status = launcher.status().expect("starting the test container");
    f.check(
        status.success(),
        format!("test container exited with {status}"),
    );
    // SAFETY: closing our master fd ends the drain thread.
    unsafe { libc::close(master) };
    let _ = drain.join();

    // Falco's outputs do not name the container id; these rules only match in a container,
    // and the commands below are unique to this run.
    let _ = &short;

    let a = d.wait_for("Netcat Remote Code Execution in Container", WAIT, |a| {
        a.field_str("proc.cmdline") == Some("nc -e /bin/sh 127.0.0.1 9")
    });
    f.check(
        a.is_some(),
        "nc -e /bin/sh: no Netcat Remote Code Execution in Container",
    );
    if let Some(a) = a {
        f.check(
            a.field_str("user.name") == Some("root"),
            format!("nc user: {a:?}"),
        );
        f.check(
            a.field_str("proc.pname") == Some("sh"),
            format!("nc parent: {a:?}"),
        );
    }
    f.check(
        d.wait_for(
            "Redirect STDOUT/STDIN to Network Connection in Container",
            WAIT,
            |a| a.field_str("proc.name") == Some("nc"),
        )
        .is_some(),
        "nc -e over a loopback connection: no Redirect STDOUT/STDIN alert",
    );
    f.check(
        d.wait_for("Packet socket created in container", WAIT, |a| {
            a.field_str("proc.name") == Some("arping")
        })
        .is_some(),
        "AF_PACKET socket: no alert",
    );
    let a = d.wait_for("Detect release_agent File Container Escapes", WAIT, |a| {
        a.field_str("fd.name") == Some("/release_agent")
    });
    f.check(a.is_some(), "release_agent write: no alert");
    if let Some(a) = a {
        f.check(
            a.field_str("fd.name") == Some("/release_agent"),
            format!("release_agent file: {a:?}"),
        );
    }
    f.check(
        d.wait_for("Drop and execute new binary in container", WAIT, |a| {
            a.field_str("proc.exe") == Some("/tmp/true")
        })
        .is_some(),
        "exec from the upper layer: no alert",
    );
    let a = d.wait_for("Terminal shell in container", WAIT, |a| {
        a.field_str("proc.cmdline")
            .is_some_and(|c| c.contains("/bin/ip link set lo up"))
    });
    f.check(
        a.is_some(),
        "shell on a pty started by runc: no Terminal shell in container",
    );
    if let Some(a) = a {
        f.check(
            a.field_str("proc.pname") == Some("runc"),
            format!("terminal parent: {a:?}"),
        );
    }

    let a = more.wait_for("Read environment variable from /proc files", WAIT, |a| {
        a.field_str("fd.name") == Some("/proc/self/environ")
    });
    f.check(a.is_some(), "cat /proc/self/environ: no alert");
    let a = more.wait_for(
        "Launch Package Management Process in Container",
        WAIT,
        |a| a.field_str("proc.name") == Some("apk"),
    );
    f.check(a.is_some(), "apk in the container: no alert");
    if let Some(a) = a {
        // proc.tty as Falco encodes it (/proc's tty_nr): a pty slave, major 136..143.
        let tty = a
            .output
            .split_whitespace()
            .find_map(|w| w.strip_prefix("terminal="))
            .and_then(|t| t.parse::<u32>().ok());
        f.check(
            tty.is_some_and(|t| (136..=143).contains(&((t >> 8) & 0xfff))),
            format!("terminal is a pty in tty_nr encoding: {}", a.output),
        );
    }

    let _ = std::fs::remove_dir(&cgroup);
    let _ = std::fs::remove_dir(cg_root.join("docker"));
    f.check(
        more.stop(),
        "the second detector did not exit cleanly on SIGINT",
    );
    f.finish(d);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&more_dir);
}
