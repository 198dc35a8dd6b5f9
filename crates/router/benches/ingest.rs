//! Ingest benchmark, one command: `cargo bench -p aerie-router --bench ingest`.
//!
//! Sustained alerts/s from HTTP ingest to the file output, through routing, dedup (50% of the
//! alerts repeat one of 100 keys) and a handlebars template; client-side request latency p50 and
//! p99; RSS with 1M distinct dedup keys live (measured first, paced so no backlog inflates it;
//! the throughput phases then run with those keys live). Client and router share this process and the
//! machine's cores, so the figures are conservative.
//!
//! `alerts/CPU-s` divides by the CPU time the process (router and client) used, and
//! `router CPU-s` by the router's threads alone (share of the process in brackets): figures that
//! other load on the machine does not distort. On N idle cores the router alone could reach
//! about N times `router CPU-s`.
//!
//! Runs twice: with the durable queue (`queue.dir` set, default fsync policy `always`: every
//! commit group is fdatasync'd before the 2xx) and with the in-memory queue.
//!
//! The client builds each connection's request once and patches the alerts' key and sequence
//! digits in place (one write per request, no allocation), so it takes little of the CPU the
//! router needs.
//!
//! Environment: BENCH_QUEUE (`durable,memory` by default; either alone), BENCH_PHASES
//! (`single,batch` by default: `POST /` one alert per request, `POST /v1/alerts` 50 per
//! request; either alone), BENCH_SECS (per phase, default 5), BENCH_CONNS (default 64),
//! BENCH_KEYS (dedup keys for the RSS phase, default 1000000), BENCH_BATCH (alerts per batch
//! request, default 50).
//!
//! Why 64 connections: Falco and falcosidekick send one alert per request and wait for the
//! answer, one connection per node. With the durable queue every answer waits for an fsync,
//! so one commit group holds at most one alert per connection and single-alert throughput is
//! bounded by connections / fsync latency (16 connections at ~1 ms: ~16k alerts/s whatever
//! the CPU). A router taking a cluster's alerts serves many nodes at once; 64 is a small
//! cluster. BENCH_CONNS=16 gives the earlier figures.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use aerie_router::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The same allocator as the aerie-router binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One alert; `key` < 100 repeats a dedup key, larger values are distinct.
fn alert_json(out: &mut String, key: u64, seq: u64) {
    use std::fmt::Write;
    let _ = write!(
        out,
        r#"{{"hostname":"node-{h}","output":"13:44:05.478445995: Critical A shell was spawned in a container with an attached terminal (user=root container=ee97d9c4186f shell=sh cmdline=sh -c job-{key})","priority":"Critical","rule":"Terminal shell in container","source":"syscall","tags":["container","mitre_execution","shell"],"time":"2023-05-25T13:44:05.478445995Z","output_fields":{{"container.id":"ee97d9c4186f","evt.time":{seq},"k8s.ns.name":"default","k8s.pod.name":"kubecon","proc.cmdline":"sh -c job-{key}","proc.name":"sh","user.name":"root"}}}}"#,
        h = key % 7
    );
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            buf: vec![0; 4096],
        }
    }

    /// POST and wait for the whole response; returns the status.
    async fn post(&mut self, path: &str, body: &str) -> u16 {
        let mut req = Vec::with_capacity(body.len() + 128);
        push_head(&mut req, path, body.len());
        req.extend_from_slice(body.as_bytes());
        self.send(&req).await
    }

    /// Send one complete request (head and body: one write) and read the whole response
    /// into the reused buffer; returns the status. No allocation per request.
    async fn send(&mut self, req: &[u8]) -> u16 {
        self.stream.write_all(req).await.expect("write");
        let mut filled = 0;
        loop {
            if filled == self.buf.len() {
                self.buf.resize(filled * 2, 0);
            }
            let n = self
                .stream
                .read(&mut self.buf[filled..])
                .await
                .expect("read");
            assert!(n > 0, "server closed the connection");
            filled += n;
            let got = &self.buf[..filled];
            if let Some(end) = find(got, b"\r\n\r\n") {
                let len = content_length(&got[..end]);
                if filled >= end + 4 + len {
                    assert_eq!(filled, end + 4 + len, "one response per request");
                    return parse_u16(&got[9..12]);
                }
            }
        }
    }
}

