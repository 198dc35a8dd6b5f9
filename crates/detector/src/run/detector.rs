//! `aerie-detector run`: privileges → rules → outputs and metrics → process table →
//! kernel capture → event loop, until SIGINT/SIGTERM.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aerie_alert::{Alert, AlertParts, Priority, Timestamp};
use aerie_rules::{OpenPathFilter, OpenPathNeed};
use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use super::convert::Converter;
use super::drops::DropMonitor;
use super::pipeline::{Pipeline, load_rules};
use super::privileges;
use crate::config::DetectorConfig;
use crate::container::ContainerDb;
use crate::container::hold::{Holds, Offer, exec_container};
use crate::container::lookup::Answer;
use crate::ebpf::{Capture, CaptureConfig};
use crate::event::{Event, EventKind};
use crate::metrics::Metrics;
use crate::output::Outputs;
use crate::state::{BootClock, ProcessTable, UserDb};

/// Syscalls the state tracker needs whatever the rules say: they keep the fd tables, cwd and
/// process lineage right.
pub const STATE_SYSCALLS: &[&str] = &[
    "open",
    "openat",
    "openat2",
    "creat",
    "close",
    "dup",
    "dup2",
    "dup3",
    "socket",
    "connect",
    "accept",
    "accept4",
    "bind",
    "listen",
    "chdir",
    "fchdir",
    "execve",
    "execveat",
    "memfd_create",
    // Syscall records carry no creds except these (the kernel reads them only here): they
    // keep user.uid / user.name of the process table right between execs.
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "capset",
];

/// How often counters are published and housekeeping runs.
const TICK: Duration = Duration::from_secs(1);
/// How often (in ticks) container lookups that failed are tried again.
const RETRY_EVERY: u32 = 2;
/// How often processes whose exit we missed are swept.
const SWEEP_EVERY: u32 = 30;

