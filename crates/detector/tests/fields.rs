//! Field extraction with Falco's meanings, over synthetic events and the real state tracker.

mod synthetic;

use aerie_detector::fields::SockAddr;
use synthetic::*;

fn scenario() -> Scenario {
    Scenario::new(&[default_rules()])
}

/// init(1) → bash(10, tty, login alice) → httpd(11) → sh(12).
fn lineage(s: &mut Scenario) {
    s.spawn(&Proc {
        pid: 10,
        exe: "/bin/bash",
        argv: &["-bash"],
        uid: 1000,
        loginuid: 1000,
        tty: 34816,
        cwd: "/home/alice",
        ..Default::default()
    });
    s.spawn(&Proc {
        pid: 11,
        ppid: 10,
        exe: "/usr/sbin/httpd",
        argv: &["/usr/sbin/httpd", "-DFOREGROUND"],
        uid: 33,
        loginuid: 1000,
        cwd: "/var/www",
        ..Default::default()
    });
    s.spawn(&Proc {
        pid: 12,
        ppid: 11,
        exe: "/bin/sh",
        argv: &["sh", "-c", "id; uname -a"],
        uid: 33,
        loginuid: 1000,
        cwd: "/var/www",
        ..Default::default()
    });
}

#[test]
fn process_lineage_and_identity() {
    let mut s = scenario();
    lineage(&mut s);
    let ev = s.event(12, "getpid", 0);
    let got = extract(
        &mut s,
        &ev,
        &[
            "proc.name",
            "proc.exe",
            "proc.exepath",
            "proc.args",
            "proc.cmdline",
            "proc.pname",
            "proc.pcmdline",
            "proc.aname[2]",
            "proc.aname[3]",
            "proc.aname[4]",
            "proc.aname",
            "proc.aexepath[2]",
            "proc.apid[1]",
            "proc.cwd",
            "user.name",
            "user.uid",
            "user.loginuid",
            "user.loginname",
            "group.name",
            "proc.tty",
            "container.id",
            "container.name",
            "container.image.repository",
            "proc.pid",
            "proc.ppid",
        ],
    );
    let want: Vec<Option<Vec<&str>>> = vec![
        Some(vec!["sh"]),
        Some(vec!["sh"]),
        Some(vec!["/bin/sh"]),
        Some(vec!["-c id; uname -a"]),
        Some(vec!["sh -c id; uname -a"]),
        Some(vec!["httpd"]),
        Some(vec!["httpd -DFOREGROUND"]),
        Some(vec!["bash"]),
        Some(vec!["init"]),
        None,
        Some(vec!["httpd", "bash", "init"]),
        Some(vec!["/bin/bash"]),
        Some(vec!["11"]),
        Some(vec!["/var/www/"]),
        Some(vec!["www-data"]),
        Some(vec!["33"]),
        Some(vec!["1000"]),
        Some(vec!["alice"]),
        Some(vec!["www-data"]),
        Some(vec!["0"]),
        Some(vec!["host"]),
        Some(vec!["host"]),
        None,
        Some(vec!["12"]),
        Some(vec!["11"]),
    ];
    let got: Vec<Option<Vec<&str>>> = got
        .iter()
        .map(|o| o.as_ref().map(|v| v.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(got, want);
    // The login shell keeps its terminal; an unset loginuid is -1, as Falco prints it.
    let ev = s.event(10, "getpid", 0);
    assert_eq!(one(&mut s, &ev, "proc.tty").as_deref(), Some("34816"));
    let ev = s.event(1, "getpid", 0);
    assert_eq!(one(&mut s, &ev, "user.loginuid").as_deref(), Some("-1"));
    assert_eq!(one(&mut s, &ev, "user.loginname"), None);
    assert_eq!(one(&mut s, &ev, "proc.pname"), None);
}

#[test]
fn open_fields() {
    let mut s = scenario();
    lineage(&mut s);
    let mut ev = s.event(12, "openat", 5);
    ev.args = [
        (-100i32) as u32 as u64,
        0,
        0o1 | 0o100 | 0o1000,
        0o640,
        0,
        0,
    ];
    ev.strs[1] = b"logs/../syslog";
    let got = extract(
        &mut s,
        &ev,
        &[
            "fd.name",
            "fd.nameraw",
            "fd.directory",
            "fd.filename",
            "fd.typechar",
            "fd.type",
            "fd.num",
            "evt.is_open_read",
            "evt.is_open_write",
            "evt.arg.flags",
            "evt.rawarg.flags",
            "evt.arg.name",
            "evt.arg.mode",
            "evt.arg[0]",
            "evt.res",
            "evt.rawres",
            "evt.args",
            "evt.type",
            "evt.dir",
        ],
    );
    let flat: Vec<String> = got
        .into_iter()
        .map(|v| v.map_or("<NA>".into(), |v| v.join(",")))
        .collect();
    assert_eq!(
        flat,
        [
            "/var/www/syslog",
            "logs/../syslog",
            "/var/www",
            "syslog",
            "f",
            "file",
            "5",
            "false",
            "true",
            "O_WRONLY|O_CREAT|O_TRUNC",
            "577",
            "logs/../syslog",
            "0640",
            "5",
            "SUCCESS",
            "5",
            "fd=5 dirfd=-100 name=logs/../syslog flags=O_WRONLY|O_CREAT|O_TRUNC mode=0640",
            "openat",
            "<",
        ]
    );
    // A failed open still names the file, with fd.num -1 and the errno as evt.res.
    let mut ev = s.event(12, "openat", -2);
    ev.args = [(-100i32) as u32 as u64, 0, 0, 0, 0, 0];
    ev.strs[1] = b"/etc/shadow";
    let got = extract(
        &mut s,
        &ev,
        &[
            "fd.name",
            "fd.num",
            "fd.typechar",
            "evt.res",
            "evt.is_open_read",
        ],
    );
    let flat: Vec<String> = got.into_iter().map(|v| v.unwrap().join(",")).collect();
    assert_eq!(flat, ["/etc/shadow", "-1", "f", "ENOENT", "true"]);
    // chmod-family modes resolve to Falco's permission names, which rules test with
    // `evt.arg.mode contains "S_ISUID"`; evt.rawarg.mode stays the number.
    let mut ev = s.event(12, "fchmodat", 0);
    ev.args = [(-100i32) as u32 as u64, 0, 0o4755, 0, 0, 0];
    ev.strs[1] = b"/tmp/suid";
    let got = extract(&mut s, &ev, &["evt.arg.mode", "evt.rawarg.mode"]);
    let flat: Vec<String> = got.into_iter().map(|v| v.unwrap().join(",")).collect();
    assert_eq!(
        flat,
        [
            "S_IXOTH|S_IROTH|S_IXGRP|S_IRGRP|S_IXUSR|S_IWUSR|S_IRUSR|S_ISUID",
            "2541"
        ]
    );
    let mut ev = s.event(12, "chmod", 0);
    ev.args = [0, 0, 0, 0, 0, 0];
    ev.strs[0] = b"/tmp/none";
    let got = extract(&mut s, &ev, &["evt.arg.mode"]);
    assert_eq!(
        got[0].as_deref(),
        Some(&["0".to_owned()][..]),
        "no bits: the number"
    );
    // A clean absolute path: fd.nameraw is the name itself.
    let mut ev = s.event(12, "openat", 6);
    ev.args = [(-100i32) as u32 as u64, 0, 0, 0, 0, 0];
    ev.strs[1] = b"/etc/hosts";
    let got = extract(&mut s, &ev, &["fd.name", "fd.nameraw"]);
    assert_eq!(got[0], got[1]);
    assert_eq!(got[1].as_deref(), Some(&["/etc/hosts".to_owned()][..]));
}

#[test]
fn socket_fields_and_fd_types() {
    let mut s = scenario();
    lineage(&mut s);
    s.socket(12, 2, 1, 3);
    let mut c = s.event(12, "connect", 0);
    c.args[0] = 3;
    c.addr = Some(SockAddr::Inet("192.0.2.10:443".parse().unwrap()));
    let got = extract(
        &mut s,
        &c,
        &[
            "fd.name",
            "fd.sip",
            "fd.sport",
            "fd.rip",
            "fd.l4proto",
            "fd.sockfamily",
            "fd.typechar",
            "fd.connected",
            "fd.is_server",
            "evt.arg.tuple",
        ],
    );
    let flat: Vec<String> = got.into_iter().map(|v| v.unwrap().join(",")).collect();
    assert_eq!(
        flat,
        [
            "0.0.0.0:0->192.0.2.10:443",
            "192.0.2.10",
            "443",
            "192.0.2.10",
            "tcp",
            "ip",
            "4",
            "true",
            "false",
            "192.0.2.10:443",
        ]
    );
    // dup2 onto stdout: fd.types[1] is now the socket's type.
    let mut d = s.event(12, "dup2", 1);
    d.args = [3, 1, 0, 0, 0, 0];
    assert_eq!(one(&mut s, &d, "fd.types[1]").as_deref(), Some("ipv4"));
    assert_eq!(one(&mut s, &d, "fd.type").as_deref(), Some("ipv4"));
    // A packet socket.
    let mut p = s.event(12, "socket", 4);
    p.args = [17, 2, 0, 0, 0, 0];
    assert_eq!(
        one(&mut s, &p, "evt.arg.domain").as_deref(),
        Some("AF_PACKET")
    );
}

#[test]
fn syscall_specific_arguments() {
    let mut s = scenario();
    lineage(&mut s);
    let mut pt = s.event(12, "ptrace", 0);
    pt.args = [16, 999, 0, 0, 0, 0];
    assert_eq!(
        one(&mut s, &pt, "evt.arg.request").as_deref(),
        Some("PTRACE_ATTACH")
    );
    let mut sym = s.event(12, "symlinkat", 0);
    sym.args[1] = (-100i32) as u32 as u64;
    sym.strs[0] = b"/etc";
    sym.strs[2] = b"link";
    let got = extract(
        &mut s,
        &sym,
        &[
            "evt.arg.target",
            "evt.arg.linkpath",
            "fs.path.target",
            "fs.path.name",
        ],
    );
    let flat: Vec<String> = got.into_iter().map(|v| v.unwrap().join(",")).collect();
    assert_eq!(flat, ["/etc", "link", "/var/www/link", "/etc"]);
    let mut su = s.event(12, "setresuid", 0);
    su.args = [u32::MAX as u64, 0, u32::MAX as u64, 0, 0, 0];
    assert_eq!(one(&mut s, &su, "evt.arg.euid").as_deref(), Some("root"));
    assert_eq!(one(&mut s, &su, "evt.rawarg.euid").as_deref(), Some("0"));
    let mut un = s.event(12, "unshare", 0);
    un.args[0] = 0x2000_0000 | 0x4000_0000;
    assert_eq!(
        one(&mut s, &un, "evt.arg.flags").as_deref(),
        Some("CLONE_NEWPID|CLONE_NEWNET")
    );
}

#[test]
fn memfd_container_and_duration() {
    let mut s = scenario();
    s.spawn(&Proc {
        pid: 20,
        exe: "/memfd:payload",
        argv: &["payload"],
        container: CONTAINER,
        memfd: true,
        upper: true,
        ..Default::default()
    });
    s.advance(7 * SEC);
    let ev = s.event(20, "getpid", 0);
    let got = extract(
        &mut s,
        &ev,
        &[
            "proc.is_exe_from_memfd",
            "proc.is_exe_upper_layer",
            "container.id",
            "container.name",
            "thread.cap_effective",
        ],
    );
    assert_eq!(got[0].as_deref(), Some(&["true".to_owned()][..]));
    assert_eq!(got[1].as_deref(), Some(&["true".to_owned()][..]));
    assert_eq!(got[2].as_deref(), Some(&[CONTAINER.to_owned()][..]));
    assert_eq!(got[3], None, "no runtime: container.name is <NA>");
    // Once the runtime answered, name and image are there.
    s.p.containers.insert(
        CONTAINER.to_owned(),
        aerie_detector::container::ContainerInfo {
            name: "web".into(),
            image: "nginx:1.25".into(),
            image_repository: "nginx".into(),
            image_tag: "1.25".into(),
            privileged: true,
            ..Default::default()
        },
    );
    let ev2 = s.event(20, "getpid", 0);
    let got = extract(
        &mut s,
        &ev2,
        &[
            "container.name",
            "container.image.repository",
            "container.image.tag",
            "container.privileged",
        ],
    );
    let flat: Vec<String> = got.into_iter().map(|v| v.unwrap().join(",")).collect();
    assert_eq!(flat, ["web", "nginx", "1.25", "true"]);
    // Pod and mounts from a CRI runtime.
    let mut info = aerie_detector::container::ContainerInfo {
        name: "web".into(),
        runtime: "containerd",
        ..Default::default()
    };
    info.set_mounts(vec![aerie_detector::container::Mount {
        source: "/etc".into(),
        dest: "/host/etc".into(),
        propagation: "private".into(),
        ..Default::default()
    }]);
    let mut pod = aerie_detector::container::PodInfo {
        name: "web-0".into(),
        namespace: "shop".into(),
        uid: "0f1e2d3c-aaaa".into(),
        sandbox_id: "5d6e7f8091a2b3c4d5e6f708192a3b4c".into(),
        ip: "10.42.0.7".into(),
        ..Default::default()
    };
    pod.set_labels(vec![("app".into(), "web".into())]);
    info.pod = Some(pod);
    s.p.containers.insert(CONTAINER.to_owned(), info);
    let ev3 = s.event(20, "getpid", 0);
    let got = extract(
        &mut s,
        &ev3,
        &[
            "container.type",
            "k8s.pod.name",
            "k8s.ns.name",
            "k8s.pod.uid",
            "k8s.pod.labels",
            "k8s.pod.label[app]",
            "k8s.pod.ip",
            "k8s.pod.sandbox_id",
            "container.mount.dest[/etc]",
            "container.mount.dest[/proc*]",
            "container.mount.source[0]",
            "container.mounts",
        ],
    );
    let flat: Vec<String> = got.into_iter().map(|v| v.unwrap().join(",")).collect();
    assert_eq!(
        flat,
        [
            "containerd",
            "web-0",
            "shop",
            "0f1e2d3c-aaaa",
            "[app:web]",
            "web",
            "10.42.0.7",
            "5d6e7f8091a2",
            "/host/etc",
            "N/A",
            "/etc",
            "/etc:/host/etc::false:private"
        ]
    );
    assert_eq!(one(&mut s, &ev3, "k8s.pod.label[none]"), None);
    let d: u64 = one(&mut s, &ev, "proc.duration").unwrap().parse().unwrap();
    assert!((7 * SEC..8 * SEC).contains(&d), "{d}");
    // Unknown exe inode times are <NA>, not zero.
    assert_eq!(one(&mut s, &ev, "proc.exe_ino.ctime"), None);
    // Capabilities come with every event.
    let mut ev = s.event(20, "getpid", 0);
    if let Some(c) = ev.creds.as_mut() {
        c.cap_effective = (1 << 21) | (1 << 1);
    }
    assert_eq!(
        one(&mut s, &ev, "thread.cap_effective").as_deref(),
        Some("CAP_DAC_OVERRIDE CAP_SYS_ADMIN")
    );
}
