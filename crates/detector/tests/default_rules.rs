//! Every rule in config/rules/aerie_rules.yaml fires on the behaviour it describes and stays
//! quiet on a close benign variant. Synthetic events go through the real state tracker, field
//! extraction and rules engine.

mod synthetic;

use aerie_detector::fields::SockAddr;
use synthetic::*;

const O_RDONLY: u64 = 0;
const O_WRONLY: u64 = 1;
const O_TRUNC: u64 = 0o1000;

fn scenario() -> Scenario {
    Scenario::new(&[default_rules()])
}

fn shell(s: &mut Scenario, pid: u32, container: &str) {
    s.spawn(&Proc {
        pid,
        exe: "/bin/bash",
        argv: &["bash"],
        container,
        ..Default::default()
    });
}

#[test]
fn every_rule_in_the_file_has_a_test_here() {
    let text = std::fs::read_to_string(default_rules()).unwrap();
    let me = include_str!("default_rules.rs");
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("- rule: "))
        .collect();
    assert!(names.len() >= 14, "{names:?}");
    for n in names {
        // Each rule's test names it in a `RULE` constant and asserts both that it fires
        // (`[RULE]`) and that it does not (`contains(&RULE)` negated or an empty result).
        assert!(
            me.contains(&format!("const RULE: &str = \"{n}\";")),
            "rule {n:?} has no test"
        );
    }
}

#[test]
fn setuid_to_root() {
    const RULE: &str = "Setuid to Root by Non-Root Process";
    let mut s = scenario();
    s.spawn(&Proc {
        pid: 100,
        exe: "/tmp/x",
        argv: &["x"],
        uid: 1000,
        ..Default::default()
    });
    let mut ev = s.event(100, "setuid", 0);
    ev.args[0] = 0;
    // The kernel reports the credentials after the call.
    ev.creds = Some(Default::default());
    let a = s.send(&ev);
    assert_eq!(rules(&a), [RULE]);
    assert_eq!(a[0].field_str("user.name"), Some("alice"));
    assert_eq!(a[0].field_str("proc.exepath"), Some("/tmp/x"));
    // After the call the process is root; a second setuid(0) by root is not an escalation.
    let mut again = s.event(100, "setuid", 0);
    again.args[0] = 0;
    assert!(!rules(&s.send(&again)).contains(&RULE));
    // A non-root process dropping to another non-root uid, or failing, does not fire.
    s.spawn(&Proc {
        pid: 101,
        exe: "/usr/bin/app",
        argv: &["app"],
        uid: 1000,
        ..Default::default()
    });
    let mut drop = s.event(101, "setuid", 0);
    drop.args[0] = 33;
    assert!(!rules(&s.send(&drop)).contains(&RULE));
    let mut failed = s.event(101, "setuid", -1);
    failed.args[0] = 0;
    assert!(!rules(&s.send(&failed)).contains(&RULE));
}

#[test]
fn root_program_from_unusual_location() {
    const RULE: &str = "Root Program Run From Unusual Location by Logged-In User";
    let mut s = scenario();
    shell(&mut s, 10, HOST);
    let a = s.spawn(&Proc {
        pid: 11,
        ppid: 10,
        exe: "/tmp/.hidden/rootme",
        argv: &["./rootme"],
        uid: 0,
        loginuid: 1000,
        ..Default::default()
    });
    assert_eq!(rules(&a), [RULE]);
    assert_eq!(a[0].field_str("user.loginname"), Some("alice"));
    // Through sudo it is an intended elevation.
    s.spawn(&Proc {
        pid: 12,
        ppid: 10,
        exe: "/usr/bin/sudo",
        argv: &["sudo", "/tmp/tool"],
        uid: 0,
        loginuid: 1000,
        ..Default::default()
    });
    let a = s.spawn(&Proc {
        pid: 13,
        ppid: 12,
        exe: "/tmp/tool",
        argv: &["/tmp/tool"],
        uid: 0,
        loginuid: 1000,
        ..Default::default()
    });
    assert!(!rules(&a).contains(&RULE));
    // The same user running it unprivileged does not fire.
    let a = s.spawn(&Proc {
        pid: 14,
        ppid: 10,
        exe: "/tmp/tool",
        argv: &["/tmp/tool"],
        uid: 1000,
        loginuid: 1000,
        ..Default::default()
    });
    assert!(!rules(&a).contains(&RULE));
}