/// Run until a signal asks to stop. Dropping the capture on the way out detaches every
/// eBPF program.
pub async fn run(cfg: DetectorConfig) -> anyhow::Result<()> {
    // First of all: a SIGINT or SIGTERM during start-up (rules, capture, /proc scan, the audit
    // log follower) is then kept and ends the event loop at once, instead of killing the
    // process by the default action before it could stop its sources and flush its outputs.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    privileges::check_current()?;

    let engine_cfg = cfg.engine_config();
    let engine = load_rules(&cfg.rules, &engine_cfg)?;
    let files: Vec<String> = cfg.rules.iter().map(|p| p.display().to_string()).collect();
    eprintln!(
        "aerie-detector: loaded {} rules ({} enabled) from {}",
        engine.rules().len(),
        engine.enabled_rules(),
        files.join(", ")
    );

    let metrics = Arc::new(Metrics::default());
    metrics.set_rules_loaded(engine.enabled_rules() as u64);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics_task = if cfg.metrics.enabled {
        let mut rx = stop_rx.clone();
        let (addr, task) = crate::metrics::serve(cfg.metrics.listen, metrics.clone(), async move {
            let _ = rx.changed().await;
        })
        .await
        .context("starting the metrics server (metrics.listen)")?;
        eprintln!("aerie-detector: /healthz and /metrics on http://{addr}");
        Some(task)
    } else {
        None
    };
    let outputs = Outputs::start(&cfg.outputs, &cfg.http_output, metrics.clone()).await?;
    let outs: Vec<String> = cfg.outputs.iter().map(ToString::to_string).collect();
    eprintln!("aerie-detector: alerts to {}", outs.join(", "));

    let hostname = if cfg.hostname.is_empty() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default()
    } else {
        cfg.hostname.clone()
    };

    // The Kubernetes audit webhook: its own engine (the same files), judged off the event loop.
    let (audit_stop_tx, audit_stop_rx) = tokio::sync::watch::channel(false);
    let audit_source = if cfg.k8s_audit.enabled || !cfg.k8s_audit.files.is_empty() {
        Some(Arc::new(crate::k8s_audit::AuditSource {
            engine: Arc::new(load_rules(&cfg.rules, &engine_cfg)?),
            hostname: hostname.clone(),
            outputs: outputs.sender(),
            metrics: metrics.clone(),
        }))
    } else {
        None
    };
    // Audit log files: followed on a thread of their own.
    let audit_files = match &audit_source {
        Some(source) if !cfg.k8s_audit.files.is_empty() => {
            let t = crate::k8s_audit::follow_files(&cfg.k8s_audit, source.clone())
                .context("following k8s_audit.files")?;
            let files: Vec<String> = cfg
                .k8s_audit
                .files
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            eprintln!(
                "aerie-detector: following Kubernetes audit log files {}",
                files.join(", ")
            );
            Some(t)
        }
        _ => None,
    };
    let audit_task = if let Some(source) = audit_source.filter(|_| cfg.k8s_audit.enabled) {
        let mut rx = audit_stop_rx;
        let (addr, task) = crate::k8s_audit::serve(&cfg.k8s_audit, source, async move {
            let _ = rx.changed().await;
        })
        .await?;
        eprintln!(
            "aerie-detector: Kubernetes audit webhook on http://{addr}{}",
            cfg.k8s_audit.path
        );
        Some(task)
    } else {
        None
    };

    // Interesting syscalls: what the rules name plus what state tracking needs.
    let wanted: Option<Vec<String>> = engine.event_types("syscall").map(|types| {
        let mut set: BTreeSet<String> = types;
        set.extend(STATE_SYSCALLS.iter().map(|s| (*s).to_owned()));
        set.into_iter().collect()
    });
    // Environments are the bulk of an exec record and of a tracked process: only kept
    // when a rule reads them.
    let keep_env = engine.mentions_field("proc.env") || engine.mentions_field("proc.aenv");
    let mut capture = Capture::start(CaptureConfig {
        ring_bytes: cfg.capture.ring_buffer_bytes,
        syscalls: None,
        capture_env: keep_env,
        ..CaptureConfig::default()
    })
    .context("starting the eBPF capture")?;
    let interest = match &wanted {
        Some(names) => capture.set_interesting(names)?,
        None => capture.set_all_interesting()?,
    };
    eprintln!(
        "aerie-detector: hooked {} syscalls: {}",
        interest.enabled.len(),
        interest.enabled.join(" ")
    );
    if !interest.unsupported.is_empty() {
        eprintln!(
            "aerie-detector: rules name event types this capture does not produce (never match): {}",
            interest.unsupported.join(" ")
        );
    }
    match (cfg.capture.path_filter, engine.open_path_need()) {
        (false, _) => eprintln!(
            "aerie-detector: open path filter off (capture.path_filter: false): every open is sent"
        ),
        (true, OpenPathNeed::All { rule, why }) => eprintln!(
            "aerie-detector: open path filter off: rule {rule:?} {why}; every open is sent"
        ),
        (true, OpenPathNeed::Paths(f)) => {
            if let Err(e) = capture.set_path_filter(Some(&f)) {
                // Sending every open is always correct, only slower.
                eprintln!("aerie-detector: open path filter off: {e}; every open is sent");
            } else {
                eprintln!(
                    "aerie-detector: open path filter on: opens are sent when their path starts with [{}] or ends with [{}] (or is relative or not normalized)",
                    OpenPathFilter::atoms_text(&f.prefixes),
                    OpenPathFilter::atoms_text(&f.suffixes)
                );
            }
        }
    }
    let ids: Vec<String> = capture.program_ids().iter().map(u32::to_string).collect();
    eprintln!(
        "aerie-detector: programs {} (program ids: {}); {} ring buffer(s) of {} KiB; descriptor walk by {}",
        capture.attached_programs().join(", "),
        ids.join(" "),
        capture.ring_count(),
        capture.ring_bytes() / 1024,
        if capture.direct_fd_walk() {
            "direct BTF-checked loads"
        } else {
            "helper reads"
        }
    );
    if !capture.missing_offsets().is_empty() {
        eprintln!(
            "aerie-detector: this kernel lacks {}; the dependent fields stay empty",
            capture.missing_offsets().join(", ")
        );
    }

    // Bootstrap after attaching, so that no process slips between the scan and the capture.
    let mut table = ProcessTable::new(
        cfg.state.max_processes,
        cfg.state.max_fds_per_process,
        BootClock::now(),
    );
    table.set_keep_env(keep_env);
    let n = table.bootstrap();
    eprintln!(
        "aerie-detector: {n} processes read from /proc{}",
        if keep_env {
            " (with their environments: a rule reads proc.env)"
        } else {
            ""
        }
    );
    let (passwd, group) = cfg.user_db_paths();
    let mut pipeline = Pipeline::new(table, UserDb::from_files(passwd, group), engine, hostname);
    metrics.set_processes_tracked(pipeline.tracker.table.len() as u64);
    metrics.set_ready(true);

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drops = DropMonitor::new(&cfg.drops);
    let mut batch: Vec<Event> = Vec::with_capacity(4096);
    let mut conv = Converter::default();
    let mut last_events = 0u64;
    let mut last_tick = Instant::now();
    let mut ticks = 0u32;
    // Container metadata: asked of the runtimes by the lookup task, off the event path.
    let lookup_cfg = cfg.container.lookup(&cfg.host_root);
    let present: Vec<String> = lookup_cfg
        .cri_sockets
        .iter()
        .chain(&lookup_cfg.docker_sockets)
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if present.is_empty() {
        eprintln!(
            "aerie-detector: no container runtime socket found yet; container and k8s fields print <NA> until one appears"
        );
    } else {
        eprintln!(
            "aerie-detector: container metadata from {} (lookups bounded by {} ms)",
            present.join(", "),
            lookup_cfg.timeout.as_millis()
        );
    }
    let mut holds = Holds::new(lookup_cfg.timeout);
    let mut lookups = crate::container::lookup::start(lookup_cfg, metrics.clone());
    pipeline.containers = ContainerDb::with_capacity(cfg.container.cache_size);
    // Containers of processes already running (the CRI runtimes also list theirs). Their
    // events are held like a new container's until the answer (or the timeout), so that an
    // exec into a pod that predates the detector is judged with its metadata.
    let running: BTreeSet<String> = pipeline
        .tracker
        .table
        .iter()
        .map(|p| p.container_id.clone())
        .collect();
    for id in running {
        if pipeline.containers.should_ask(&id) {
            holds.start(&id, Instant::now());
            lookups.ask(id);
        }
    }
    let mut emit = |alert: Alert| {
        metrics.count_alert(&alert.rule, alert.priority);
        outputs.send(Arc::from(alert.to_json()));
    };

    let result = loop {
        tokio::select! {
            got = capture.next_batch(&mut batch) => {
                if let Err(e) = got {
                    break Err(anyhow::Error::new(e).context("reading the ring buffers"));
                }
                let n = batch.len() as u64;
                for ev in batch.drain(..) {
                    // A new container's first exec: ask its runtime, and hold its events
                    // until the answer (or the timeout) so rules see its metadata.
                    if let Some(id) = exec_container(&ev)
                        && !holds.is_holding(id)
                        && pipeline.containers.should_ask(id)
                    {
                        holds.start(id, Instant::now());
                        lookups.ask(id.to_owned());
                    }
                    let in_table = if holds.is_empty() {
                        None
                    } else {
                        pipeline.tracker.table.get(ev.pid).map(|p| p.container_id.as_str())
                    };
                    match holds.offer(ev, in_table) {
                        Offer::Process(ev) => process(&mut pipeline, &mut conv, &ev, &mut emit),
                        Offer::Held => {}
                        Offer::Full(id) => {
                            for ev in holds.release(&id) {
                                process(&mut pipeline, &mut conv, &ev, &mut emit);
                            }
                        }
                    }
                }
                metrics.add_events(n);
                for id in pipeline.new_containers.drain(..) {
                    lookups.ask(id);
                }
            }
            Some(answer) = lookups.answers.recv() => {
                let id = answer.id().to_owned();
                match answer {
                    Answer::Found(id, info) => pipeline.containers.insert(id, *info),
                    Answer::Unknown(_) => {}
                    Answer::Failed(id) => pipeline.containers.mark_failed(&id),
                }
                for ev in holds.release(&id) {
                    process(&mut pipeline, &mut conv, &ev, &mut emit);
                }
            }
            _ = until(holds.next_deadline()) => {
                for id in holds.expired(Instant::now()) {
                    tracing::debug!(container = %id, "metadata not there in time; judging its events with what is known");
                    for ev in holds.release(&id) {
                        process(&mut pipeline, &mut conv, &ev, &mut emit);
                    }
                }
            }
            _ = tick.tick() => {
                ticks += 1;
                let total = metrics.events_total();
                let secs = last_tick.elapsed().as_secs_f64().max(1e-3);
                metrics.set_events_per_second((total - last_events) as f64 / secs);
                last_events = total;
                last_tick = Instant::now();
                if let Ok(c) = capture.counters() {
                    for (reason, v) in c.drops_by_reason() {
                        metrics.set_kernel_drops(reason, v);
                    }
                    metrics.set_kernel_filtered(c.filtered_opens, c.filtered_closes);
                    if let Some(alert) = drops.check(&c, &pipeline.hostname) {
                        tracing::warn!("{}", alert.output);
                        emit(alert);
                    }
                }
                pipeline.users.refresh_if_changed();
                if ticks.is_multiple_of(RETRY_EVERY) {
                    for id in pipeline.containers.retry_failed() {
                        lookups.ask(id);
                    }
                }
                if ticks.is_multiple_of(SWEEP_EVERY) {
                    pipeline.tracker.table.sweep_dead();
                    // Containers with no process left are gone (or idle): forget them.
                    let live: std::collections::HashSet<&str> = pipeline
                        .tracker
                        .table
                        .iter()
                        .map(|p| p.container_id.as_str())
                        .collect();
                    pipeline.containers.retain_live(|id| live.contains(id));
                }
                metrics.containers.set_cache(
                    pipeline.containers.hits,
                    pipeline.containers.misses,
                    pipeline.containers.len() as u64,
                );
                metrics.set_processes_tracked(pipeline.tracker.table.len() as u64);
            }
            _ = sigint.recv() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
        }
    };

    metrics.set_ready(false);
    // Detach first: no new events while outputs drain.
    drop(capture);
    // The audit sources hold output senders: stop them before the outputs drain.
    if let Some(t) = audit_files {
        let _ = tokio::task::spawn_blocking(move || t.stop()).await;
    }
    let _ = audit_stop_tx.send(true);
    if let Some(t) = audit_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    eprintln!("aerie-detector: eBPF programs detached; flushing outputs");
    outputs.shutdown(Duration::from_secs(3)).await;
    let _ = stop_tx.send(true);
    if let Some(t) = metrics_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    eprintln!("aerie-detector: stopped");
    result
}

