//! Kernel-path benchmark: the real `aerie-detector` binary (eBPF attached, Falco's
//! falco_rules.yaml loaded unmodified) against real syscalls made by this process.
//!
//! Run (as root, about 2–3 minutes): `cargo bench -p aerie-detector --bench kernel_path`
//!
//! Reports, from one run:
//! 1. the slowdown of a tight open/close loop and of a spawn (fork+exec) loop with the
//!    detector attached against no detector — rounds alternate baseline/attached (ABBA) so
//!    that drift cancels, and the figure is the median of the per-round ratios — and the floor of the hook
//!    design for the open/close loop: calibration programs that do nothing, and that only
//!    read each open's path (`aerie_detector::ebpf::calibration`);
//! 2. the highest paced event rate the detector takes with zero kernel drops;
//! 3. the detector's CPU (utime+stime from /proc) at about 100k events/s;
//! 4. the detector's RSS before and with 10k live processes tracked;
//! 5. detection latency from the syscall (CLOCK_REALTIME just before it) to the alert line
//!    read from the detector's stdout, p50 and p99.
//!
//! Drops and event counts come from the detector's own `/metrics`. Not a test: nextest never
//! runs it.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aerie_detector::ebpf::calibration::{Calibration, HookFloor};
use anyhow::{Context, Result, bail};

/// ABAB pairs of the slowdown measurement.
const ROUNDS: usize = 5;
const OPEN_CLOSE_PAIRS: usize = 200_000;
const SPAWNS: usize = 1_000;
/// Switches between detached and attached calibration programs per floor and round.
const FLOOR_SWITCHES: usize = 10;
/// Paced load steps, in captured syscalls per second (each one event).
const RATE_STEPS: &[u64] = &[
    100_000, 200_000, 300_000, 400_000, 500_000, 600_000, 800_000, 1_000_000, 1_250_000, 1_500_000,
    2_000_000,
];
const RATE_STEP_TIME: Duration = Duration::from_secs(2);
/// The detector publishes kernel drop counters once a second: wait past one publication.
const COUNTER_SETTLE: Duration = Duration::from_millis(1_300);
const CPU_RATE: u64 = 100_000;
const CPU_WINDOW: Duration = Duration::from_secs(5);
const LIVE_PROCESSES: usize = 10_000;
const LATENCY_SAMPLES: usize = 200;
const LATENCY_GAP: Duration = Duration::from_millis(15);

