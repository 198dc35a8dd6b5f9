//! Behaviour of the spool on real files: reopen, torn tails, consumers,
//! limits, dead letters, async appends.

mod common;

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use aerie_spool::{Error, FsyncPolicy, Options, Spool, StartAt};
use common::{TempDir, block_on, payload, segments};

fn small_segments() -> Options {
    Options {
        segment_bytes: 16 << 10,
        ..Options::default()
    }
}

#[test]
fn reopen_after_drop_mid_stream_resumes_at_last_ack() {
    let tmp = TempDir::new("reopen");
    {
        let spool = Spool::open(tmp.path(), small_segments()).unwrap();
        let mut r = spool.reader("out").unwrap();
        for i in 0..500 {
            assert_eq!(spool.append(&payload(i)).unwrap(), i);
        }
        let batch = r.fetch(300).unwrap();
        assert_eq!(batch.len(), 300);
        for (i, rec) in batch.iter().enumerate() {
            assert_eq!(rec.seq, i as u64);
            assert_eq!(rec.payload, payload(i as u64));
        }
        // Ack only the first 200; 200..300 stay in flight and must come back.
        assert_eq!(r.ack_through(199), 200);
        assert!(segments(tmp.path()).len() > 1, "expected several segments");
    }
    let spool = Spool::open(tmp.path(), small_segments()).unwrap();
    let mut r = spool.reader("out").unwrap();
    assert_eq!(r.depth(), 300);
    let rest = r.fetch(1000).unwrap();
    let seqs: Vec<u64> = rest.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (200..500).collect::<Vec<_>>());
    for rec in &rest {
        assert_eq!(rec.payload, payload(rec.seq));
    }
    // New appends continue the sequence.
    assert_eq!(spool.append(b"next").unwrap(), 500);
}

fn write_then_damage(tag: &str, damage: impl Fn(&std::path::Path)) -> (TempDir, u64) {
    let tmp = TempDir::new(tag);
    let n = 50;
    {
        let spool = Spool::open(tmp.path(), Options::default()).unwrap();
        for i in 0..n {
            spool.append(&payload(i)).unwrap();
        }
    }
    let last = segments(tmp.path()).pop().unwrap();
    damage(&last);
    (tmp, n)
}

fn assert_recovers_prefix(tmp: &TempDir, expect_at_least: u64, expect_at_most: u64) {
    let spool = Spool::open(tmp.path(), Options::default()).unwrap();
    let m = spool.metrics();
    assert!(m.recovered_truncated_bytes > 0, "nothing truncated: {m:?}");
    let mut r = spool.reader("check").unwrap();
    let recs = r.fetch(usize::MAX).unwrap();
    let n = recs.len() as u64;
    assert!(
        (expect_at_least..=expect_at_most).contains(&n),
        "recovered {n} records"
    );
    for (i, rec) in recs.iter().enumerate() {
        assert_eq!(rec.seq, i as u64);
        assert_eq!(rec.payload, payload(i as u64));
    }
    // Appending after recovery reuses no surviving sequence number and the
    // new record lands after the cut.
    let seq = spool.append(b"after-recovery").unwrap();
    assert_eq!(seq, n);
    let more = r.fetch(10).unwrap();
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].payload, b"after-recovery");
}

#[test]
fn torn_tail_truncated_recovers_all_complete_records() {
    for cut in [1u64, 5, 23, 24, 30] {
        let (tmp, n) = write_then_damage("torn", |p| {
            let f = OpenOptions::new().write(true).open(p).unwrap();
            let len = f.metadata().unwrap().len();
            f.set_len(len - cut).unwrap();
        });
        assert_recovers_prefix(&tmp, n - 1, n - 1);
    }
}

#[test]
fn garbled_tail_recovers_all_complete_records() {
    let (tmp, n) = write_then_damage("garble", |p| {
        let mut data = std::fs::read(p).unwrap();
        let len = data.len();
        for b in &mut data[len - 3..] {
            *b ^= 0xA5;
        }
        std::fs::write(p, data).unwrap();
    });
    assert_recovers_prefix(&tmp, n - 1, n - 1);

    // Garbage appended after the last complete record (a torn group write).
    let (tmp, n) = write_then_damage("junk", |p| {
        let mut f = OpenOptions::new().append(true).open(p).unwrap();
        f.write_all(&[0x17; 100]).unwrap();
    });
    assert_recovers_prefix(&tmp, n, n);
}