#[test]
fn shadow_read() {
    const RULE: &str = "Shadow or Sudoers File Read by Unexpected Program";
    let mut s = scenario();
    s.spawn(&Proc {
        pid: 20,
        exe: "/usr/bin/cat",
        argv: &["cat", "/etc/shadow"],
        ..Default::default()
    });
    let a = s.open(20, "/etc/shadow", O_RDONLY, 3);
    assert_eq!(rules(&a), [RULE]);
    assert_eq!(a[0].field_str("fd.name"), Some("/etc/shadow"));
    assert_eq!(a[0].field_str("proc.cmdline"), Some("cat /etc/shadow"));
    assert!(rules(&s.open(20, "/etc/sudoers.d/90-cloud", O_RDONLY, 4)).contains(&RULE));
    // A failed open, another file, or the password tool itself: nothing.
    assert!(s.open(20, "/etc/shadow", O_RDONLY, -13).is_empty());
    assert!(s.open(20, "/etc/hostname", O_RDONLY, 5).is_empty());
    s.spawn(&Proc {
        pid: 21,
        exe: "/usr/bin/passwd",
        argv: &["passwd"],
        ..Default::default()
    });
    assert!(!rules(&s.open(21, "/etc/shadow", O_RDONLY, 3)).contains(&RULE));
}

#[test]
fn account_file_write() {
    const RULE: &str = "Account or Sudoers File Modified";
    let mut s = scenario();
    shell(&mut s, 30, HOST);
    let a = s.open(30, "/etc/passwd", O_WRONLY | 0o2000, 3);
    assert_eq!(rules(&a), [RULE]);
    assert!(
        a[0].output.contains("flags=O_WRONLY|O_APPEND"),
        "{}",
        a[0].output
    );
    // Reading it, or useradd writing it, is fine.
    assert!(s.open(30, "/etc/passwd", O_RDONLY, 4).is_empty());
    s.spawn(&Proc {
        pid: 31,
        exe: "/usr/sbin/useradd",
        argv: &["useradd", "bob"],
        ..Default::default()
    });
    assert!(!rules(&s.open(31, "/etc/passwd", O_WRONLY, 3)).contains(&RULE));
}

#[test]
fn ssh_key_read() {
    const RULE: &str = "SSH Private Key Read by Non-SSH Program";
    let mut s = scenario();
    s.spawn(&Proc {
        pid: 40,
        exe: "/usr/bin/python3",
        argv: &["python3", "steal.py"],
        ..Default::default()
    });
    assert_eq!(
        rules(&s.open(40, "/home/alice/.ssh/id_ed25519", O_RDONLY, 3)),
        [RULE]
    );
    assert_eq!(
        rules(&s.open(40, "/etc/ssh/ssh_host_rsa_key", O_RDONLY, 4)),
        [RULE]
    );
    // Public keys are not secrets; ssh reading its own key is normal.
    assert!(
        s.open(40, "/home/alice/.ssh/id_ed25519.pub", O_RDONLY, 5)
            .is_empty()
    );
    assert!(
        s.open(40, "/etc/ssh/ssh_host_rsa_key.pub", O_RDONLY, 6)
            .is_empty()
    );
    s.spawn(&Proc {
        pid: 41,
        exe: "/usr/bin/ssh",
        argv: &["ssh", "host"],
        ..Default::default()
    });
    assert!(!rules(&s.open(41, "/home/alice/.ssh/id_ed25519", O_RDONLY, 3)).contains(&RULE));
}

#[test]
fn kube_credentials_read() {
    const RULE: &str = "Kubernetes Credentials Read";
    let mut s = scenario();
    shell(&mut s, 50, CONTAINER);
    s.spawn(&Proc {
        pid: 51,
        ppid: 50,
        exe: "/bin/cat",
        argv: &["cat", "token"],
        container: CONTAINER,
        ..Default::default()
    });
    let a = s.open(
        51,
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        O_RDONLY,
        3,
    );
    assert_eq!(rules(&a), [RULE]);
    assert_eq!(a[0].field_str("container.id"), Some(CONTAINER));
    assert_eq!(
        rules(&s.open(51, "/etc/kubernetes/admin.conf", O_RDONLY, 4)),
        [RULE]
    );
    // An application reading its own token, or kubelet reading the PKI: nothing.
    s.spawn(&Proc {
        pid: 52,
        exe: "/app/server",
        argv: &["server"],
        container: CONTAINER,
        ..Default::default()
    });
    assert!(
        s.open(
            52,
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
            O_RDONLY,
            3
        )
        .is_empty()
    );
    s.spawn(&Proc {
        pid: 53,
        exe: "/usr/bin/kubelet",
        argv: &["kubelet"],
        ..Default::default()
    });
    assert!(
        s.open(53, "/etc/kubernetes/pki/ca.key", O_RDONLY, 3)
            .is_empty()
    );
}