fn push_head(out: &mut Vec<u8>, path: &str, len: usize) {
    use std::io::Write;
    let _ = write!(
        out,
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    );
}

fn parse_u16(d: &[u8]) -> u16 {
    d.iter().fold(0u16, |n, &b| n * 10 + (b - b'0') as u16)
}

fn content_length(head: &[u8]) -> usize {
    head.split(|&b| b == b'\n')
        .find_map(|l| {
            let colon = l.iter().position(|&b| b == b':')?;
            l[..colon]
                .eq_ignore_ascii_case(b"content-length")
                .then(|| {
                    std::str::from_utf8(&l[colon + 1..])
                        .ok()?
                        .trim()
                        .parse()
                        .ok()
                })?
        })
        .unwrap_or(0)
}

/// A request built once per connection: `batch` alerts whose key and sequence number are
/// fixed-width digits patched in place, so every request has the same length and building
/// the next one costs a few byte writes (the client shares the cores with the router).
struct Request {
    bytes: Vec<u8>,
    /// Per alert: where the digits of the key (twice), the seq and the hostname digit sit.
    slots: Vec<[usize; 4]>,
}

/// Digits of the patched numbers: keys are 1e11 + n (repeated) or 2e11 + seq (new),
/// evt.time is 1e12 + seq; both stay fixed-width for any realistic run.
const KEY_DIGITS: usize = 12;
const SEQ_DIGITS: usize = 13;

impl Request {
    fn new(path: &str, batch: u64) -> Request {
        let mut body = String::new();
        let mut marks = Vec::new();
        for _ in 0..batch {
            let start = body.len();
            alert_json(&mut body, 100_000_000_000, 1_000_000_000_000);
            body.push('\n');
            let a = &body[start..];
            let k1 = a.find("job-").expect("key") + 4;
            let k2 = k1 + a[k1..].find("job-").expect("key") + 4;
            let s = a.find("\"evt.time\":").expect("seq") + 11;
            let h = a.find("node-").expect("host") + 5;
            marks.push([start + k1, start + k2, start + s, start + h]);
        }
        let mut bytes = Vec::new();
        push_head(&mut bytes, path, body.len());
        let off = bytes.len();
        bytes.extend_from_slice(body.as_bytes());
        let slots = marks.into_iter().map(|m| m.map(|i| i + off)).collect();
        Request { bytes, slots }
    }

    /// Next batch: every other alert repeats one of 100 keys; the rest are new keys.
    fn fill(&mut self, seq: &AtomicU64) {
        let n = self.slots.len() as u64;
        let first = seq.fetch_add(n, Relaxed);
        for (i, slot) in self.slots.iter().enumerate() {
            let s = first + i as u64;
            let key = if s.is_multiple_of(2) {
                100_000_000_000 + (s / 2) % 100
            } else {
                200_000_000_000 + s
            };
            put_digits(&mut self.bytes[slot[0]..slot[0] + KEY_DIGITS], key);
            put_digits(&mut self.bytes[slot[1]..slot[1] + KEY_DIGITS], key);
            put_digits(
                &mut self.bytes[slot[2]..slot[2] + SEQ_DIGITS],
                1_000_000_000_000 + s,
            );
            self.bytes[slot[3]] = b'0' + (key % 7) as u8;
        }
    }
}

