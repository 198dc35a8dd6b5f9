//! SIGKILL a process that appends in a loop; every append it reported as
//! acknowledged must survive the reopen.
//!
//! The child is this test binary re-executed with `CHILD_ENV` set, running
//! only `crash_child` (which returns at once in a normal test run).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aerie_spool::{FsyncPolicy, Options, Spool};
use common::TempDir;

const CHILD_ENV: &str = "AERIE_SPOOL_CRASH_CHILD_DIR";
const ROUND_ENV: &str = "AERIE_SPOOL_CRASH_ROUND";
const POLICY_ENV: &str = "AERIE_SPOOL_CRASH_FSYNC_INTERVAL_MS";

/// `interval_ms`: `FsyncPolicy::Interval` instead of the default `Always`
/// (appends then return before the fsync; a process kill must not matter).
fn child_options(interval_ms: Option<u64>) -> Options {
    Options {
        segment_bytes: 64 << 10,
        cursor_sync_interval: Duration::from_millis(5),
        fsync: interval_ms.map_or(FsyncPolicy::Always, |ms| {
            FsyncPolicy::Interval(Duration::from_millis(ms))
        }),
        ..Options::default()
    }
}

/// Child side: 8 appender threads print `A <seq> <payload>` after each Ok;
/// a consumer acks everything (cursor writes and reclaim run during the kill),
/// another never acks (so every record stays on disk to be checked).
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round = std::env::var(ROUND_ENV).unwrap_or_default();
    let interval = std::env::var(POLICY_ENV).ok().and_then(|v| v.parse().ok());
    let spool = Spool::open(&dir, child_options(interval)).expect("child open");
    let _lazy = spool.reader("lazy").expect("lazy reader");
    let mut fast = spool.reader("fast").expect("fast reader");
    let out = Arc::new(Mutex::new(std::io::stdout()));
    for t in 0..8 {
        let (spool, out, round) = (spool.clone(), Arc::clone(&out), round.clone());
        std::thread::spawn(move || {
            for i in 0.. {
                let p = format!("r{round}-t{t}-{i}-{}", "p".repeat(i % 300));
                let seq = spool.append(p.as_bytes()).expect("child append");
                let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                writeln!(o, "A {seq} {p}")
                    .and_then(|()| o.flush())
                    .expect("stdout");
            }
        });
    }
    loop {
        for rec in fast
            .fetch_wait(64, Duration::from_millis(50))
            .expect("fetch")
        {
            fast.ack(rec.seq).expect("ack");
        }
    }
}

/// Run one child until it has reported `want` appends, SIGKILL it, and return
/// the acknowledged (seq, payload) pairs it printed.
fn run_and_kill(
    dir: &std::path::Path,
    interval_ms: Option<u64>,
    round: u32,
    want: usize,
) -> Vec<(u64, String)> {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(ROUND_ENV, round.to_string());
    if let Some(ms) = interval_ms {
        cmd.env(POLICY_ENV, ms.to_string());
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let collector = {
        let acked = Arc::clone(&acked);
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                // A line cut by the kill has no newline: not a complete report.
                let Some(text) = line.strip_suffix(b"\n") else {
                    break;
                };
                let text = String::from_utf8_lossy(text);
                if let Some(rest) = text.strip_prefix("A ")
                    && let Some((seq, payload)) = rest.split_once(' ')
                {
                    let seq: u64 = seq.parse().expect("seq");
                    acked.lock().unwrap().push((seq, payload.to_string()));
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < want {
        assert!(Instant::now() < deadline, "child too slow");
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("child exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL child");
    let status = child.wait().expect("wait child");
    assert!(!status.success());
    collector.join().expect("collector");
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

#[test]
fn sigkill_mid_append_loses_no_acknowledged_record() {
    kill_rounds_then_verify(None);
}

#[test]
fn sigkill_with_interval_fsync_loses_no_acknowledged_record() {
    kill_rounds_then_verify(Some(50));
}

fn kill_rounds_then_verify(interval_ms: Option<u64>) {
    let tmp = TempDir::new("crash");
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    for round in 0..2 {
        for (seq, p) in run_and_kill(tmp.path(), interval_ms, round, 3000) {
            assert!(
                acked.insert(seq, p).is_none(),
                "seq {seq} acknowledged twice"
            );
        }
    }
    let spool = Spool::open(tmp.path(), child_options(interval_ms)).expect("reopen after kill");
    let m = spool.metrics();
    let mut lazy = spool.reader("lazy").expect("lazy");
    let mut on_disk = BTreeMap::new();
    loop {
        let batch = lazy.fetch(4096).expect("fetch");
        if batch.is_empty() {
            break;
        }
        for rec in batch {
            on_disk.insert(rec.seq, String::from_utf8(rec.payload).expect("utf8"));
        }
    }
    let mut missing = Vec::new();
    for (seq, p) in &acked {
        match on_disk.get(seq) {
            Some(d) => assert_eq!(d, p, "seq {seq} holds the wrong payload"),
            None => missing.push(*seq),
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged records lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    // Records appended but killed before their ack was printed may exist too.
    let extra = on_disk.len() - acked.len();
    println!(
        "crash test ({interval_ms:?}): {} acknowledged, {} on disk ({extra} unreported), {} bytes truncated at open, fast consumer at {:?}",
        acked.len(),
        on_disk.len(),
        m.recovered_truncated_bytes,
        m.consumers
            .iter()
            .map(|c| (&c.name, c.acked_low))
            .collect::<Vec<_>>()
    );
    // The acking consumer resumes somewhere inside the log, never past its end.
    let fast = m
        .consumers
        .iter()
        .find(|c| c.name == "fast")
        .expect("fast consumer");
    assert!(fast.acked_low <= m.next_seq);
}