#[test]
fn consumers_have_independent_cursors_and_out_of_order_acks() {
    let tmp = TempDir::new("consumers");
    {
        let spool = Spool::open(tmp.path(), Options::default()).unwrap();
        let mut a = spool.reader("a").unwrap();
        let mut b = spool.reader("b").unwrap();
        spool
            .append_batch(&(0..20).map(payload).collect::<Vec<_>>())
            .unwrap();
        let got = a.fetch(20).unwrap();
        assert_eq!(got.len(), 20);
        // Out of order: 0..10, 15 and 19 acked; 10..15, 16..19 not.
        for s in (0..10).chain([15, 19]).rev() {
            a.ack(s).unwrap();
        }
        assert_eq!(a.depth(), 8);
        // b has consumed nothing.
        assert_eq!(b.depth(), 20);
        let b1 = b.fetch(3).unwrap();
        assert_eq!(b1.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2]);
        b.ack(1).unwrap();
        // Acking twice is fine; acking something never fetched is not.
        b.ack(1).unwrap();
        assert!(matches!(b.ack(7), Err(Error::NotFetched { seq: 7, .. })));
        let m = spool.metrics();
        let depth: Vec<_> = m
            .consumers
            .iter()
            .map(|c| (c.name.as_str(), c.depth))
            .collect();
        assert_eq!(depth, [("a", 8), ("b", 19)]);
    }
    let spool = Spool::open(tmp.path(), Options::default()).unwrap();
    assert_eq!(spool.consumers(), ["a", "b"]);
    let mut a = spool.reader("a").unwrap();
    let seqs: Vec<u64> = a.fetch(100).unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [10, 11, 12, 13, 14, 16, 17, 18]);
    let mut b = spool.reader("b").unwrap();
    let seqs: Vec<u64> = b.fetch(100).unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [0].into_iter().chain(2..20).collect::<Vec<_>>());
}

#[test]
fn rewind_redelivers_in_flight_records_only() {
    let tmp = TempDir::new("rewind");
    let spool = Spool::open(tmp.path(), Options::default()).unwrap();
    let mut r = spool.reader("webhook").unwrap();
    spool
        .append_batch(&(0..10).map(payload).collect::<Vec<_>>())
        .unwrap();
    let first = r.fetch(6).unwrap();
    assert_eq!(first.len(), 6);
    r.ack(0).unwrap();
    r.ack(3).unwrap();
    r.rewind();
    let again: Vec<u64> = r.fetch(100).unwrap().iter().map(|x| x.seq).collect();
    assert_eq!(again, [1, 2, 4, 5, 6, 7, 8, 9]);
}

#[test]
fn reader_rules_are_enforced() {
    let tmp = TempDir::new("rules");
    let spool = Spool::open(tmp.path(), Options::default()).unwrap();
    let _r = spool.reader("one").unwrap();
    assert!(matches!(
        spool.reader("one"),
        Err(Error::ConsumerBusy { .. })
    ));
    assert!(matches!(
        spool.reader("../etc"),
        Err(Error::InvalidConsumerName { .. })
    ));
    assert!(matches!(
        Spool::open(tmp.path(), Options::default()),
        Err(Error::Locked { .. })
    ));
    let big = vec![0u8; Options::default().max_record_bytes + 1];
    assert!(matches!(
        spool.append(&big),
        Err(Error::RecordTooLarge { .. })
    ));
}

#[test]
fn start_at_tail_skips_existing_records() {
    let tmp = TempDir::new("tail");
    let spool = Spool::open(tmp.path(), Options::default()).unwrap();
    spool.append(b"old").unwrap();
    let mut r = spool.reader_at("late", StartAt::Tail).unwrap();
    spool.append(b"new").unwrap();
    let recs = r.fetch(10).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].payload, b"new");
}