fn put_digits(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

struct Phase {
    alerts: u64,
    /// CPU seconds this process (router + client) used during the phase.
    cpu_secs: f64,
    /// CPU seconds of the router's threads alone.
    router_cpu_secs: f64,
    ingest_secs: f64,
    drained_secs: f64,
    lat_us: Vec<u32>,
}

async fn run_phase(
    addr: std::net::SocketAddr,
    core: &aerie_router::worker::Core,
    conns: u64,
    secs: u64,
    batch: u64,
    seq: Arc<AtomicU64>,
) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let processed_before = processed(core);
    let cpu0 = cpu_secs();
    let router_cpu0 = thread_cpu_secs(ROUTER_THREADS);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let stop = stop.clone();
        let seq = seq.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut lat = Vec::with_capacity(1 << 16);
            let path = if batch == 1 { "/" } else { "/v1/alerts" };
            let mut req = Request::new(path, batch);
            let mut sent = 0u64;
            while !stop.load(Relaxed) {
                req.fill(&seq);
                let start = Instant::now();
                let mut status = client.send(&req.bytes).await;
                // Backpressure (the in-memory queue is full): retry the same body, as Falco's
                // http_output client should; the latency includes the wait.
                while status == 503 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    status = client.send(&req.bytes).await;
                }
                lat.push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
                assert_eq!(status, 200, "connection {c}: HTTP {status}");
                sent += batch;
            }
            (sent, lat)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Relaxed);
    let mut alerts = 0;
    let mut lat_us = Vec::new();
    for t in tasks {
        let (n, l) = t.await.expect("client task");
        alerts += n;
        lat_us.extend(l);
    }
    let ingest_secs = t0.elapsed().as_secs_f64();
    // End to end: until the file output's worker has handled every accepted alert.
    while processed(core) - processed_before < alerts {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let drained_secs = t0.elapsed().as_secs_f64();
    let cpu_secs = cpu_secs() - cpu0;
    let router_cpu_secs = thread_cpu_secs(ROUTER_THREADS) - router_cpu0;
    lat_us.sort_unstable();
    Phase {
        alerts,
        cpu_secs,
        router_cpu_secs,
        ingest_secs,
        drained_secs,
        lat_us,
    }
}

/// Alerts the file output's worker has handled: written, or suppressed as a repeat.
fn processed(core: &aerie_router::worker::Core) -> u64 {
    let m = core.metrics.output(0);
    m.delivered.load(Relaxed) + m.dedup_suppressed.load(Relaxed)
}