fn main() {
    if let Err(e) = bench() {
        eprintln!("kernel_path bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn bench() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "needs root (CAP_BPF + CAP_PERFMON) to attach the detector's eBPF programs; \
             run as root: sudo -E cargo bench -p aerie-detector --bench kernel_path"
        );
    }
    let falco =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/falco-rules/falco_rules.yaml");
    if !falco.exists() {
        bail!("Falco's rules are missing: {}", falco.display());
    }
    let exe = Path::new(env!("CARGO_BIN_EXE_aerie-detector"));
    let dir = Scratch::new()?;
    // Opens of `target` are what most opens on a host are: no rule can match the path, so
    // the kernel's path filter keeps them. `sent` ends in /syslog, which Falco's stable
    // rules may match (a read-only open raises nothing): its opens reach user space.
    let target = cstr(&dir.0.join("target"))?;
    std::fs::write(dir.0.join("target"), b"x")?;
    let sent = cstr(&dir.0.join("syslog"))?;
    std::fs::write(dir.0.join("syslog"), b"x")?;

    println!(
        "kernel_path: real aerie-detector + eBPF, rules {}",
        falco.display()
    );
    println!(
        "machine: {} CPUs, kernel {}, load average at start {}",
        cpus(),
        kernel(),
        loadavg()
    );
    let started = Instant::now();

    let ratios = slowdown(exe, &falco, &dir.0, &target, &sent)?;

    // One detector for the rest: Falco's rules plus one probe rule for the latency samples.
    let prefix = format!("{}/probe-", dir.0.display());
    let probe_rules = dir.0.join("probe_rules.yaml");
    std::fs::write(&probe_rules, probe_rule(&prefix))?;
    let det = Detector::start(exe, &[&falco, &probe_rules], &dir.0, Some(&prefix))?;

    println!("\n(load average {})", loadavg());
    let bpf = bpf_profile(&det, &target, &sent)?;
    let lat = latency(&det, &dir.0)?;
    let cpu = cpu_at_rate(&det, &sent)?;
    let (best, best_seen, best_limited) = max_rate(&det, &sent, Load::OpenClose)?;
    let (best_light, best_light_seen, light_limited) = max_rate(&det, &target, Load::BadClose)?;
    println!("\n(load average {})", loadavg());
    let (rss_before, rss_after, tracked) = rss_with_live_processes(&det)?;
    let log = det.stop();

    println!();
    println!(
        "== summary (load average at end {}, raised by section 4's 10k processes; total {:.0} s)",
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    verdict(
        "open/close slowdown, path no rule matches (median of per-round ratios)",
        format!("{:.3}x", ratios.open_kept),
        ratios.open_kept <= 1.15,
        "<= 1.15x",
    );
    println!(
        "  hook floor of that loop here (calibration programs, no detector): {:.3}x with empty sys_enter/sys_exit programs, {:.3}x adding one path read from user memory per open",
        ratios.floor_empty, ratios.floor_read
    );
    println!(
        "  open/close slowdown, path a rule may match (sent to user space): {:.3}x",
        ratios.open_sent
    );
    verdict(
        "spawn (fork+exec) slowdown (median of per-round ratios)",
        format!("{:.3}x", ratios.spawn),
        ratios.spawn <= 1.25,
        "<= 1.25x",
    );
    println!(
        "  close(-1) slowdown (one exit-only event per call, no target): {:.3}x",
        ratios.bad_close
    );
    println!(
        "  kernel BPF time (bpf_stats): {:.0} ns per open+close pair kept in the kernel, {:.0} ns per pair sent, {:.0} ns per close(-1)",
        bpf.kept, bpf.sent, bpf.bad_close
    );
    rate_verdict("open/close", best, best_seen, best_limited);
    rate_verdict("close(-1)", best_light, best_light_seen, light_limited);
    println!("  detector CPU at {CPU_RATE} syscalls/s: {cpu:.1}% of one core");
    println!(
        "  detector RSS: {rss_before} KiB before, {rss_after} KiB with {tracked} processes tracked ({:+.2} KiB/process)",
        (rss_after as f64 - rss_before as f64) / LIVE_PROCESSES as f64
    );
    println!(
        "  detection latency syscall -> alert line: p50 {:.2} ms, p99 {:.2} ms ({} of {} samples)",
        lat.p50_ms, lat.p99_ms, lat.seen, LATENCY_SAMPLES
    );
    if !log.is_empty() {
        println!("  detector log (warnings):\n    {}", log.join("\n    "));
    }
    Ok(())
}

/// A zero-drop climb the generator cut short below the target is not a miss of the
/// detector: it says so instead.
fn rate_verdict(load: &str, step: u64, seen: f64, generator_limited: bool) {
    let what = format!("highest zero-drop step, {load} load (events/s seen)");
    let value = format!("step {step}/s, {seen:.0} events/s seen");
    if seen < 500_000.0 && generator_limited {
        println!(
            "  {what}: {value}  [target >= 500k events/s: not offered; the generator topped out with no drops]"
        );
    } else {
        verdict(&what, value, seen >= 500_000.0, ">= 500k events/s");
    }
}

fn verdict(what: &str, value: String, ok: bool, target: &str) {
    let mark = if ok { "ok" } else { "MISSED" };
    println!("  {what}: {value}  [target {target}: {mark}]");
}

// ---------------------------------------------------------------------------------------------
// 1. Slowdown, ABAB.

/// Medians of the per-round ratios attached/baseline.
struct Slowdown {
    /// open+close of a path no rule matches (kept in the kernel).
    open_kept: f64,
    /// open+close of a path a rule may match (sent to user space).
    open_sent: f64,
    spawn: f64,
    bad_close: f64,
    /// open+close of the kept path under the calibration programs (no detector): empty
    /// `sys_enter`/`sys_exit`, and empty plus one path read per open.
    floor_empty: f64,
    floor_read: f64,
}

fn slowdown(
    exe: &Path,
    falco: &Path,
    dir: &Path,
    target: &CString,
    sent: &CString,
) -> Result<Slowdown> {
    println!(
        "\n== 1. slowdown: {OPEN_CLOSE_PAIRS} open+close (kept / sent path), {SPAWNS} spawns of /bin/true; {ROUNDS} baseline/attached pairs"
    );
    // Warm the page cache and the allocator once.
    open_close(target, OPEN_CLOSE_PAIRS / 10);
    open_close(sent, OPEN_CLOSE_PAIRS / 10);
    spawn_loop(SPAWNS / 10)?;
    // Per measured loop: baseline and attached seconds per operation, each round.
    let mut base: [Vec<f64>; 4] = Default::default();
    let mut att: [Vec<f64>; 4] = Default::default();
    // Per round: attached/baseline of the four loops, then the two floors.
    let mut ratio: [Vec<f64>; 6] = Default::default();
    let run_all = || -> Result<[f64; 4]> {
        Ok([
            per(open_close(target, OPEN_CLOSE_PAIRS), OPEN_CLOSE_PAIRS),
            per(open_close(sent, OPEN_CLOSE_PAIRS), OPEN_CLOSE_PAIRS),
            per(spawn_loop(SPAWNS)?, SPAWNS),
            per(bad_closes(OPEN_CLOSE_PAIRS), OPEN_CLOSE_PAIRS),
        ])
    };
    for round in 0..ROUNDS {
        // ABBA: odd rounds run the baseline first, even rounds the attached half first,
        // so that drift within a round cancels too.
        let baseline_first = round % 2 == 0;
        let mut b = [0.0; 4];
        if baseline_first {
            b = run_all()?;
        }
        // The calibration floors sit between the two halves, next to both.
        let mut f = [0.0; 2];
        let mut floors_now = || -> Result<()> {
            f = [
                hook_floor(HookFloor::Empty, target)?,
                hook_floor(HookFloor::PathRead, target)?,
            ];
            Ok(())
        };
        if baseline_first {
            floors_now()?;
        }
        let t = Instant::now();
        let det = Detector::start(exe, &[falco], dir, None)?;
        let startup = t.elapsed();
        let c0 = cpu_ticks(det.child.id())?;
        let t = Instant::now();
        let a = run_all()?;
        let det_cpu = 100.0 * (cpu_ticks(det.child.id())? - c0) as f64
            / clk_tck()
            / t.elapsed().as_secs_f64();
        let drops = det.scrape().map(|s| s.drops).unwrap_or(0);
        det.stop();
        if !baseline_first {
            floors_now()?;
            b = run_all()?;
        }
        println!(
            "  round {} ({}): {}  (detector CPU {det_cpu:.0}%, ready in {:.2} s, drops {drops})",
            round + 1,
            if baseline_first { "AB" } else { "BA" },
            slowdown_line(&b, &a, 0),
            startup.as_secs_f64()
        );
        println!(
            "    hook floor, open/close kept: {:.3}x with empty programs, {:.3}x with the path read",
            f[0], f[1]
        );
        for k in 0..4 {
            base[k].push(b[k]);
            att[k].push(a[k]);
            ratio[k].push(a[k] / b[k]);
        }
        for k in 0..2 {
            ratio[4 + k].push(f[k]);
        }
    }
    let b = base.map(median);
    let a = att.map(median);
    println!("  medians: {}", slowdown_line(&b, &a, 1));
    // Each round's halves are adjacent, rounds are not: on a host whose speed drifts
    // between rounds, the median of per-round ratios is the steadier figure.
    let r = ratio.map(median);
    Ok(Slowdown {
        open_kept: r[0],
        open_sent: r[1],
        spawn: r[2],
        bad_close: r[3],
        floor_empty: r[4],
        floor_read: r[5],
    })
}

/// Slowdown of open+close of `path` under the calibration programs alone: the median of
/// `FLOOR_SWITCHES` short runs with them, each against the adjacent run without them (the
/// programs stay loaded and are only detached, so switching is quick).
fn hook_floor(floor: HookFloor, path: &CString) -> Result<f64> {
    let n = OPEN_CLOSE_PAIRS / FLOOR_SWITCHES;
    let mut cal = Calibration::attach(floor).with_context(|| format!("attaching {floor:?}"))?;
    let mut ratios = Vec::with_capacity(FLOOR_SWITCHES);
    for i in 0..FLOOR_SWITCHES {
        // ABBA again, so that drift within a switch cancels over the run.
        let mut timed = |attached: bool| -> Result<f64> {
            if attached {
                cal.resume()?;
            } else {
                cal.pause()?;
            }
            Ok(per(open_close(path, n), n))
        };
        let (without, with) = if i % 2 == 0 {
            let w = timed(false)?;
            (w, timed(true)?)
        } else {
            let a = timed(true)?;
            (timed(false)?, a)
        };
        ratios.push(with / without);
    }
    Ok(median(ratios))
}

/// Baseline -> attached of the four loops (seconds per operation), `digits` decimals.
fn slowdown_line(b: &[f64; 4], a: &[f64; 4], digits: usize) -> String {
    let ns = |x: f64| format!("{:.digits$}", x * 1e9);
    let us = |x: f64| format!("{:.digits$}", x * 1e6);
    format!(
        "open/close kept {} -> {} ns/pair, sent {} -> {} ns/pair; spawn {} -> {} us; close(-1) {} -> {} ns",
        ns(b[0]),
        ns(a[0]),
        ns(b[1]),
        ns(a[1]),
        us(b[2]),
        us(a[2]),
        ns(b[3]),
        ns(a[3])
    )
}

fn per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() / n as f64
}

