//! Spool throughput: durable appends at several concurrency levels (default
//! fsync policy) and consume+ack. Medians of several runs, one command:
//!
//! ```text
//! cargo bench -p aerie-spool --bench throughput
//! ```
//! `SPOOL_BENCH_DIR` picks the filesystem (default: the system temp dir);
//! `SPOOL_BENCH_SECS` the length of one run (default 1.5).

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use aerie_spool::{AppendFuture, Options, Spool};

const RECORD: usize = 1024;
const RUNS: usize = 5;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        static N: AtomicU64 = AtomicU64::new(0);
        let root =
            std::env::var_os("SPOOL_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let p = root.join(format!(
            "aerie-spool-bench-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_secs() -> Duration {
    let secs = std::env::var("SPOOL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.5);
    Duration::from_secs_f64(secs)
}

fn record(i: u64) -> Vec<u8> {
    let mut v = format!("{{\"seq\":{i},\"output\":\"").into_bytes();
    v.resize(RECORD - 2, b'x');
    v.extend_from_slice(b"\"}");
    v
}

/// Default options, but room for a fast machine to append for the whole run without reaching
/// the 1 GiB default limit (this measures append speed, not the limit; each run's dir is removed).
fn bench_options() -> Options {
    Options {
        max_bytes: 16 << 30,
        ..Options::default()
    }
}

struct RunResult {
    per_sec: f64,
    records_per_fsync: f64,
    p99_us: f64,
}

/// `threads` appenders, each appending `batch` records per call (batch 1 =
/// one blocking `append` per record).
fn appenders(threads: usize, batch: usize, sync_parallelism: usize) -> RunResult {
    let dir = Dir::new("append");
    let opts = Options {
        sync_parallelism,
        ..bench_options()
    };
    let spool = Spool::open(&dir.0, opts).expect("open");
    let _consumer = spool.reader("bench").expect("reader");
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (spool, stop) = (spool.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let recs: Vec<Vec<u8>> = (0..batch as u64)
                    .map(|i| record(t as u64 * 1000 + i))
                    .collect();
                let mut lat = Vec::with_capacity(1 << 16);
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    spool.append_batch(&recs).expect("append");
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(run_secs());
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("join"))
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    let m = spool.metrics();
    lat.sort();
    RunResult {
        per_sec: m.appended_records as f64 / elapsed,
        records_per_fsync: m.appended_records as f64 / m.fsyncs.max(1) as f64,
        p99_us: lat
            .get(lat.len() * 99 / 100)
            .map_or(0.0, |d| d.as_secs_f64() * 1e6),
    }
}

struct ThreadWaker(std::thread::Thread);
impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future + Unpin>(mut fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = std::pin::Pin::new(&mut fut).poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// One thread keeping `window` async appends outstanding: what `window`
/// concurrent axum handlers awaiting `append_async` look like to the spool.
fn async_window(window: usize) -> RunResult {
    let dir = Dir::new("async");
    let spool = Spool::open(&dir.0, bench_options()).expect("open");
    let _consumer = spool.reader("bench").expect("reader");
    let rec = record(7);
    let deadline = Instant::now() + run_secs();
    let start = Instant::now();
    let mut pending: VecDeque<(Instant, AppendFuture)> = VecDeque::with_capacity(window);
    let mut lat = Vec::with_capacity(1 << 18);
    while Instant::now() < deadline {
        while pending.len() < window {
            pending.push_back((Instant::now(), spool.append_batch_async(&[&rec])));
        }
        if let Some((t0, f)) = pending.pop_front() {
            block_on(f).expect("append");
            lat.push(t0.elapsed());
        }
    }
    for (_, f) in pending {
        block_on(f).expect("append");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let m = spool.metrics();
    lat.sort();
    RunResult {
        per_sec: m.appended_records as f64 / elapsed,
        records_per_fsync: m.appended_records as f64 / m.fsyncs.max(1) as f64,
        p99_us: lat
            .get(lat.len() * 99 / 100)
            .map_or(0.0, |d| d.as_secs_f64() * 1e6),
    }
}

/// Prefill `n` records, then one reader fetches 256 at a time and acks each.
fn consume_ack(n: u64) -> f64 {
    let dir = Dir::new("consume");
    let spool = Spool::open(&dir.0, bench_options()).expect("open");
    let mut reader = spool.reader("bench").expect("reader");
    let batch: Vec<Vec<u8>> = (0..1000).map(record).collect();
    for _ in 0..n / 1000 {
        spool.append_batch(&batch).expect("prefill");
    }
    let start = Instant::now();
    let mut seen = 0u64;
    while seen < n {
        let recs = reader.fetch(256).expect("fetch");
        assert!(!recs.is_empty(), "reader ran dry at {seen}");
        for r in &recs {
            reader.ack(r.seq).expect("ack");
        }
        seen += recs.len() as u64;
    }
    reader.sync().expect("sync");
    n as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(name: &str, runs: Vec<RunResult>) -> f64 {
    let rate = median(runs.iter().map(|r| r.per_sec).collect());
    let per_fsync = median(runs.iter().map(|r| r.records_per_fsync).collect());
    let p99 = median(runs.iter().map(|r| r.p99_us).collect());
    println!(
        "{name:<44} {rate:>10.0} rec/s  {per_fsync:>7.1} rec/fsync  p99 {:>7.2} ms",
        p99 / 1000.0
    );
    rate
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    println!(
        "aerie-spool throughput: {RECORD} B records, fsync policy Always (default), {RUNS} runs of {:.1}s, medians",
        run_secs().as_secs_f64()
    );
    let default_par = Options::default().sync_parallelism;
    let mut single = 0.0;
    let mut par64 = 0.0;
    for threads in [1, 8, 64] {
        let runs = (0..RUNS)
            .map(|_| appenders(threads, 1, default_par))
            .collect();
        let r = report(&format!("append, {threads} concurrent appenders"), runs);
        if threads == 64 {
            par64 = r;
        }
        if threads == 1 {
            single = r;
        } else {
            println!("{:<44} {:>10.1}x vs 1 appender", "", r / single);
        }
    }
    let runs = (0..RUNS).map(|_| appenders(64, 1, 1)).collect();
    let serial = report("append, 64 appenders, one fsync at a time", runs);
    println!(
        "{:<44} {:>10.1}x from {default_par} fsyncs in flight",
        "",
        par64 / serial
    );
    let runs = (0..RUNS).map(|_| async_window(256)).collect();
    report("append_async, 256 outstanding (1 thread)", runs);
    let runs = (0..RUNS).map(|_| appenders(8, 64, default_par)).collect();
    report("append_batch of 64, 8 concurrent appenders", runs);
    let rates = (0..RUNS).map(|_| consume_ack(100_000)).collect();
    println!(
        "{:<44} {:>10.0} rec/s",
        "consume+ack (fetch 256, ack each)",
        median(rates)
    );
}
