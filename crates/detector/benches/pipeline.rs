//! User-space cost of the detector's per-event path: state update, field extraction and rule
//! evaluation with Falco's falco_rules.yaml plus the default ruleset, on synthetic events (no
//! kernel). Also the memory of the process table with 10k live processes, the same event
//! loop spread over 200 live containers with a warm metadata cache against 200 host
//! processes, and the memory of each cached container.
//!
//! Run: `cargo bench -p aerie-detector --bench pipeline`

#[path = "../tests/synthetic/mod.rs"]
mod synthetic;

use std::time::Instant;

use aerie_detector::container::{ContainerDb, ContainerInfo, Mount, PodInfo};
use aerie_detector::fields::SysEvent;
use aerie_detector::state::{BootClock, ExecInfo, FdInfo, ProcessTable};
use synthetic::*;

const RUNS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut rules = vec![default_rules()];
    if let Some(f) = falco_rules() {
        rules.insert(0, f);
    }
    let mut s = Scenario::new(&rules);
    println!(
        "rules: {} loaded ({} enabled) from {} file(s)",
        s.p.engine.rules().len(),
        s.p.engine.enabled_rules(),
        rules.len()
    );
    s.spawn(&Proc {
        pid: 100,
        exe: "/usr/bin/app",
        argv: &["app", "--serve"],
        ..Default::default()
    });

    // open("/etc/hostname") = 3, close(3): the tight loop of the acceptance benchmark.
    let mut open = s.event(100, "openat", 3);
    open.args = [(-100i32) as u32 as u64, 0, 0o2_000_000, 0, 0, 0];
    open.strs[1] = b"/etc/hostname";
    let mut close = s.event(100, "close", 0);
    close.args[0] = 3;
    let mut alerts = 0usize;
    let mut emit = |_a: aerie_alert::Alert| alerts += 1;
    let pairs = 100_000;
    let mut per_event = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        for i in 0..pairs {
            let ts = T0 + i as u64;
            s.p.on_syscall(&SysEvent { ts_ns: ts, ..open }, &mut emit);
            s.p.on_syscall(&SysEvent { ts_ns: ts, ..close }, &mut emit);
        }
        per_event.push(t.elapsed().as_nanos() as f64 / (2 * pairs) as f64);
    }
    let ns = median(per_event);
    println!(
        "open/close events: median {ns:.0} ns/event = {:.2} M events/s on one core ({RUNS} runs of {} events; {alerts} alerts)",
        1e3 / ns,
        2 * pairs
    );

    // fork + exec + execve exit of a short-lived process, then its exit.
    let execs = 20_000u32;
    let mut per_exec = Vec::new();
    for run in 0..RUNS as u32 {
        let t = Instant::now();
        for i in 0..execs {
            let pid = 10_000 + run * execs + i;
            s.spawn(&Proc {
                pid,
                ppid: 100,
                exe: "/usr/bin/id",
                argv: &["id", "-u"],
                ..Default::default()
            });
            s.p.on_exit(pid);
        }
        per_exec.push(t.elapsed().as_nanos() as f64 / f64::from(execs));
    }
    let ns = median(per_exec);
    println!(
        "fork+exec+exit: median {ns:.0} ns/process = {:.0}k processes/s ({RUNS} runs of {execs})",
        1e6 / ns
    );

    // 200 live containers with a warm metadata cache vs 200 host processes: open/close
    // pairs spread round-robin over the processes.
    let procs = 200u32;
    let ids: Vec<String> = (0..procs)
        .map(|i| format!("{:012x}", 0xc0de_0000_0000u64 + u64::from(i)))
        .collect();
    let rate = |in_containers: bool, s: &mut Scenario| {
        let base = if in_containers { 300_000 } else { 200_000 };
        for i in 0..procs {
            let pid = base + i;
            s.spawn(&Proc {
                pid,
                ppid: 100,
                exe: "/usr/bin/app",
                argv: &["app", "--serve"],
                container: if in_containers {
                    &ids[i as usize]
                } else {
                    HOST
                },
                ..Default::default()
            });
            if in_containers {
                s.p.containers
                    .insert(ids[i as usize].clone(), container_info(i));
            }
        }
        let mut alerts = 0usize;
        let mut emit = |_a: aerie_alert::Alert| alerts += 1;
        let mut per_event = Vec::new();
        for _ in 0..RUNS {
            let t = Instant::now();
            for i in 0..pairs {
                let pid = base + (i as u32 % procs);
                let ts = T0 + i as u64;
                s.p.on_syscall(
                    &SysEvent {
                        ts_ns: ts,
                        pid,
                        tid: pid,
                        ..open
                    },
                    &mut emit,
                );
                s.p.on_syscall(
                    &SysEvent {
                        ts_ns: ts,
                        pid,
                        tid: pid,
                        ..close
                    },
                    &mut emit,
                );
            }
            per_event.push(t.elapsed().as_nanos() as f64 / (2 * pairs) as f64);
        }
        median(per_event)
    };
    let host_ns = rate(false, &mut s);
    let ctr_ns = rate(true, &mut s);
    println!(
        "200 processes: host {:.2} M events/s, in 200 containers with a warm cache {:.2} M events/s ({:+.1}%)",
        1e3 / host_ns,
        1e3 / ctr_ns,
        (host_ns / ctr_ns - 1.0) * 100.0
    );

    // Memory of cached container metadata (CRI answers with a pod, labels and mounts).
    let n = 10_000u32;
    let before = rss_kib();
    let mut db = ContainerDb::with_capacity(n as usize);
    for i in 0..n {
        db.insert(
            format!("{:012x}", 0xfeed_0000_0000u64 + u64::from(i)),
            container_info(i),
        );
    }
    let after = rss_kib();
    println!(
        "container cache: {} containers: RSS +{} KiB ({:.0} bytes/container)",
        db.len(),
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 * 1024.0 / f64::from(n)
    );

    // Memory of 10k live processes with 8 descriptors each.
    let dir = std::env::temp_dir().join(format!("aerie-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let before = rss_kib();
    let mut t = ProcessTable::with_proc_root(&dir, 1 << 20, 1024, BootClock::fixed(0));
    let argv = b"/usr/sbin/nginx\0-g\0daemon off;\0";
    for pid in 1..=10_000u32 {
        t.on_exec(
            pid,
            1,
            &ExecInfo {
                exepath: "/usr/sbin/nginx",
                argv,
                comm: "nginx",
                cwd: Some("/var/www/html"),
                container_id: Some("3f2a9c1b7d4e"),
                ..Default::default()
            },
        );
        let p = t.get_mut(pid).unwrap();
        for fd in 0..8 {
            p.fds.insert(
                fd,
                FdInfo::file("/var/log/nginx/access.log", "access.log", 1, false),
                1024,
            );
        }
    }
    let after = rss_kib();
    println!(
        "process table: {} processes x 8 fds: RSS +{} KiB ({:.0} bytes/process)",
        t.len(),
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 * 1024.0 / t.len() as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a CRI runtime typically says about a pod's container.
fn container_info(i: u32) -> ContainerInfo {
    let mut c = ContainerInfo {
        full_id: format!("{:064x}", u64::from(i) * 0x9e37_79b9),
        name: format!("app-{i}"),
        runtime: "containerd",
        privileged: false,
        start_ts: T0,
        ..ContainerInfo::default()
    };
    c.set_image(&format!("registry.example.com/team/app-{}:1.{i}", i % 17));
    c.image_digest = format!("sha256:{:064x}", u64::from(i) * 31);
    c.set_mounts(vec![
        Mount {
            source: format!(
                "/var/lib/kubelet/pods/{i:08x}/volumes/kubernetes.io~projected/kube-api-access"
            ),
            dest: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
            rdwr: false,
            propagation: "private".into(),
            ..Mount::default()
        },
        Mount {
            source: format!("/var/lib/kubelet/pods/{i:08x}/etc-hosts"),
            dest: "/etc/hosts".into(),
            rdwr: true,
            propagation: "private".into(),
            ..Mount::default()
        },
    ]);
    let mut pod = PodInfo {
        name: format!("app-{i}-7f9c8d6b5-x2k4q"),
        namespace: "production".into(),
        uid: format!("{i:08x}-aaaa-bbbb-cccc-0123456789ab"),
        sandbox_id: format!("{:064x}", u64::from(i) * 0x85eb_ca6b),
        ip: format!("10.42.{}.{}", i / 250, i % 250),
        ..PodInfo::default()
    };
    pod.set_labels(vec![
        ("app".into(), format!("app-{i}")),
        ("pod-template-hash".into(), "7f9c8d6b5".into()),
        (
            "io.kubernetes.pod.name".into(),
            format!("app-{i}-7f9c8d6b5-x2k4q"),
        ),
        ("io.kubernetes.pod.namespace".into(), "production".into()),
    ]);
    c.pod = Some(pod);
    c
}