fn open_close(path: &CString, n: usize) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        open_close_once(path);
    }
    t.elapsed()
}

/// `n` close(-1) calls: the cheapest captured syscall, one exit-only event each.
fn bad_closes(n: usize) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: closing an fd that cannot exist fails with EBADF and touches nothing.
        unsafe { libc::close(-1) };
    }
    t.elapsed()
}

fn open_close_once(path: &CString) {
    // SAFETY: a NUL-terminated path that outlives the call; the fd is ours to close.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::close(fd);
        }
    }
}

fn spawn_loop(n: usize) -> Result<Duration> {
    let t = Instant::now();
    for _ in 0..n {
        let st = Command::new("/bin/true")
            .status()
            .context("spawning /bin/true")?;
        if !st.success() {
            bail!("/bin/true exited with {st}");
        }
    }
    Ok(t.elapsed())
}

// ---------------------------------------------------------------------------------------------
// 1b. Where the attached time goes in the kernel: the kernel's own BPF run-time statistics.

/// Per program: (name, run time ns, runs), by program id.
type ProgStats = HashMap<u32, (String, u64, u64)>;

fn prog_stats(progs: &Programs) -> ProgStats {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| progs.ids.contains(&p.id()))
        .map(|p| {
            // The kernel keeps 15 characters of a name; the banner has them whole.
            let short = p.name_as_str().unwrap_or("?");
            let mut whole = progs.names.iter().filter(|n| n.starts_with(short));
            let name = match (whole.next(), whole.next()) {
                (Some(n), None) => n.clone(),
                _ => format!("{short}… (id {})", p.id()),
            };
            let stats = (name, p.run_time().as_nanos() as u64, p.run_count());
            (p.id(), stats)
        })
        .collect()
}