fn pct(v: &[u32], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

/// User + system CPU time of this process, from /proc/self/stat (clock ticks of 10 ms).
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are 14 and 15.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

/// Thread name prefix of the router's runtime (the client runs on its own runtime).
const ROUTER_THREADS: &str = "aerie-router";

/// CPU seconds of this process's threads whose name starts with `prefix`.
fn thread_cpu_secs(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut total = 0.0;
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(t.path().join("stat"))
            && let Some(i) = stat.rfind(')')
        {
            let f: Vec<&str> = stat[i + 2..].split_whitespace().collect();
            let ticks = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
                + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            total += ticks / 100.0;
        }
    }
    total
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not used.
    let secs = env_or("BENCH_SECS", 5);
    let conns = env_or("BENCH_CONNS", 64);
    let keys = env_or("BENCH_KEYS", 1_000_000);
    let batch_size = env_or("BENCH_BATCH", 50).max(2);
    let modes = std::env::var("BENCH_QUEUE").unwrap_or_else(|_| "durable,memory".into());
    let phases = std::env::var("BENCH_PHASES").unwrap_or_else(|_| "single,batch".into());
    for mode in modes.split(',') {
        let dir =
            std::env::temp_dir().join(format!("aerie-router-bench-{}-{mode}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let queue = match mode {
            // The durable queue with its default (safe) fsync policy: every commit group is
            // fdatasync'd before the 2xx.
            "durable" => format!("queue: {{ dir: {} }}", dir.join("queue").display()),
            "memory" => String::new(),
            other => panic!("BENCH_QUEUE: unknown mode {other:?} (durable, memory)"),
        };
        // The RSS phase only once (it measures dedup state, not the queue).
        let rss_keys = if mode == modes.split(',').next().unwrap_or("") {
            keys
        } else {
            0
        };
        run_mode(
            mode,
            &queue,
            &dir,
            rss_keys,
            &Load {
                secs,
                conns,
                phases: phases.clone(),
                batch_size,
            },
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// How hard and in which shape the client drives the router.
struct Load {
    secs: u64,
    conns: u64,
    phases: String,
    batch_size: u64,
}

fn run_mode(mode: &str, queue: &str, dir: &std::path::Path, keys: u64, load: &Load) {
    let Load {
        secs,
        conns,
        ref phases,
        batch_size,
    } = *load;
    let yaml = format!(
        r#"
templates_dir: {tpl}
{queue}
queue_capacity: 262144
max_body_size: 16MB
dedup: {{ window: 10m, key: [rule, hostname, output_fields.container.id, output_fields.proc.cmdline] }}
outputs:
  - name: archive
    type: file
    path: {path}
    template: file.hbs
    fsync: interval
    max_size: 1GB
routes:
  - name: page
    match: {{ priority: ">= critical", tags_any: [k8s, container], rule: "/^Terminal shell/" }}
    outputs: [archive]
    continue: true
  - name: k8s
    match: {{ source: k8s_audit, rule: "K8s Secret*" }}
    outputs: [archive]
  - outputs: [archive]
"#,
        tpl = concat!(env!("CARGO_MANIFEST_DIR"), "/../../templates"),
        path = dir.join("alerts.jsonl").display()
    );
    let cfg = Config::parse(
        "bench.yaml",
        &yaml,
        &std::collections::BTreeMap::<String, String>::new(),
    )
    .expect("bench config");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    // The router runs on its own runtime, as in the binary; the load generator on another, so
    // the router's CPU time can be told apart (threads named aerie-router / bench-client).
    let router_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name(ROUTER_THREADS)
        .enable_all()
        .build()
        .expect("runtime");
    let running = router_rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        aerie_router::server::start(cfg, Some(listener))
            .await
            .expect("start")
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-client")
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let addr = running.addr;
        let core = running.core.clone();
        let seq = Arc::new(AtomicU64::new(0));
        println!("aerie-router ingest benchmark ({mode} queue): {cores} cores, {conns} connections, {secs} s per phase");
        println!("pipeline: HTTP -> routes (3, regex+glob) -> dedup (50% repeated keys) -> file.hbs template -> file (fsync interval)");
        // RSS with `keys` distinct dedup keys live (10 m window): batches of distinct alerts.
        if keys > 0 {
        let before = core.metrics.output(0).dedup_keys.load(Relaxed);
        let rss_before = rss_mb();
        let base = processed(&core);
        let mut client = Client::connect(addr).await;
        let mut body = String::with_capacity(1 << 20);
        let mut sent = 0;
        while sent < keys {
            body.clear();
            for _ in 0..500.min(keys - sent) {
                let s = seq.fetch_add(1, Relaxed);
                alert_json(&mut body, 10_000_000_000 + s, s);
                body.push('\n');
                sent += 1;
            }
            // Keep the backlog small so RSS shows live state, not queued alerts.
            while sent - (processed(&core) - base) > 20_000 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // Honour backpressure: 503 means the output's queue is full; retry the same batch.
            loop {
                match client.post("/v1/alerts", &body).await {
                    200 => break,
                    503 => tokio::time::sleep(Duration::from_millis(5)).await,
                    other => panic!("HTTP {other}"),
                }
            }
        }
        // Wait for the worker to take them and for the next sweep to publish the gauge.
        let deadline = Instant::now() + Duration::from_secs(60);
        let live = loop {
            let live = core.metrics.output(0).dedup_keys.load(Relaxed);
            if live >= before + keys || Instant::now() > deadline {
                break live;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        println!(
            "RSS with {live} live dedup keys: {:.0} MB (before adding {keys} keys: {rss_before:.0} MB)",
            rss_mb()
        );
        }
        // Warm-up.
        run_phase(addr, &core, conns, 1, 1, seq.clone()).await;
        println!(
            "{:<22} {:>9} {:>10} {:>13} {:>8} {:>8} {:>12} {:>14}",
            "phase", "alerts", "ingest/s", "end-to-end/s", "p50 ms", "p99 ms", "alerts/CPU-s", "router CPU-s"
        );
        let batch_name = format!("POST /v1/alerts x{batch_size}");
        for (name, batch) in [("POST / (1 per req)", 1), (batch_name.as_str(), batch_size)] {
            let phase = if batch == 1 { "single" } else { "batch" };
            if !phases.split(',').any(|p| p == phase) {
                continue;
            }
            let p = run_phase(addr, &core, conns, secs, batch, seq.clone()).await;
            println!(
                "{:<22} {:>9} {:>10.0} {:>13.0} {:>8.3} {:>8.3} {:>12.0} {:>7.0} ({:.0}%)",
                name,
                p.alerts,
                p.alerts as f64 / p.ingest_secs,
                p.alerts as f64 / p.drained_secs,
                pct(&p.lat_us, 0.5),
                pct(&p.lat_us, 0.99),
                p.alerts as f64 / p.cpu_secs.max(0.01),
                p.alerts as f64 / p.router_cpu_secs.max(0.01),
                100.0 * p.router_cpu_secs / p.cpu_secs.max(0.01)
            );
        }
        running.shutdown().await.expect("shutdown");
    });
    router_rt.shutdown_timeout(Duration::from_millis(100));
}