#[test]
fn full_at_limit_then_recovers_after_ack_and_reclaim() {
    let tmp = TempDir::new("full");
    let opts = Options {
        max_bytes: 64 << 10,
        ..Options::default()
    };
    let spool = Spool::open(tmp.path(), opts).unwrap();
    let mut r = spool.reader("slow").unwrap();
    let record = vec![b'a'; 1000];
    let mut accepted = 0u64;
    let err = loop {
        match spool.append(&record) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 1000, "limit never reached");
    };
    assert!(matches!(err, Error::Full { .. }), "{err:?}");
    assert!(err.is_full());
    let m = spool.metrics();
    assert!(m.bytes_on_disk <= 64 << 10);
    assert!(accepted >= 50, "only {accepted} records fit in 64 KiB");
    assert_eq!(m.full_rejections, 1);
    // Still full while nothing is acked.
    assert!(spool.append(&record).unwrap_err().is_full());

    // Drain and ack everything; reclaim frees the sealed segments.
    let mut seen = 0;
    loop {
        let batch = r.fetch(16).unwrap();
        if batch.is_empty() {
            break;
        }
        for rec in &batch {
            assert_eq!(rec.payload, record);
            r.ack(rec.seq).unwrap();
        }
        seen += batch.len() as u64;
    }
    assert_eq!(seen, accepted);
    // The background thread may get there first; either way space is freed.
    spool.reclaim().unwrap();
    assert!(spool.metrics().reclaimed_bytes > 0);
    assert!(spool.metrics().bytes_on_disk < 64 << 10);
    let seq = spool.append(&record).expect("append after reclaim");
    assert_eq!(seq, accepted);
}