/// BPF ns per operation of each measured loop.
struct BpfTime {
    kept: f64,
    sent: f64,
    bad_close: f64,
}

fn bpf_profile(det: &Detector, target: &CString, sent: &CString) -> Result<BpfTime> {
    const PAIRS: usize = 100_000;
    const EXECS: usize = 200;
    println!("\n== 1b. BPF run time (kernel.bpf_stats) of the detector's programs, whole system");
    // Statistics cost two clock reads per run: on only for this section, not the timed rounds.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS")?;
    let progs = &det.programs;
    let s0 = prog_stats(progs);
    let t_pair = open_close(target, PAIRS);
    let s1 = prog_stats(progs);
    let t_sent = open_close(sent, PAIRS);
    let s1b = prog_stats(progs);
    let t = Instant::now();
    for _ in 0..PAIRS {
        Load::BadClose.run(target);
    }
    let t_close = t.elapsed();
    let s2 = prog_stats(progs);
    spawn_loop(EXECS)?;
    let s3 = prog_stats(progs);
    let mut per_op = BpfTime {
        kept: 0.0,
        sent: 0.0,
        bad_close: 0.0,
    };
    for (what, a, b, ops, wall) in [
        (
            "open+close pair kept in the kernel",
            &s0,
            &s1,
            PAIRS,
            Some(t_pair),
        ),
        ("open+close pair sent", &s1, &s1b, PAIRS, Some(t_sent)),
        ("close(-1)", &s1b, &s2, PAIRS, Some(t_close)),
        ("spawn", &s2, &s3, EXECS, None),
    ] {
        let per_op_slot = match what {
            "open+close pair kept in the kernel" => Some(&mut per_op.kept),
            "open+close pair sent" => Some(&mut per_op.sent),
            "close(-1)" => Some(&mut per_op.bad_close),
            _ => None,
        };
        let mut total = 0u64;
        let mut rows: Vec<String> = Vec::new();
        for (id, (name, ns1, runs1)) in b {
            let Some((_, ns0, runs0)) = a.get(id) else {
                continue;
            };
            let (ns, runs) = (ns1 - ns0, runs1 - runs0);
            if runs == 0 {
                continue;
            }
            total += ns;
            rows.push(format!(
                "{name}: {:.2} runs/{what}, {:.0} ns/run",
                runs as f64 / ops as f64,
                ns as f64 / runs as f64
            ));
        }
        rows.sort();
        let wall = wall
            .map(|w| format!(" of {:.0} ns measured", per(w, ops) * 1e9))
            .unwrap_or_default();
        println!(
            "  per {what}: {:.0} ns in BPF{wall} (includes other processes' syscalls in the window)",
            total as f64 / ops as f64
        );
        for r in rows {
            println!("    {r}");
        }
        if let Some(slot) = per_op_slot {
            *slot = total as f64 / ops as f64;
        }
    }
    Ok(per_op)
}

