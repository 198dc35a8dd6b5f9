//! New-container metadata latency: for a container the detector has never seen, the time
//! from its first event (the kernel's exec stamp, the alert's `evt.time`) to the moment the
//! alert carrying `container.name` and `k8s.pod.name` is visible in the detector's file
//! output (issue 13's target: p99 under 1 s).
//!
//! Run (as root, about 1–2 minutes): `cargo bench -p aerie-detector --bench container_latency`
//!
//! Starts a private containerd and the real `aerie-detector` (eBPF attached, metadata from
//! containerd's CRI socket only, the default `container.metadata_timeout_ms`) with one rule on
//! the exec of each pod's first process, then creates `BENCH_PODS` (default 30) pods one after
//! another over CRI as the kubelet does (see `tests/cri_support`), removing each after its
//! sample. A watcher thread reads the alert file every 2 ms and stamps each new line with
//! CLOCK_REALTIME; `evt.time` is CLOCK_REALTIME too (the detector converts the kernel's
//! CLOCK_BOOTTIME stamp). Exits non-zero when p99 >= 1 s, when an alert lacks its metadata or
//! when a pod's alert never comes. Not a test: nextest never runs it.

#[path = "../tests/cri_support/mod.rs"]
mod cri_support;

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aerie_alert::Alert;
use anyhow::{Context, Result, bail};
use cri_support::{Containerd, Kubelet, PodSpec, Proc, field};

const DEFAULT_PODS: usize = 30;
/// The target: p99 from the first event to the alert with metadata.
const TARGET: Duration = Duration::from_secs(1);
/// How often the watcher reads the alert file.
const POLL: Duration = Duration::from_millis(2);
/// How long one pod's alert may take before it counts as missing.
const PER_POD_WAIT: Duration = Duration::from_secs(30);
/// The whole run stops creating pods after this (the samples so far are reported).
const TIME_LIMIT: Duration = Duration::from_secs(600);
/// Marks the pods' first processes (the sandbox's own process does not carry it).
const MARKER: &str = "aerie-bench-";

const RULE: &str = r#"- rule: Bench container first process
  desc: The first process of a benchmark pod's container (container_latency bench)
  condition: evt.type in (execve, execveat) and container.id != host and proc.cmdline contains "aerie-bench-"
  output: "bench pod process (container=%container.name pod=%k8s.pod.name ns=%k8s.ns.name id=%container.id cmdline=%proc.cmdline)"
  priority: NOTICE
"#;

fn main() {
    if let Err(e) = bench() {
        eprintln!("container_latency bench failed: {e:#}");
        std::process::exit(1);
    }
}

/// One alert line as first seen in the file.
struct Seen {
    /// CLOCK_REALTIME ns when the watcher read the line.
    at_ns: i128,
    alert: Alert,
}

/// What one pod gave.
enum Sample {
    /// ns from `evt.time` to the alert being visible, metadata present.
    WithMetadata(i128),
    /// The alert came without `container.name`/`k8s.pod.name`.
    Lacking(String),
    /// No alert within [`PER_POD_WAIT`].
    Missing,
}

fn bench() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "needs root (eBPF, containerd, runc); run as root: \
             sudo -E cargo bench -p aerie-detector --bench container_latency"
        );
    }
    if !cri_support::can_run() {
        bail!("this machine cannot run containerd pods (see the notice above; scripts/bootstrap)");
    }
    let pods: usize = match std::env::var("BENCH_PODS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("BENCH_PODS={v:?}: want a positive number of pods"))?,
        Err(_) => DEFAULT_PODS,
    };
    println!(
        "container_latency: real containerd + aerie-detector (eBPF, CRI metadata, default metadata timeout), {pods} new pods one after another"
    );
    println!(
        "machine: {} CPUs, load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    let started = Instant::now();

    let dir = cri_support::scratch("bench");
    let containerd = Containerd::start(&dir);
    let mut kubelet = Kubelet::connect(&containerd);
    let alerts = dir.join("alerts.jsonl");
    let detector = start_detector(&dir, &alerts, &containerd.socket)?;

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let watcher = {
        let stop = stop.clone();
        let alerts = alerts.clone();
        std::thread::spawn(move || watch(&alerts, &stop, &tx))
    };

    let mut samples = Vec::with_capacity(pods);
    let mut pending: Vec<Seen> = Vec::new();
    for i in 0..pods {
        if started.elapsed() > TIME_LIMIT {
            println!(
                "  time limit {} s reached after {i} pods",
                TIME_LIMIT.as_secs()
            );
            break;
        }
        let name = format!("bench-{i}");
        let mut spec = PodSpec::new(&name, "default");
        spec.uid = format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), i);
        spec.command = vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("sleep 3600 # {MARKER}{i}"),
        ];
        let pod = kubelet.run_pod(&spec);
        let marker = format!("{MARKER}{i}");
        let sample = wait_sample(&rx, &mut pending, &marker, &name);
        match &sample {
            Sample::WithMetadata(ns) => {
                eprintln!("  {name}: {:.1} ms", *ns as f64 / 1e6)
            }
            Sample::Lacking(fields) => eprintln!("  {name}: alert WITHOUT metadata: {fields}"),
            Sample::Missing => eprintln!("  {name}: no alert within {PER_POD_WAIT:?}"),
        }
        samples.push(sample);
        kubelet.remove_pod(&pod);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let log: Vec<String> = detector
        .log()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .map(str::to_owned)
        .collect();
    let stopped = detector.stop();
    drop(kubelet);
    drop(containerd);
    let _ = std::fs::remove_dir_all(&dir);

    let mut lat: Vec<i128> = samples
        .iter()
        .filter_map(|s| match s {
            Sample::WithMetadata(ns) => Some(*ns),
            _ => None,
        })
        .collect();
    lat.sort_unstable();
    let lacking = samples
        .iter()
        .filter(|s| matches!(s, Sample::Lacking(_)))
        .count();
    let missing = samples
        .iter()
        .filter(|s| matches!(s, Sample::Missing))
        .count();

    println!();
    println!(
        "== summary (load average at end {}; total {:.0} s)",
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    if !log.is_empty() {
        println!("  detector log (warnings):\n    {}", log.join("\n    "));
    }
    if lat.is_empty() {
        bail!(
            "no alert with metadata from {} pods ({lacking} without metadata, {missing} missing)",
            samples.len()
        );
    }
    let ms = |ns: i128| ns as f64 / 1e6;
    let p99 = percentile(&lat, 0.99);
    let p99_note = if lat.len() < 100 {
        " (= max, below 100 samples)"
    } else {
        ""
    };
    let ok = p99 < TARGET.as_nanos() as i128 && lacking == 0 && missing == 0;
    println!(
        "  new-container first event -> alert with metadata at the file output: median {:.1} ms, p90 {:.1} ms, p99 {:.1} ms{p99_note}, min {:.1} ms; {} samples, {lacking} alerts without metadata, {missing} pods without an alert  [target p99 < {} ms and none without metadata: {}]",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.9)),
        ms(p99),
        ms(lat[0]),
        lat.len(),
        TARGET.as_millis(),
        if ok { "ok" } else { "MISSED" }
    );
    if !stopped {
        bail!("the detector did not stop cleanly");
    }
    if !ok {
        bail!("target missed");
    }
    Ok(())
}