#[test]
fn background_reclaim_frees_space_without_explicit_call() {
    let tmp = TempDir::new("bgreclaim");
    let opts = Options {
        max_bytes: 64 << 10,
        cursor_sync_interval: Duration::from_millis(20),
        ..Options::default()
    };
    let spool = Spool::open(tmp.path(), opts).unwrap();
    let mut r = spool.reader("out").unwrap();
    let record = vec![b'b'; 2000];
    while spool.append(&record).is_ok() {}
    for rec in r.fetch(usize::MAX).unwrap() {
        r.ack(rec.seq).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while spool.append(&record).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "space never reclaimed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(spool.metrics().reclaimed_bytes > 0);
}

#[test]
fn remove_consumer_unpins_records() {
    let tmp = TempDir::new("remove");
    let spool = Spool::open(tmp.path(), small_segments()).unwrap();
    let mut live = spool.reader("live").unwrap();
    drop(spool.reader("gone").unwrap());
    for i in 0..200 {
        spool.append(&payload(i)).unwrap();
    }
    let n = live.fetch(usize::MAX).unwrap().len();
    assert_eq!(n, 200);
    live.ack_through(199);
    assert_eq!(spool.reclaim().unwrap(), 0, "'gone' still pins everything");
    assert!(spool.remove_consumer("gone").unwrap());
    spool.reclaim().unwrap();
    assert!(spool.metrics().reclaimed_bytes > 0);
    assert_eq!(spool.consumers(), ["live"]);
}

#[test]
fn dead_letter_writes_json_line_and_acks() {
    let tmp = TempDir::new("dlq");
    let spool = Spool::open(tmp.path(), Options::default()).unwrap();
    let mut r = spool.reader("pagerduty").unwrap();
    spool
        .append(br#"{"rule":"Terminal shell","priority":"Critical"}"#)
        .unwrap();
    spool.append(b"\xff\xfe not utf8").unwrap();
    let recs = r.fetch(10).unwrap();
    r.dead_letter(&recs[0], "older than max_age 1h").unwrap();
    r.dead_letter(&recs[1], "bad \"quote\"\n").unwrap();
    assert_eq!(r.depth(), 0);
    let text = std::fs::read_to_string(spool.dead_letter_path()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["consumer"], "pagerduty");
    assert_eq!(lines[0]["seq"], 0);
    assert_eq!(lines[0]["reason"], "older than max_age 1h");
    assert_eq!(lines[0]["record"]["rule"], "Terminal shell");
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(lines[1]["reason"], "bad \"quote\"\n");
    assert!(
        lines[1]["payload_hex"]
            .as_str()
            .unwrap()
            .starts_with("fffe")
    );
    assert_eq!(spool.metrics().dead_lettered, 2);
}

#[test]
fn async_appends_resolve_to_durable_seqs() {
    let tmp = TempDir::new("async");
    let spool = Spool::open(tmp.path(), Options::default()).unwrap();
    let mut r = spool.reader("out").unwrap();
    // Queue many before awaiting any: they share group commits.
    let futs: Vec<_> = (0..100).map(|i| spool.append_async(&payload(i))).collect();
    let mut seqs = BTreeSet::new();
    for f in futs {
        seqs.insert(block_on(f).unwrap());
    }
    assert_eq!(seqs, (0..100).collect());
    let m = spool.metrics();
    assert!(m.commit_groups < 100, "no grouping: {m:?}");
    let range = block_on(spool.append_batch_async(&[b"a", b"b"])).unwrap();
    assert_eq!(range, 100..102);
    // readable() resolves once something is unread.
    block_on(r.readable());
    assert_eq!(r.fetch(1000).unwrap().len(), 102);
}

#[test]
fn concurrent_appenders_and_reader_see_every_record_once_in_order() {
    let tmp = TempDir::new("concurrent");
    let spool = Spool::open(tmp.path(), small_segments()).unwrap();
    let mut r = spool.reader("out").unwrap();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let spool = spool.clone();
            std::thread::spawn(move || {
                (0..300u64)
                    .map(|i| {
                        let p = payload(t * 1000 + i);
                        (spool.append(&p).unwrap(), p)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut got = Vec::new();
    while got.len() < 2400 {
        let batch = r.fetch_wait(256, Duration::from_secs(10)).unwrap();
        assert!(!batch.is_empty(), "reader starved at {}", got.len());
        for rec in batch {
            r.ack(rec.seq).unwrap();
            got.push(rec);
        }
    }
    let mut expected: Vec<(u64, Vec<u8>)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    expected.sort();
    let got: Vec<(u64, Vec<u8>)> = got.into_iter().map(|r| (r.seq, r.payload)).collect();
    assert_eq!(got, expected);
    assert!(r.fetch(10).unwrap().is_empty());
}

#[test]
fn interval_and_never_policies_append_and_reopen() {
    for fsync in [
        FsyncPolicy::Interval(Duration::from_millis(5)),
        FsyncPolicy::Never,
    ] {
        let tmp = TempDir::new("policy");
        let opts = Options {
            fsync,
            ..small_segments()
        };
        {
            let spool = Spool::open(tmp.path(), opts.clone()).unwrap();
            for i in 0..300 {
                spool.append(&payload(i)).unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
            if fsync != FsyncPolicy::Never {
                assert!(spool.metrics().fsyncs > 0, "{fsync:?} never synced");
            } else {
                assert_eq!(spool.metrics().fsyncs, 0);
            }
        }
        let spool = Spool::open(tmp.path(), opts).unwrap();
        let mut r = spool.reader("out").unwrap();
        let recs = r.fetch(1000).unwrap();
        assert_eq!(recs.len(), 300, "{fsync:?}");
        assert!(recs.iter().all(|r| r.payload == payload(r.seq)));
    }
}

#[test]
fn acks_are_persisted_by_reader_sync_and_survive_reopen() {
    let tmp = TempDir::new("sync");
    let spool = Spool::open(tmp.path(), Options::default()).unwrap();
    let mut r = spool.reader("out").unwrap();
    spool
        .append_batch(&(0..5).map(payload).collect::<Vec<_>>())
        .unwrap();
    r.fetch(3).unwrap();
    r.ack_through(2);
    r.sync().unwrap();
    // Read the cursor file from a second handle-free view: reopen after drop.
    drop(r);
    drop(spool);
    let spool = Spool::open(tmp.path(), Options::default()).unwrap();
    let mut r = spool.reader("out").unwrap();
    assert_eq!(r.fetch(10).unwrap()[0].seq, 3);
}

#[test]
fn stale_cursor_behind_reclaimed_segments_resumes_at_oldest_record() {
    let tmp = TempDir::new("stale");
    let cursor = tmp.path().join("consumers").join("out.cursor");
    let stale = {
        let spool = Spool::open(tmp.path(), small_segments()).unwrap();
        let mut r = spool.reader("out").unwrap();
        r.sync().unwrap();
        let stale = std::fs::read(&cursor).unwrap();
        for i in 0..300 {
            spool.append(&payload(i)).unwrap();
        }
        let got = r.fetch(250).unwrap();
        r.ack_through(got[249].seq);
        spool.reclaim().unwrap();
        assert!(spool.metrics().reclaimed_bytes > 0);
        stale
    };
    // As if the process died before the newer cursor reached the disk.
    std::fs::write(&cursor, stale).unwrap();
    let spool = Spool::open(tmp.path(), small_segments()).unwrap();
    let mut r = spool.reader("out").unwrap();
    let recs = r.fetch(1000).unwrap();
    let first = recs[0].seq;
    assert!(first > 0 && first <= 250, "resumed at {first}");
    let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (first..300).collect::<Vec<_>>());
    assert!(recs.iter().all(|r| r.payload == payload(r.seq)));
}

#[test]
fn damaged_sealed_segment_keeps_prefix_and_later_segments() {
    let tmp = TempDir::new("midcorrupt");
    {
        let spool = Spool::open(tmp.path(), small_segments()).unwrap();
        for i in 0..600 {
            spool.append(&payload(i)).unwrap();
        }
    }
    let segs = segments(tmp.path());
    assert!(segs.len() >= 3);
    let mut first = std::fs::read(&segs[0]).unwrap();
    let mid = first.len() / 2;
    first[mid] ^= 0xFF;
    std::fs::write(&segs[0], first).unwrap();

    let spool = Spool::open(tmp.path(), small_segments()).unwrap();
    let mut r = spool.reader("out").unwrap();
    let recs = r.fetch(1000).unwrap();
    let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
    // A prefix of segment 0, a gap, then everything from segment 1 on.
    let gap = seqs
        .windows(2)
        .position(|w| w[1] != w[0] + 1)
        .expect("a gap");
    assert!(seqs[..=gap].iter().copied().eq(0..=seqs[gap]));
    assert_eq!(*seqs.last().unwrap(), 599);
    assert!(recs.iter().all(|r| r.payload == payload(r.seq)));
    // Acks move the watermark across the gap.
    r.ack_through(599);
    assert_eq!(r.depth(), 0);
    assert_eq!(spool.append(b"new").unwrap(), 600);
}

#[test]
fn async_api_is_send_for_tokio_spawn() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    fn assert_send_ref<T: Send>(_: &T) {}
    let tmp = TempDir::new("send");
    let spool = Spool::open(tmp.path(), Options::default()).unwrap();
    let mut r = spool.reader("out").unwrap();
    let append = spool.append_async(b"x");
    assert_send(&append);
    let batch = spool.append_batch_async(&[b"y"]);
    assert_send(&batch);
    assert_send(&r);
    assert_eq!(block_on(append).unwrap(), 0);
    // Both are queued at creation, but only an awaited append is known to be durable (and
    // so readable): `y` may commit in a later group than `x`.
    assert_eq!(block_on(batch).unwrap().start, 1);
    {
        let next = r.next_batch(10);
        assert_send_ref(&next);
        let got = block_on(next).unwrap();
        assert_eq!(got.len(), 2);
    }
    // next_batch waits for a record appended later from another thread.
    let spool2 = spool.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        spool2.append(b"late").unwrap()
    });
    let got = block_on(r.next_batch(10)).unwrap();
    assert_eq!(got[0].payload, b"late");
    assert_eq!(got[0].seq, t.join().unwrap());
}

#[test]
fn metrics_render_as_prometheus_text() {
    let tmp = TempDir::new("prom");
    let spool = Spool::open(tmp.path(), Options::default()).unwrap();
    let mut r = spool.reader("slack-secops").unwrap();
    spool.append_batch(&[b"a", b"b", b"c"]).unwrap();
    r.fetch(1).unwrap();
    r.ack(0).unwrap();
    let mut text = String::new();
    spool.metrics().write_prometheus(&mut text, "aerie_spool");
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
    };
    assert_eq!(value("aerie_spool_appended_records_total"), 3.0);
    assert_eq!(
        value("aerie_spool_consumer_depth{consumer=\"slack-secops\"}"),
        2.0
    );
    assert!(value("aerie_spool_fsyncs_total") >= 1.0);
    assert!(value("aerie_spool_bytes_on_disk") > 0.0);
    assert!(text.contains("# TYPE aerie_spool_full_rejections_total counter"));
}