// ---------------------------------------------------------------------------------------------
// 2. Highest sustained rate with zero drops.

/// The paced loads: what one operation is, and how many captured syscalls it makes.
#[derive(Clone, Copy)]
enum Load {
    /// open + close of a real file: an entry-captured syscall (path read at entry) and an
    /// exit-only one.
    OpenClose,
    /// close(-1): one exit-only event (EBADF), the cheapest captured syscall to make; it
    /// measures the transport and the user-space pipeline rather than the open path.
    BadClose,
}

impl Load {
    fn syscalls_per_op(self) -> u64 {
        match self {
            Load::OpenClose => 2,
            Load::BadClose => 1,
        }
    }

    fn run(self, path: &CString) {
        match self {
            Load::OpenClose => open_close_once(path),
            // SAFETY: closing an fd that cannot exist fails with EBADF and touches nothing.
            Load::BadClose => unsafe {
                libc::close(-1);
            },
        }
    }

    fn label(self) -> &'static str {
        match self {
            Load::OpenClose => "open/close",
            Load::BadClose => "close(-1)",
        }
    }
}

/// Climb the rate steps until drops appear or the generator cannot offer more; returns the
/// highest zero-drop step and the events/s the detector saw there.
/// The highest zero-drop step: its rate, the events/s seen, and whether the climb ended
/// because the generator could offer no more (no drops were seen at all).
fn max_rate(det: &Detector, target: &CString, load: Load) -> Result<(u64, f64, bool)> {
    println!(
        "\n== 2. paced {} load, {} s steps, drops from /metrics",
        load.label(),
        RATE_STEP_TIME.as_secs()
    );
    let (mut best, mut best_seen) = (0u64, 0.0f64);
    let mut short = 0;
    for &rate in RATE_STEPS {
        std::thread::sleep(COUNTER_SETTLE);
        let before = det.scrape()?;
        let t = Instant::now();
        let ops = paced(load, target, rate / load.syscalls_per_op(), RATE_STEP_TIME);
        let secs = t.elapsed().as_secs_f64();
        std::thread::sleep(COUNTER_SETTLE);
        let after = det.scrape()?;
        let offered = (load.syscalls_per_op() * ops) as f64 / secs;
        let seen = (after.events - before.events) as f64 / secs;
        let drops = after.drops - before.drops;
        println!(
            "  step {rate:>9}/s: offered {offered:>9.0} syscalls/s, seen {seen:>9.0} events/s, drops {drops}"
        );
        if drops > 0 {
            break;
        }
        if seen > best_seen {
            best = rate;
            best_seen = seen;
        }
        // The generator itself is the limit: two steps short of their target end the climb.
        if offered < 0.85 * rate as f64 {
            short += 1;
            if short == 2 {
                println!("  (the load generator cannot offer more on this machine now)");
                return Ok((best, best_seen, true));
            }
        }
    }
    Ok((best, best_seen, false))
}

