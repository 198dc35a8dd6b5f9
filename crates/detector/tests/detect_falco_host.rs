//! Acceptance on the host: with Falco's falco_rules.yaml loaded unmodified, real actions
//! performed here raise the named upstream rules through the real eBPF capture, and the
//! alerts carry the right user, command line, file and parent. Benign runs of the same tools
//! raise none of them. Needs root (skips with a notice; fails under CI=true).

mod detect_support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use detect_support::*;

const WAIT: Duration = Duration::from_secs(10);

fn copy_exe(from: &str, to: &std::path::Path) {
    std::fs::copy(from, to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn falco_rules_fire_on_real_actions_on_the_host() {
    if !privileged() {
        return;
    }
    let Some(rules) = falco_rules() else { return };
    let dir = scratch("host");
    let d = Detector::start(&[rules], &dir);
    // The stable rules bound their opens by path: every check below runs with the kernel
    // keeping the other opens to itself.
    assert!(
        d.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("open path filter on")),
        "the open path filter is not on: {:?}",
        d.stderr.lock().unwrap()
    );
    let me = my_comm();
    let mut f = Failures::default();
    let dirs = dir.display().to_string();

    // Started first because it must have run for more than 5 s: a process named httpd that
    // reads /etc/shadow after startup.
    let httpd = dir.join("httpd");
    copy_exe("/bin/sh", &httpd);
    let mut slow = Command::new(&httpd)
        .arg("-c")
        .arg("sleep 6; read x < /etc/shadow; true")
        .spawn()
        .unwrap();

    // cat /etc/shadow → Read sensitive file untrusted.
    let missing = dir.join("missing");
    run(Command::new("cat").arg("/etc/shadow").arg(&missing));
    let cmdline = format!("cat /etc/shadow {}", missing.display());
    let a = d.wait_for("Read sensitive file untrusted", WAIT, |a| {
        a.field_str("proc.cmdline") == Some(&cmdline)
    });
    f.check(
        a.is_some(),
        "cat /etc/shadow: no Read sensitive file untrusted",
    );
    if let Some(a) = a {
        f.check(
            a.field_str("user.name") == Some("root"),
            format!("user: {a:?}"),
        );
        f.check(
            a.field_str("fd.name") == Some("/etc/shadow"),
            format!("file: {a:?}"),
        );
        f.check(
            a.field_str("proc.pname") == Some(&me),
            format!("parent: {a:?}"),
        );
        f.check(
            a.field_str("proc.name") == Some("cat"),
            format!("name: {a:?}"),
        );
    }

    // /etc/../etc/../etc/shadow → Directory traversal monitored file read.
    run(Command::new("cat")
        .arg("/etc/../etc/../etc/shadow")
        .arg(&missing));
    let a = d.wait_for("Directory traversal monitored file read", WAIT, |a| {
        a.field_str("fd.nameraw") == Some("/etc/../etc/../etc/shadow")
    });
    f.check(a.is_some(), "traversal: no alert");
    if let Some(a) = a {
        f.check(
            a.field_str("fd.name") == Some("/etc/shadow"),
            format!("traversal name: {a:?}"),
        );
    }

    // ln -s /etc DIR/x → Create Symlink Over Sensitive Files.
    let link = dir.join("etc-link");
    run(Command::new("ln").arg("-s").arg("/etc").arg(&link));
    let linkpath = link.display().to_string();
    let a = d.wait_for("Create Symlink Over Sensitive Files", WAIT, |a| {
        a.output.contains(&linkpath)
    });
    f.check(a.is_some(), "ln -s: no alert");
    if let Some(a) = a {
        f.check(
            a.field_str("evt.arg.target") == Some("/etc"),
            format!("symlink target: {a:?}"),
        );
        f.check(
            a.field_str("proc.name") == Some("ln"),
            format!("symlink proc: {a:?}"),
        );
    }

    // ln /etc/shadow DIR/x → Create Hardlink Over Sensitive Files.
    let hard = dir.join("shadow-hard");
    run(Command::new("ln").arg("/etc/shadow").arg(&hard));
    let hardpath = hard.display().to_string();
    let a = d.wait_for("Create Hardlink Over Sensitive Files", WAIT, |a| {
        a.output.contains(&hardpath)
    });
    f.check(a.is_some(), "ln: no alert");
    if let Some(a) = a {
        f.check(
            a.field_str("evt.arg.oldpath") == Some("/etc/shadow"),
            format!("hardlink oldpath: {a:?}"),
        );
    }

    // shred -u FILE → Remove Bulk Data from Disk.
    let victim = dir.join("victim");
    std::fs::write(&victim, b"secret").unwrap();
    run(Command::new("shred").arg("-u").arg(&victim));
    let cmd = format!("shred -u {}", victim.display());
    f.check(
        d.wait_for("Remove Bulk Data from Disk", WAIT, |a| {
            a.field_str("proc.cmdline") == Some(&cmd)
        })
        .is_some(),
        "shred -u: no alert",
    );

    // find DIR -iname id_rsa → Search Private Keys or Passwords.
    run(Command::new("find").arg(&dir).arg("-iname").arg("id_rsa"));
    let cmd = format!("find {dirs} -iname id_rsa");
    f.check(
        d.wait_for("Search Private Keys or Passwords", WAIT, |a| {
            a.field_str("proc.cmdline") == Some(&cmd)
        })
        .is_some(),
        "find id_rsa: no alert",
    );

    // find DIR -iname .aws/credentials → Find AWS Credentials.
    run(Command::new("find")
        .arg(&dir)
        .arg("-iname")
        .arg(".aws/credentials"));
    let cmd = format!("find {dirs} -iname .aws/credentials");
    f.check(
        d.wait_for("Find AWS Credentials", WAIT, |a| {
            a.field_str("proc.cmdline") == Some(&cmd)
        })
        .is_some(),
        "find .aws/credentials: no alert",
    );

    // A script run from /dev/shm → Execution from /dev/shm.
    let script = std::path::PathBuf::from(format!("/dev/shm/aerie-test-{}.sh", std::process::id()));
    std::fs::write(&script, "#!/bin/sh\ntrue\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    run(Command::new("sh").arg(&script));
    let scripts = script.display().to_string();
    f.check(
        d.wait_for("Execution from /dev/shm", WAIT, |a| {
            a.field_str("proc.cmdline")
                .is_some_and(|c| c.contains(&scripts))
        })
        .is_some(),
        "script from /dev/shm: no alert",
    );
    let _ = std::fs::remove_file(&script);

    // memfd_create, then exec of the memfd → Fileless execution via memfd_create.
    memfd_exec(&mut f, &d, &me);

    // PTRACE_ATTACH to another process → PTRACE attached to process.
    let mut victim = Command::new("sleep").arg("20").spawn().unwrap();
    let vpid = victim.id() as i32;
    // SAFETY: attaching to and detaching from our own child.
    unsafe {
        libc::ptrace(libc::PTRACE_ATTACH, vpid, 0, 0);
        let mut st = 0;
        libc::waitpid(vpid, &mut st, 0);
        libc::ptrace(libc::PTRACE_DETACH, vpid, 0, 0);
    }
    let _ = victim.kill();
    let _ = victim.wait();
    f.check(
        d.wait_for("PTRACE attached to process", WAIT, |a| {
            a.field_str("proc.name") == Some(&me)
        })
        .is_some(),
        "PTRACE_ATTACH: no alert",
    );

    // PTRACE_TRACEME → PTRACE anti-debug attempt (in a child that exits right away).
    let mut traceme = Command::new("/bin/true");
    // SAFETY: only async-signal-safe calls between fork and _exit.
    unsafe {
        traceme.pre_exec(|| {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            libc::_exit(0);
        });
    }
    let _ = traceme.status();
    f.check(
        d.wait_for("PTRACE anti-debug attempt", WAIT, |a| {
            a.field_str("proc.name") == Some(&me)
        })
        .is_some(),
        "PTRACE_TRACEME: no alert",
    );

    // A file named syslog opened for writing with O_TRUNC → Clear Log Activities.
    let syslog = dir.join("syslog");
    run(Command::new("sh")
        .arg("-c")
        .arg(format!(": > {}", syslog.display())));
    let sys = syslog.display().to_string();
    f.check(
        d.wait_for("Clear Log Activities", WAIT, |a| {
            a.field_str("fd.name") == Some(&sys)
        })
        .is_some(),
        "truncate syslog: no alert",
    );

    // A process named httpd spawning `sh -c ...` → Run shell untrusted.
    run(Command::new(&httpd).arg("-c").arg("sh -c true; true"));
    let a = d.wait_for("Run shell untrusted", WAIT, |a| {
        a.field_str("proc.pname") == Some("httpd")
    });
    f.check(a.is_some(), "httpd → sh: no alert");
    if let Some(a) = a {
        f.check(
            a.field_str("proc.cmdline") == Some("sh -c true"),
            format!("shell cmdline: {a:?}"),
        );
    }

    // A binary named login run as daemon → System user interactive.
    let login = dir.join("login");
    copy_exe("/bin/true", &login);
    let _ = Command::new(&login).uid(1).gid(1).status();
    let a = d.wait_for("System user interactive", WAIT, |a| {
        a.field_str("proc.name") == Some("login")
    });
    f.check(a.is_some(), "login as daemon: no alert");
    if let Some(a) = a {
        f.check(
            a.field_str("user.name") == Some("daemon"),
            format!("login user: {a:?}"),
        );
    }

    // Benign runs of the same tools raise none of these rules.
    run(Command::new("cat").arg("/etc/hostname"));
    run(Command::new("find")
        .arg("/tmp")
        .arg("-maxdepth")
        .arg("1")
        .arg("-name")
        .arg("aerie-no-such-x"));

    // The long-running httpd reads /etc/shadow after 6 s.
    let _ = slow.wait();
    let a = d.wait_for("Read sensitive file trusted after startup", WAIT, |a| {
        a.field_str("proc.name") == Some("httpd")
    });
    f.check(a.is_some(), "httpd after startup: no alert");
    if let Some(a) = a {
        f.check(
            a.field_str("fd.name") == Some("/etc/shadow"),
            format!("trusted file: {a:?}"),
        );
    }
    let benign: Vec<String> = d
        .alerts()
        .iter()
        .filter(|a| {
            a.field_str("proc.cmdline")
                .is_some_and(|c| c == "cat /etc/hostname" || c.contains("aerie-no-such-x"))
        })
        .map(|a| a.to_json())
        .collect();
    f.check(
        benign.is_empty(),
        format!("benign commands alerted: {benign:?}"),
    );
    f.finish(d);
    let _ = std::fs::remove_dir_all(&dir);
}

fn memfd_exec(f: &mut Failures, d: &Detector, me: &str) {
    let name = std::ffi::CString::new("aerie-memfd").unwrap();
    // SAFETY: memfd_create with a valid NUL-terminated name; no MFD_CLOEXEC so a child
    // can exec it through /proc/self/fd.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create failed");
    let image = std::fs::read("/bin/true").unwrap();
    // SAFETY: writing our buffer to our own fd.
    let n = unsafe { libc::write(fd, image.as_ptr().cast(), image.len()) };
    assert_eq!(n as usize, image.len());
    let _ = Command::new(format!("/proc/self/fd/{fd}")).status();
    // SAFETY: closing our fd.
    unsafe { libc::close(fd) };
    let a = d.wait_for("Fileless execution via memfd_create", WAIT, |a| {
        a.field_str("proc.pname") == Some(me)
    });
    f.check(a.is_some(), "memfd exec: no alert");
}
