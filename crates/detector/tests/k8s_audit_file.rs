//! Kubernetes audit events from the API server's audit log file (JSON lines), without the
//! kernel: appends, a line still being written, bad lines, rotation by rename and by
//! copy-truncate, restarts (with and without a rotation in between). Each event has its own
//! auditID and a rule matching every event names it, so the file output shows that every
//! event was judged exactly once. Falco's `K8s Secret Get Successfully`, from the unmodified
//! upstream file, fires from a log line.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aerie_alert::Alert;
use aerie_detector::config::{HttpOutputConfig, K8sAuditConfig, OutputSpec};
use aerie_detector::k8s_audit::{AuditSource, FileFollower, follow_files};
use aerie_detector::metrics::Metrics;
use aerie_detector::output::Outputs;
use aerie_rules::{EngineConfig, RuleLoader, RuleMatching};

const EVERY_EVENT: &str = r#"
- rule: Audit event
  desc: every audit event, by id
  condition: ka.auditid exists
  output: event %ka.auditid verb=%ka.verb
  priority: INFO
  source: k8s_audit
"#;

fn event(id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets/db","verb":"get","user":{{"username":"alice"}},"objectRef":{{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"2024-03-18T16:50:00.100000Z","stageTimestamp":"2024-03-18T16:50:00.123456Z"}}"#
    )
}