/// `load` at `ops_per_sec`, spread over two threads, for `dur`; returns operations done.
fn paced(load: Load, path: &CString, ops_per_sec: u64, dur: Duration) -> u64 {
    const THREADS: u64 = 2;
    let rate = ops_per_sec as f64 / THREADS as f64;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(move || {
                    let start = Instant::now();
                    let mut done = 0u64;
                    loop {
                        let el = start.elapsed();
                        if el >= dur {
                            break done;
                        }
                        let due = (el.as_secs_f64() * rate) as u64;
                        if done < due {
                            let batch = (due - done).min(256);
                            for _ in 0..batch {
                                load.run(path);
                            }
                            done += batch;
                        } else {
                            std::thread::sleep(Duration::from_micros(200));
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    })
}

// ---------------------------------------------------------------------------------------------
// 3. CPU at 100k events/s.

fn cpu_at_rate(det: &Detector, target: &CString) -> Result<f64> {
    println!(
        "\n== 3. detector CPU at {CPU_RATE} syscalls/s over {} s",
        CPU_WINDOW.as_secs()
    );
    std::thread::sleep(COUNTER_SETTLE);
    let pid = det.child.id();
    let before = det.scrape()?;
    let cpu0 = cpu_ticks(pid)?;
    let t = Instant::now();
    let pairs = paced(Load::OpenClose, target, CPU_RATE / 2, CPU_WINDOW);
    let cpu1 = cpu_ticks(pid)?;
    let secs = t.elapsed().as_secs_f64();
    std::thread::sleep(COUNTER_SETTLE);
    let after = det.scrape()?;
    let pct = 100.0 * (cpu1 - cpu0) as f64 / clk_tck() / secs;
    println!(
        "  offered {:.0} syscalls/s, seen {:.0} events/s, drops {}; detector CPU {pct:.1}% of one core",
        2.0 * pairs as f64 / secs,
        (after.events - before.events) as f64 / secs,
        after.drops - before.drops
    );
    Ok(pct)
}

/// utime + stime of every thread of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let get = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    match (get(14), get(15)) {
        (Some(u), Some(s)) => Ok(u + s),
        _ => bail!("unexpected /proc/{pid}/stat: {stat}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 4. RSS with 10k live processes.

fn rss_with_live_processes(det: &Detector) -> Result<(u64, u64, u64)> {
    println!("\n== 4. detector RSS with {LIVE_PROCESSES} live processes");
    std::thread::sleep(COUNTER_SETTLE);
    let pid = det.child.id();
    let before = det.scrape()?;
    let rss_before = vm_rss(pid)?;
    let sleepers = Sleepers::spawn(LIVE_PROCESSES)?;
    let end = Instant::now() + Duration::from_secs(30);
    let mut tracked = before.tracked;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
        tracked = det.scrape()?.tracked;
        if tracked >= before.tracked + LIVE_PROCESSES as u64 {
            break;
        }
    }
    let rss_after = vm_rss(pid)?;
    drop(sleepers);
    println!(
        "  processes tracked {} -> {tracked}; VmRSS {rss_before} KiB -> {rss_after} KiB",
        before.tracked
    );
    Ok((rss_before, rss_after, tracked))
}

fn vm_rss(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// Children that sleep in pause(2) in one process group; killed and reaped on drop (also on
/// panic), and killed by the kernel if this process dies first (PR_SET_PDEATHSIG).
struct Sleepers {
    pgid: libc::pid_t,
    pids: Vec<libc::pid_t>,
}

impl Sleepers {
    fn spawn(n: usize) -> Result<Self> {
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        let mut s = Sleepers {
            pgid: 0,
            pids: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let pgid = s.pgid;
            // SAFETY: the child only makes async-signal-safe system calls, then never returns.
            let pid = unsafe { libc::fork() };
            if pid < 0 {
                bail!(
                    "fork failed after {} children: {}",
                    s.pids.len(),
                    std::io::Error::last_os_error()
                );
            }
            if pid == 0 {
                // SAFETY: raw system calls in the forked child.
                unsafe {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                    if libc::getppid() != parent {
                        libc::_exit(0);
                    }
                    libc::setpgid(0, pgid);
                    loop {
                        libc::pause();
                    }
                }
            }
            // Also from the parent, so the group exists before the next fork joins it.
            // SAFETY: setpgid on our own child.
            unsafe { libc::setpgid(pid, if pgid == 0 { pid } else { pgid }) };
            if s.pgid == 0 {
                s.pgid = pid;
            }
            s.pids.push(pid);
        }
        Ok(s)
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        // SAFETY: kill and waitpid on our own children and their group.
        unsafe {
            if self.pgid > 0 {
                libc::kill(-self.pgid, libc::SIGKILL);
            }
            for &p in &self.pids {
                libc::kill(p, libc::SIGKILL);
            }
            for &p in &self.pids {
                libc::waitpid(p, std::ptr::null_mut(), 0);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Detection latency.

struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    seen: usize,
}

fn latency(det: &Detector, dir: &Path) -> Result<Latency> {
    println!(
        "\n== 5. detection latency: {LATENCY_SAMPLES} opens of probe files, {} ms apart",
        LATENCY_GAP.as_millis()
    );
    let rx = det
        .alerts
        .as_ref()
        .context("detector started without a probe reader")?;
    let mut probes = Vec::with_capacity(LATENCY_SAMPLES);
    for i in 0..LATENCY_SAMPLES {
        let p = dir.join(format!("probe-{i:04}"));
        std::fs::write(&p, b"x")?;
        probes.push((p.display().to_string(), cstr(&p)?));
    }
    // Creating the files raised no alert worth keeping; start clean.
    std::thread::sleep(Duration::from_millis(300));
    while rx.try_recv().is_ok() {}
    let mut sent: HashMap<String, i128> = HashMap::with_capacity(LATENCY_SAMPLES);
    for (name, c) in &probes {
        let t0 = realtime_ns();
        open_close_once(c);
        sent.insert(name.clone(), t0);
        std::thread::sleep(LATENCY_GAP);
    }
    let mut lat_ms = Vec::with_capacity(LATENCY_SAMPLES);
    let end = Instant::now() + Duration::from_secs(5);
    while lat_ms.len() < LATENCY_SAMPLES {
        let left = end.saturating_duration_since(Instant::now());
        let Ok((name, t1)) = rx.recv_timeout(left) else {
            break;
        };
        if let Some(t0) = sent.remove(&name) {
            lat_ms.push((t1 - t0) as f64 / 1e6);
        }
    }
    let seen = lat_ms.len();
    if seen == 0 {
        bail!(
            "no probe alert arrived; the detector log: {:?}",
            det.log.lock().map(|l| l.join("\n"))
        );
    }
    lat_ms.sort_by(f64::total_cmp);
    let pct = |q: f64| lat_ms[((seen as f64 - 1.0) * q).round() as usize];
    let l = Latency {
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        seen,
    };
    println!(
        "  {seen} alerts: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        l.p50_ms,
        l.p99_ms,
        lat_ms[seen - 1]
    );
    Ok(l)
}

fn probe_rule(prefix: &str) -> String {
    format!(
        "- rule: Aerie bench latency probe\n  \
         desc: An open of a latency probe file made by the kernel_path benchmark.\n  \
         condition: evt.type in (open, openat, openat2) and fd.name startswith {prefix}\n  \
         output: Latency probe opened (file=%fd.name command=%proc.cmdline)\n  \
         priority: WARNING\n  \
         tags: [bench]\n"
    )
}

fn realtime_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The detector process.

struct Detector {
    child: Child,
    metrics_addr: String,
    /// Probe alerts: (fd.name, CLOCK_REALTIME ns when the line was read).
    alerts: Option<mpsc::Receiver<(String, i128)>>,
    log: Arc<Mutex<Vec<String>>>,
    programs: Programs,
}

/// The detector's BPF programs, from its start-up banner (the two lists are not in the same
/// order).
#[derive(Clone, Debug, Default)]
struct Programs {
    ids: Vec<u32>,
    names: Vec<String>,
}

#[derive(Clone, Copy, Debug)]
struct Scrape {
    events: u64,
    /// Lost events, all reasons (an exit sent without its entry data is not a loss).
    drops: u64,
    tracked: u64,
}

impl Detector {
    /// Start with alerts on stdout and metrics on an ephemeral loopback port; returns once
    /// the programs are attached and /proc was read. With `probe_prefix`, alerts whose
    /// fd.name starts with it are passed on with the time their line was read.
    fn start(exe: &Path, rules: &[&Path], dir: &Path, probe_prefix: Option<&str>) -> Result<Self> {
        let cfg = dir.join("detector.yaml");
        std::fs::write(&cfg, "{}\n")?;
        let mut cmd = Command::new(exe);
        cmd.arg("run")
            .arg("--config")
            .arg(&cfg)
            .arg("--output")
            .arg("stdout");
        for r in rules {
            cmd.arg("--rules").arg(r);
        }
        let mut child = cmd
            .env("AERIE_DETECTOR__METRICS__LISTEN", "127.0.0.1:0")
            .env("AERIE_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {}", exe.display()))?;
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            bail!("no pipes to the detector");
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel::<(String, Programs)>();
        let keep = log.clone();
        std::thread::spawn(move || {
            let mut addr = String::new();
            let mut ids = Programs::default();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(a) = line.split("/metrics on http://").nth(1) {
                    addr = a.trim().to_owned();
                }
                // "programs a, b, c (program ids: 1 2 3); ..."
                if let Some((head, rest)) = line.split_once(" (program ids: ") {
                    let names = head.rsplit("programs ").next().unwrap_or("").split(", ");
                    let list = rest.split(')').next().unwrap_or("").split_whitespace();
                    ids = Programs {
                        ids: list.filter_map(|n| n.parse().ok()).collect(),
                        names: names.map(str::to_owned).collect(),
                    };
                }
                if line.contains("processes read from /proc") {
                    let _ = ready_tx.send((addr.clone(), ids.clone()));
                } else if !line.starts_with("aerie-detector: ") {
                    // Banner lines are expected; anything else is a warning worth showing.
                    if let Ok(mut l) = keep.lock() {
                        l.push(line);
                    }
                }
            }
        });
        let (alert_tx, alert_rx) = mpsc::channel();
        let prefix = probe_prefix.map(str::to_owned);
        std::thread::spawn(move || {
            // Always drain stdout, so the detector never blocks on a full pipe.
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let t = realtime_ns();
                let Some(prefix) = &prefix else { continue };
                if !line.contains(prefix.as_str()) {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if let Some(name) = v["output_fields"]["fd.name"].as_str()
                    && name.starts_with(prefix.as_str())
                {
                    let _ = alert_tx.send((name.to_owned(), t));
                }
            }
        });
        let mut det = Detector {
            child,
            metrics_addr: String::new(),
            alerts: probe_prefix.map(|_| alert_rx),
            log,
            programs: Programs::default(),
        };
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok((addr, ids)) if !addr.is_empty() => {
                det.metrics_addr = addr;
                det.programs = ids;
            }
            _ => {
                let _ = det.child.kill();
                let _ = det.child.wait();
                let log = det.log.lock().map(|l| l.join("\n")).unwrap_or_default();
                bail!(
                    "aerie-detector did not become ready (metrics address and /proc bootstrap):\n{log}"
                );
            }
        }
        Ok(det)
    }

    fn scrape(&self) -> Result<Scrape> {
        let addr = &self.metrics_addr;
        let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let value = |l: &str| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0) as u64
        };
        let mut out = Scrape {
            events: 0,
            drops: 0,
            tracked: 0,
        };
        for l in text.lines() {
            if l.starts_with("aerie_events_total ") {
                out.events = value(l);
            } else if l.starts_with("aerie_processes_tracked ") {
                out.tracked = value(l);
            } else if l.starts_with("aerie_kernel_drops_total{") && !l.contains("inflight_full") {
                out.drops += value(l);
            }
        }
        Ok(out)
    }

    /// SIGINT, wait for a clean exit (killed after 20 s); returns the warnings it logged.
    fn stop(mut self) -> Vec<String> {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Detector {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

/// A scratch directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self> {
        let d = std::env::temp_dir().join(format!("aerie-kbench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(Scratch(d))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes()).context("path with NUL")
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