/// `aerie-detector run` with the bench rule, metadata from `cri_socket` only and the default
/// metadata timeout, alerts to `alerts`.
fn start_detector(dir: &Path, alerts: &Path, cri_socket: &Path) -> Result<Proc> {
    let rules = dir.join("bench_rules.yaml");
    std::fs::write(&rules, RULE)?;
    let config = dir.join("detector.yaml");
    std::fs::write(
        &config,
        format!(
            "rules:\n  - {}\noutputs:\n  - file:{}\nmetrics:\n  listen: 127.0.0.1:0\nhttp_output:\n  spill_dir: {}\ncontainer:\n  cri_sockets: [{}]\n  docker_sockets: []\n",
            rules.display(),
            alerts.display(),
            dir.join("spool").display(),
            cri_socket.display()
        ),
    )?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aerie-detector"));
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .env("AERIE_LOG", "info");
    Ok(Proc::spawn(cmd, Some("processes read from /proc")))
}

/// Tail `file` every [`POLL`]: each complete new line that parses as an alert goes to `tx`
/// stamped with the wall clock of the read that found it.
fn watch(file: &Path, stop: &AtomicBool, tx: &mpsc::Sender<Seen>) {
    let mut pos = 0u64;
    let mut partial = Vec::new();
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL);
        let Ok(mut f) = std::fs::File::open(file) else {
            continue;
        };
        buf.clear();
        if f.seek(SeekFrom::Start(pos)).is_err() || f.read_to_end(&mut buf).is_err() {
            continue;
        }
        if buf.is_empty() {
            continue;
        }
        let at_ns = now_ns();
        pos += buf.len() as u64;
        partial.extend_from_slice(&buf);
        while let Some(nl) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=nl).collect();
            if let Ok(alert) = serde_json::from_slice::<Alert>(&line) {
                let _ = tx.send(Seen { at_ns, alert });
            }
        }
    }
}

/// Wait for the alert of the process carrying `marker` (alerts of other pods that come
/// late wait in `pending`).
fn wait_sample(
    rx: &mpsc::Receiver<Seen>,
    pending: &mut Vec<Seen>,
    marker: &str,
    pod: &str,
) -> Sample {
    let is_ours = |s: &Seen| {
        field(&s.alert, "proc.cmdline").is_some_and(|c| c.split_whitespace().any(|w| w == marker))
    };
    let end = Instant::now() + PER_POD_WAIT;
    let seen = loop {
        if let Some(i) = pending.iter().position(is_ours) {
            break pending.swap_remove(i);
        }
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(s) => pending.push(s),
            Err(_) => return Sample::Missing,
        }
    };
    let a = &seen.alert;
    if field(a, "container.name") != Some(pod) || field(a, "k8s.pod.name") != Some(pod) {
        return Sample::Lacking(format!("{:?}", a.output_fields));
    }
    let evt_ns = a
        .output_fields
        .get("evt.time")
        .and_then(|v| v.as_u64())
        .map_or_else(|| a.time.unix_nanos(), i128::from);
    Sample::WithMetadata(seen.at_ns - evt_ns)
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(v: &[i128], q: f64) -> i128 {
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