fn lines(ids: &[&str]) -> String {
    ids.iter().map(|id| event(id) + "\n").collect()
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A scratch directory, an audit source writing alerts to a file, and the log path.
struct Harness {
    dir: PathBuf,
    log: PathBuf,
    state: PathBuf,
    out: PathBuf,
    source: Arc<AuditSource>,
    metrics: Arc<Metrics>,
    // Keeps the output task running; dropped last.
    _outputs: Outputs,
    _rt: tokio::runtime::Runtime,
}

impl Harness {
    fn new(tag: &str, rules: &[(&str, &str)]) -> Harness {
        let dir =
            std::env::temp_dir().join(format!("aerie-auditfile-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("log")).unwrap();
        let out = dir.join("alerts.jsonl");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let metrics = Arc::new(Metrics::default());
        let outputs = rt
            .block_on(Outputs::start(
                &[OutputSpec::File(out.clone())],
                &HttpOutputConfig::default(),
                metrics.clone(),
            ))
            .unwrap();
        let mut loader = RuleLoader::new();
        for (name, text) in rules {
            loader.load_str(name, text);
        }
        let engine = loader.compile(&EngineConfig {
            rule_matching: RuleMatching::All,
            ..EngineConfig::default()
        });
        assert!(!loader.has_errors(), "{:?}", loader.results());
        let source = Arc::new(AuditSource {
            engine: Arc::new(engine),
            hostname: "node-1".into(),
            outputs: outputs.sender(),
            metrics: metrics.clone(),
        });
        Harness {
            log: dir.join("log/audit.log"),
            state: dir.join("state"),
            out,
            dir,
            source,
            metrics,
            _outputs: outputs,
            _rt: rt,
        }
    }

    fn follower(&self) -> FileFollower {
        FileFollower::new(&self.log, &self.state, self.source.clone())
    }

    fn alerts(&self) -> Vec<Alert> {
        fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| aerie_alert::decode_alert(l.as_bytes()).unwrap())
            .collect()
    }

    /// Wait until `n` alerts were written, then count them by auditID.
    fn judged(&self, n: usize) -> BTreeMap<String, usize> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let a = self.alerts();
            if a.len() >= n || Instant::now() > deadline {
                let mut by_id = BTreeMap::new();
                for al in a.iter().filter(|a| a.rule == "Audit event") {
                    let id = al.field_str("ka.auditid").unwrap_or("?").to_owned();
                    *by_id.entry(id).or_insert(0) += 1;
                }
                return by_id;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn assert_each_once(&self, ids: &[&str]) {
        // Counted when sent, before the output task writes them: exact at this point.
        assert_eq!(
            self.metrics.alerts_for("Audit event"),
            ids.len() as u64,
            "alerts sent"
        );
        let by_id = self.judged(ids.len());
        let want: BTreeMap<String, usize> = ids.iter().map(|i| ((*i).to_owned(), 1)).collect();
        assert_eq!(by_id, want, "every event exactly once");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn appended_lines_are_judged_once_and_a_partial_line_waits() {
    let h = Harness::new("append", &[("every.yaml", EVERY_EVENT)]);
    let mut f = h.follower();
    // No file yet: nothing, no error.
    assert_eq!(f.poll(), 0);
    append(&h.log, &lines(&["a1", "a2", "a3"]));
    assert_eq!(f.poll(), 3);
    assert_eq!(f.poll(), 0);
    // A line still being written is left for the next poll.
    let e = event("a4");
    let (head, tail) = e.split_at(40);
    append(&h.log, &(lines(&["a5"]) + head));
    assert_eq!(f.poll(), 1);
    append(&h.log, &format!("{tail}\n"));
    assert_eq!(f.poll(), 1);
    h.assert_each_once(&["a1", "a2", "a3", "a5", "a4"]);
    assert_eq!(h.metrics.k8s_audit_file_events(), 5);
}

#[test]
fn bad_lines_are_counted_and_skipped() {
    let h = Harness::new("bad", &[("every.yaml", EVERY_EVENT)]);
    let mut f = h.follower();
    append(
        &h.log,
        &format!(
            "{}not json at all\n{{\"kind\":\"Pod\"}}\n\n{}",
            lines(&["b1"]),
            lines(&["b2"])
        ),
    );
    assert_eq!(f.poll(), 2);
    assert_eq!(h.metrics.k8s_audit_bad_lines(), 2);
    h.assert_each_once(&["b1", "b2"]);
}

#[test]
fn rotation_by_rename_reads_the_old_file_to_its_end_first() {
    let h = Harness::new("rename", &[("every.yaml", EVERY_EVENT)]);
    let mut f = h.follower();
    append(&h.log, &lines(&["r1", "r2"]));
    assert_eq!(f.poll(), 2);
    // Written just before the rotation, not yet read.
    append(&h.log, &lines(&["r3"]));
    fs::rename(&h.log, h.log.with_extension("log.1")).unwrap();
    append(&h.log, &lines(&["r4", "r5"]));
    assert_eq!(f.poll(), 3);
    append(&h.log, &lines(&["r6"]));
    assert_eq!(f.poll(), 1);
    h.assert_each_once(&["r1", "r2", "r3", "r4", "r5", "r6"]);
}

#[test]
fn rotation_by_copy_truncate_loses_nothing() {
    let h = Harness::new("copytrunc", &[("every.yaml", EVERY_EVENT)]);
    let mut f = h.follower();
    append(&h.log, &lines(&["c1", "c2"]));
    assert_eq!(f.poll(), 2);
    // logrotate copytruncate: c3 lands after the last poll, is copied, then the file emptied.
    append(&h.log, &lines(&["c3"]));
    fs::copy(&h.log, h.log.with_extension("log.1")).unwrap();
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&h.log)
        .unwrap();
    append(&h.log, &lines(&["c4"]));
    assert_eq!(f.poll(), 2, "c3 from the copy, c4 from the emptied file");
    // Truncated again and refilled past the old position before a poll: the first line
    // changed, so it is still read from the start.
    fs::remove_file(h.log.with_extension("log.1")).unwrap();
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&h.log)
        .unwrap();
    append(&h.log, &lines(&["c5", "c6", "c7"]));
    assert_eq!(f.poll(), 3);
    h.assert_each_once(&["c1", "c2", "c3", "c4", "c5", "c6", "c7"]);
}

#[test]
fn restarts_resume_without_duplicates_or_gaps() {
    let h = Harness::new("restart", &[("every.yaml", EVERY_EVENT)]);
    let mut f = h.follower();
    append(&h.log, &lines(&["s1", "s2"]));
    assert_eq!(f.poll(), 2);
    drop(f);
    // Down: more lines.
    append(&h.log, &lines(&["s3"]));
    let mut f = h.follower();
    assert_eq!(f.poll(), 1);
    drop(f);
    // Down across a rotation: the rest of the old file, then the new one.
    append(&h.log, &lines(&["s4"]));
    fs::rename(&h.log, h.log.with_extension("log.1")).unwrap();
    append(&h.log, &lines(&["s5"]));
    let mut f = h.follower();
    assert_eq!(f.poll(), 2);
    assert_eq!(f.poll(), 0);
    drop(f);
    // A restart with nothing new reads nothing.
    let mut f = h.follower();
    assert_eq!(f.poll(), 0);
    h.assert_each_once(&["s1", "s2", "s3", "s4", "s5"]);
}

#[test]
fn restarts_across_a_missing_file_and_a_copy_truncate() {
    let h = Harness::new("restart2", &[("every.yaml", EVERY_EVENT)]);
    let mut f = h.follower();
    append(&h.log, &lines(&["m1"]));
    assert_eq!(f.poll(), 1);
    // Renamed away, the new file not created yet: the old one is finished and its position
    // kept, so a restart now does not read it again.
    append(&h.log, &lines(&["m2"]));
    fs::rename(&h.log, h.log.with_extension("log.1")).unwrap();
    assert_eq!(f.poll(), 1);
    assert_eq!(f.poll(), 0);
    drop(f);
    let mut f = h.follower();
    assert_eq!(f.poll(), 0);
    append(&h.log, &lines(&["m3"]));
    assert_eq!(f.poll(), 1);
    drop(f);
    // Copy-truncated while down: the lines only in the copy, then the emptied file.
    append(&h.log, &lines(&["m4"]));
    fs::remove_file(h.log.with_extension("log.1")).unwrap();
    fs::copy(&h.log, h.log.with_extension("log.1")).unwrap();
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&h.log)
        .unwrap();
    append(&h.log, &lines(&["m5"]));
    let mut f = h.follower();
    assert_eq!(f.poll(), 2);
    assert_eq!(f.poll(), 0);
    h.assert_each_once(&["m1", "m2", "m3", "m4", "m5"]);
}

#[test]
fn a_backlog_larger_than_a_read_is_judged_once_across_read_boundaries() {
    let h = Harness::new("backlog", &[("every.yaml", EVERY_EVENT)]);
    // ~2 KiB lines: many of them straddle the 64 KiB reads, and the backlog passes the
    // position checkpoint.
    let pad = "x".repeat(1800);
    let ids: Vec<String> = (0..3000).map(|i| format!("k{i}-{pad}")).collect();
    let text: String = ids.iter().map(|id| event(id) + "\n").collect();
    assert!(text.len() > 5 << 20);
    append(&h.log, &text);
    let mut f = h.follower();
    assert_eq!(f.poll(), 3000);
    drop(f);
    let mut f = h.follower();
    assert_eq!(f.poll(), 0);
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    h.assert_each_once(&refs);
}

#[test]
fn the_follower_thread_polls_and_stops() {
    let h = Harness::new("thread", &[("every.yaml", EVERY_EVENT)]);
    let cfg = K8sAuditConfig {
        files: vec![h.log.clone()],
        state_dir: h.state.clone(),
        poll_interval_ms: 50,
        ..K8sAuditConfig::default()
    };
    let t = follow_files(&cfg, h.source.clone()).unwrap();
    append(&h.log, &lines(&["t1", "t2"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.metrics.k8s_audit_file_events() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Written just before the stop: the last poll reads it.
    append(&h.log, &lines(&["t3"]));
    t.stop();
    assert_eq!(h.metrics.k8s_audit_file_events(), 3);
    h.assert_each_once(&["t1", "t2", "t3"]);
    assert!(fs::read_dir(&h.state).unwrap().count() == 1);
}

#[test]
fn falco_secret_get_rule_fires_from_the_log_file() {
    let dir = std::env::var_os("AERIE_FALCO_RULES_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/falco-rules"),
        PathBuf::from,
    );
    let Ok(text) = fs::read_to_string(dir.join("k8s_audit_rules.yaml")) else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{} is missing (CI must have it)", dir.display());
        }
        eprintln!("notice: {} not found; skipping", dir.display());
        return;
    };
    let h = Harness::new("falco", &[("k8s_audit_rules.yaml", &text)]);
    let mut f = h.follower();
    append(&h.log, &lines(&["f1"]));
    assert_eq!(f.poll(), 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        if let Some(a) = h
            .alerts()
            .into_iter()
            .find(|a| a.rule == "K8s Secret Get Successfully")
        {
            break a;
        }
        assert!(Instant::now() < deadline, "no alert: {:?}", h.alerts());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(alert.source, "k8s_audit");
    assert!(
        alert.output.contains(
            "K8s Secret Get Successfully (user=alice secret=db ns=default resource=secrets resp=200"
        ),
        "{}",
        alert.output
    );
}