#[test]
fn outbound_by_shell() {
    const RULE: &str = "Outbound Connection by Shell or Netcat";
    let mut s = scenario();
    shell(&mut s, 60, HOST);
    s.socket(60, 2, 1, 3);
    let remote = SockAddr::Inet("198.51.100.7:4444".parse().unwrap());
    let a = s.connect(60, 3, remote, 0);
    assert_eq!(rules(&a), [RULE]);
    assert_eq!(
        a[0].field_str("fd.name"),
        Some("0.0.0.0:0->198.51.100.7:4444")
    );
    assert_eq!(a[0].output_fields["fd.sport"], serde_json::json!(4444));
    // Loopback, or a connection made by a regular program, does not fire.
    s.socket(60, 2, 1, 4);
    let lo = SockAddr::Inet("127.0.0.1:8080".parse().unwrap());
    assert!(s.connect(60, 4, lo, 0).is_empty());
    s.spawn(&Proc {
        pid: 61,
        exe: "/usr/bin/curl",
        argv: &["curl", "https://example.org"],
        ..Default::default()
    });
    s.socket(61, 2, 1, 3);
    assert!(s.connect(61, 3, remote, -115).is_empty());
}

#[test]
fn listener_by_shell_or_interpreter() {
    const RULE: &str = "Network Listener Opened by Shell, Netcat or Interpreter";
    let mut s = scenario();
    s.spawn(&Proc {
        pid: 70,
        exe: "/usr/bin/python3",
        argv: &["python3", "-m", "http.server"],
        ..Default::default()
    });
    s.socket(70, 2, 1, 3);
    let mut bind = s.event(70, "bind", 0);
    bind.args[0] = 3;
    bind.addr = Some(SockAddr::Inet("0.0.0.0:8000".parse().unwrap()));
    s.send(&bind);
    let mut listen = s.event(70, "listen", 0);
    listen.args[0] = 3;
    let a = s.send(&listen);
    assert_eq!(rules(&a), [RULE]);
    assert_eq!(a[0].output_fields["fd.sport"], serde_json::json!(8000));
    // A real server binary listening is not flagged.
    s.spawn(&Proc {
        pid: 71,
        exe: "/usr/sbin/nginx",
        argv: &["nginx"],
        ..Default::default()
    });
    s.socket(71, 2, 1, 3);
    let mut l2 = s.event(71, "listen", 0);
    l2.args[0] = 3;
    assert!(s.send(&l2).is_empty());
}

#[test]
fn shell_in_container() {
    const RULE: &str = "Shell Started in Container";
    let mut s = scenario();
    s.spawn(&Proc {
        pid: 80,
        exe: "/usr/bin/containerd-shim-runc-v2",
        argv: &["containerd-shim-runc-v2"],
        ..Default::default()
    });
    s.spawn(&Proc {
        pid: 81,
        ppid: 80,
        exe: "/usr/sbin/nginx",
        argv: &["nginx"],
        container: CONTAINER,
        ..Default::default()
    });
    let a = s.spawn(&Proc {
        pid: 82,
        ppid: 81,
        exe: "/bin/sh",
        argv: &["sh", "-c", "id"],
        container: CONTAINER,
        ..Default::default()
    });
    assert_eq!(rules(&a), [RULE]);
    assert_eq!(a[0].field_str("proc.pname"), Some("nginx"));
    // Image fields have no runtime to come from: null, <NA> in the text.
    assert!(a[0].output_fields["container.image.repository"].is_null());
    assert!(a[0].output.contains("image=<NA>"));
    // A shell started by a shell, or a shell on the host, does not fire.
    assert!(
        !rules(&s.spawn(&Proc {
            pid: 83,
            ppid: 82,
            exe: "/bin/bash",
            argv: &["bash"],
            container: CONTAINER,
            ..Default::default()
        }))
        .contains(&RULE)
    );
    assert!(
        !rules(&s.spawn(&Proc {
            pid: 84,
            ppid: 1,
            exe: "/bin/bash",
            argv: &["bash"],
            ..Default::default()
        }))
        .contains(&RULE)
    );
}

#[test]
fn network_tool_in_container() {
    const RULE: &str = "Suspicious Network Tool Run in Container";
    let mut s = scenario();
    shell(&mut s, 90, CONTAINER);
    let a = s.spawn(&Proc {
        pid: 91,
        ppid: 90,
        exe: "/usr/bin/nmap",
        argv: &["nmap", "-sS", "10.0.0.0/24"],
        container: CONTAINER,
        ..Default::default()
    });
    assert_eq!(rules(&a), [RULE]);
    assert_eq!(a[0].field_str("proc.cmdline"), Some("nmap -sS 10.0.0.0/24"));
    // On the host the admin's nmap is not this rule's business.
    let a = s.spawn(&Proc {
        pid: 92,
        exe: "/usr/bin/nmap",
        argv: &["nmap", "localhost"],
        ..Default::default()
    });
    assert!(!rules(&a).contains(&RULE));
}

