//! Falco's incubating and sandbox rules loaded unmodified next to the stable ones: real
//! actions raise rules whose syscalls or fields the stable rules do not use. Needs root
//! (skips with a notice; fails under CI=true).

mod detect_support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use detect_support::*;

const WAIT: Duration = Duration::from_secs(10);
/// `UFFD_USER_MODE_ONLY`: lets an unprivileged user create a userfaultfd whatever
/// `vm.unprivileged_userfaultfd` says.
const UFFD_USER_MODE_ONLY: libc::c_long = 1;

/// Fork, optionally drop to `nobody`, call userfaultfd; true when the call succeeded.
fn userfaultfd_as(unprivileged: bool) -> bool {
    // SAFETY: the child only makes async-signal-safe calls (setgid, setuid, syscall, _exit).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: as above; the child never returns into Rust code.
        unsafe {
            if unprivileged && (libc::setgid(65534) != 0 || libc::setuid(65534) != 0) {
                libc::_exit(2);
            }
            let fd = libc::syscall(
                libc::SYS_userfaultfd,
                libc::O_CLOEXEC as libc::c_long | UFFD_USER_MODE_ONLY,
            );
            libc::_exit(if fd >= 0 { 0 } else { 1 });
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

#[test]
fn sandbox_userfaultfd_rule_fires_for_an_unprivileged_user_only() {
    if !privileged() {
        return;
    }
    let Some(stable) = falco_rules() else { return };
    let sandbox = stable.with_file_name("falco-sandbox_rules.yaml");
    assert!(sandbox.exists(), "{} is missing", sandbox.display());
    let dir = scratch("sandbox");
    let d = Detector::start(&[stable, sandbox], &dir);
    const RULE: &str = "Unprivileged Delegation of Page Faults Handling to a Userspace Process";
    let mut f = Failures::default();

    // Root: the rule excludes uid 0, so this one must stay silent.
    assert!(userfaultfd_as(false), "userfaultfd as root failed");
    assert!(userfaultfd_as(true), "userfaultfd as nobody failed");
    let a = d.wait_for(RULE, WAIT, |a| {
        a.field_str("evt.type") == Some("userfaultfd")
    });
    f.check(a.is_some(), "unprivileged userfaultfd: no alert");
    if let Some(a) = &a {
        f.check(
            a.output.contains("user_uid=65534"),
            format!("alert names the unprivileged user: {}", a.output),
        );
    }
    let from_root = d
        .alerts()
        .into_iter()
        .filter(|a| a.rule == RULE && a.output.contains("user_uid=0 "))
        .count();
    f.check(from_root == 0, "userfaultfd as root alerted");
    f.finish(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn incubating_rules_on_setuid_bits_environment_and_bpf() {
    if !privileged() {
        return;
    }
    let Some(stable) = falco_rules() else { return };
    let incubating = stable.with_file_name("falco-incubating_rules.yaml");
    assert!(incubating.exists(), "{} is missing", incubating.display());
    let dir = scratch("incubating");
    let d = Detector::start(&[stable, incubating], &dir);
    const RULE: &str = "Set Setuid or Setgid bit";
    let mut f = Failures::default();

    let benign = dir.join("plain");
    let suid = dir.join("suid");
    for p in [&benign, &suid] {
        std::fs::write(p, b"x").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    run(Command::new("chmod").arg("755").arg(&benign));
    run(Command::new("chmod").arg("u+s").arg(&suid));
    let want = suid.display().to_string();
    let a = d.wait_for(RULE, WAIT, |a| a.output.contains(&want));
    f.check(a.is_some(), "chmod u+s: no alert");
    if let Some(a) = &a {
        f.check(
            a.output.contains("S_ISUID") && a.output.contains("command=chmod u+s"),
            format!("alert names the mode and the command: {}", a.output),
        );
    }
    let benign_text = benign.display().to_string();
    let quiet = d
        .alerts()
        .into_iter()
        .filter(|a| a.rule == RULE && a.output.contains(&benign_text))
        .count();
    f.check(quiet == 0, "chmod 755 alerted");

    // proc.env: the environment comes with the exec (read only because a rule uses it).
    const ENV_RULE: &str = "Potential Local Privilege Escalation via Environment Variables Misuse";
    let tunables = format!("aerie-tunables-{}", std::process::id());
    let plain = format!("aerie-plain-{}", std::process::id());
    run(Command::new("/bin/true")
        .arg(&tunables)
        .env("GLIBC_TUNABLES", "glibc.malloc.mxfast=0"));
    run(Command::new("/bin/true").arg(&plain));
    let a = d.wait_for(ENV_RULE, WAIT, |a| a.output.contains(&tunables));
    f.check(a.is_some(), "GLIBC_TUNABLES: no alert");
    if let Some(a) = &a {
        f.check(
            a.output.contains("GLIBC_TUNABLES=glibc.malloc.mxfast=0"),
            format!("alert shows the environment: {}", a.output),
        );
    }
    let quiet = d
        .alerts()
        .into_iter()
        .filter(|a| a.rule == ENV_RULE && a.output.contains(&plain))
        .count();
    f.check(quiet == 0, "a run without GLIBC_TUNABLES alerted");

    // bpf(BPF_PROG_LOAD) from this (unprofiled) process: the calibration programs.
    let me = my_comm();
    let loaded = aerie_detector::ebpf::calibration::Calibration::attach(
        aerie_detector::ebpf::calibration::HookFloor::Empty,
    )
    .expect("load the calibration programs");
    drop(loaded);
    let a = d.wait_for("BPF Program Not Profiled", WAIT, |a| {
        a.field_str("proc.name") == Some(me.as_str())
    });
    f.check(a.is_some(), "BPF_PROG_LOAD by this process: no alert");
    if let Some(a) = &a {
        f.check(
            a.output.contains("bpf_cmd=BPF_PROG_LOAD"),
            format!("alert names the command: {}", a.output),
        );
    }
    f.finish(d);
    let _ = std::fs::remove_dir_all(&dir);
}