/// Resolves at `deadline`; never when there is none.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// One kernel event through state and rules.
pub fn process(
    pipeline: &mut Pipeline,
    conv: &mut Converter,
    ev: &Event,
    emit: &mut dyn FnMut(Alert),
) {
    match &ev.kind {
        EventKind::Syscall(sc) => {
            let sys = conv.syscall(ev, sc);
            pipeline.on_syscall(&sys, emit);
        }
        EventKind::Exec(ex) => {
            let cwd = pipeline
                .tracker
                .table
                .get(ev.pid)
                .map(|p| p.cwd.clone())
                .unwrap_or_default();
            let info = conv.exec(ev, ex, &cwd);
            pipeline.on_exec(ev.pid, ev.ppid, &info);
            if let Some(p) = pipeline.tracker.table.get_mut(ev.pid)
                && p.start_ns == 0
            {
                p.start_ns = ex.details.start_ts;
            }
        }
        EventKind::Fork(f) => {
            // The parent's creds as of now: the child starts as a copy of the parent.
            if ev.flags.creds
                && let Some(p) = pipeline.tracker.table.get_mut(ev.pid)
            {
                crate::state::apply::set_creds(p, &crate::run::convert::creds(ev));
            }
            if !f.is_thread {
                pipeline.on_fork(ev.pid, f.child_pid, f.details.start_ts);
                if let Some(child) = pipeline.tracker.table.get_mut(f.child_pid) {
                    let d = &f.details;
                    child.set_ids(d.sid, d.pgid, d.vpid);
                }
            }
        }
        EventKind::Exit(x) => {
            if x.leader {
                pipeline.on_exit(ev.pid);
            }
        }
    }
}

/// Falco's internal alert for kernel drops.
pub fn drop_alert(
    hostname: &str,
    n_drops: u64,
    window: Duration,
    by_reason: &[(&str, u64)],
) -> Alert {
    let mut fields = serde_json::Map::new();
    fields.insert("n_drops".into(), n_drops.into());
    for (reason, v) in by_reason {
        fields.insert(format!("n_drops_{reason}"), (*v).into());
    }
    let message = format!(
        "Falco internal: syscall event drop. {n_drops} system calls dropped in last {:.0} ms.",
        window.as_secs_f64() * 1000.0
    );
    AlertParts {
        hostname,
        time: Timestamp::now(),
        priority: Priority::Debug,
        rule: "Falco internal: syscall event drop",
        source: "internal",
        message: &message,
        output_fields: fields,
        tags: Vec::new(),
    }
    .into_alert()
}