#[test]
fn runtime_socket() {
    const RULE: &str = "Container Runtime Socket Accessed";
    let mut s = scenario();
    s.spawn(&Proc {
        pid: 100,
        exe: "/usr/bin/curl",
        argv: &[
            "curl",
            "--unix-socket",
            "/var/run/docker.sock",
            "http://x/containers/json",
        ],
        container: CONTAINER,
        ..Default::default()
    });
    s.socket(100, 1, 1, 3);
    let sock = SockAddr::Unix(b"/var/run/docker.sock", false);
    let a = s.connect(100, 3, sock, 0);
    assert_eq!(rules(&a), [RULE]);
    assert_eq!(a[0].field_str("fd.name"), Some("/var/run/docker.sock"));
    // The docker CLI on the host, or another unix socket, is fine.
    s.spawn(&Proc {
        pid: 101,
        exe: "/usr/bin/docker",
        argv: &["docker", "ps"],
        ..Default::default()
    });
    s.socket(101, 1, 1, 3);
    assert!(s.connect(101, 3, sock, 0).is_empty());
    s.socket(100, 1, 1, 4);
    let other = SockAddr::Unix(b"/run/dbus/system_bus_socket", false);
    assert!(s.connect(100, 4, other, 0).is_empty());
}

#[test]
fn proc_1_root() {
    const RULE: &str = "Host Root Accessed Through /proc/1/root";
    let mut s = scenario();
    shell(&mut s, 110, CONTAINER);
    let a = s.open(110, "/proc/1/root/etc/crontab", O_WRONLY | O_TRUNC, 3);
    assert_eq!(rules(&a), [RULE]);
    assert_eq!(a[0].field_str("fd.name"), Some("/proc/1/root/etc/crontab"));
    // A refused attempt fires too, and says so.
    let a = s.open(110, "/proc/1/root/etc/shadow", O_RDONLY, -13);
    assert_eq!(rules(&a), [RULE]);
    assert!(a[0].output.contains("result=EACCES"), "{}", a[0].output);
    // Other /proc files, and /proc/1/rootfs-like names, do not fire.
    assert!(s.open(110, "/proc/1/status", O_RDONLY, 4).is_empty());
    assert!(
        s.open(110, "/proc/12/root/etc/hosts", O_RDONLY, 5)
            .is_empty()
    );
}

#[test]
fn mount_in_container() {
    const RULE: &str = "Filesystem Mounted Inside Container";
    let mut s = scenario();
    shell(&mut s, 120, CONTAINER);
    let mut m = s.event(120, "mount", 0);
    m.strs[0] = b"/dev/sda1";
    m.strs[1] = b"/mnt";
    m.strs[2] = b"ext4";
    let a = s.send(&m);
    assert_eq!(rules(&a), [RULE]);
    assert!(
        a[0].output
            .contains("source=/dev/sda1 target=/mnt fstype=ext4"),
        "{}",
        a[0].output
    );
    // The same mount on the host, or a failed one in the container, does not fire.
    shell(&mut s, 121, HOST);
    let mut h = s.event(121, "mount", 0);
    h.strs[1] = b"/mnt";
    assert!(s.send(&h).is_empty());
    let mut f = s.event(120, "mount", -1);
    f.strs[1] = b"/mnt";
    assert!(s.send(&f).is_empty());
}

#[test]
fn kernel_module() {
    const RULE: &str = "Kernel Module Loaded";
    let mut s = scenario();
    s.spawn(&Proc {
        pid: 130,
        exe: "/usr/sbin/insmod",
        argv: &["insmod", "rootkit.ko"],
        ..Default::default()
    });
    let mut ev = s.event(130, "finit_module", 0);
    ev.args[0] = 3;
    let a = s.send(&ev);
    assert_eq!(rules(&a), [RULE]);
    assert!(a[0].output.contains("with finit_module"));
    // systemd-modules-load at boot, or a refused load, does not fire.
    s.spawn(&Proc {
        pid: 131,
        exe: "/usr/lib/systemd/systemd-modules-load",
        argv: &["systemd-modules-load"],
        ..Default::default()
    });
    assert!(s.send(&s.event(131, "init_module", 0)).is_empty());
    assert!(s.send(&s.event(130, "init_module", -1)).is_empty());
}

#[test]
fn bpf_load() {
    const RULE: &str = "BPF Program Loaded by Unexpected Process";
    let mut s = scenario();
    s.spawn(&Proc {
        pid: 140,
        exe: "/tmp/loader",
        argv: &["loader"],
        ..Default::default()
    });
    let mut ev = s.event(140, "bpf", 7);
    ev.args[0] = 5; // BPF_PROG_LOAD
    assert_eq!(rules(&s.send(&ev)), [RULE]);
    // Creating a map is not loading a program.
    let mut map = s.event(140, "bpf", 8);
    map.args[0] = 0;
    assert!(s.send(&map).is_empty());
}
