//! Runs the real `aerie-detector` binary (eBPF attached, alerts to a file) for tests that
//! perform real actions. Needs root: skipped with a notice otherwise, failing under CI=true.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aerie_alert::Alert;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Falco's upstream rules, or `None` with a notice (a failure under CI=true).
pub fn falco_rules() -> Option<PathBuf> {
    let p = repo_root().join("../shared/falco-rules/falco_rules.yaml");
    if p.exists() {
        return Some(p);
    }
    require(&format!("{} is missing", p.display()));
    None
}

fn require(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}, and CI=true requires this test to run");
    }
    eprintln!("notice: skipping: {why}");
}

/// Whether this process can load eBPF programs; prints the skip notice when not.
pub fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        require("not running as root");
        return false;
    }
    true
}

/// A fresh scratch directory.
pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aerie-detect-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A running detector writing alerts to a file.
pub struct Detector {
    child: Child,
    alerts: PathBuf,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Detector {
    /// Start with these rule files and wait until it has attached and read /proc.
    pub fn start(rules: &[PathBuf], dir: &Path) -> Detector {
        Self::start_with(rules, dir, &[])
    }

    /// As [`Detector::start`], with more `--output` destinations.
    pub fn start_with(rules: &[PathBuf], dir: &Path, outputs: &[String]) -> Detector {
        Self::launch(rules, dir, outputs, "{}\n")
    }

    /// As [`Detector::start`], with `config` (YAML) as the configuration file.
    pub fn start_with_config(rules: &[PathBuf], dir: &Path, config: &str) -> Detector {
        Self::launch(rules, dir, &[], config)
    }

    fn launch(rules: &[PathBuf], dir: &Path, outputs: &[String], config: &str) -> Detector {
        let alerts = dir.join("alerts.jsonl");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aerie-detector"));
        cmd.arg("run")
            .arg("--config")
            .arg(dir.join("no-such-config.yaml"))
            .arg("--output")
            .arg(format!("file:{}", alerts.display()));
        for r in rules {
            cmd.arg("--rules").arg(r);
        }
        for o in outputs {
            cmd.arg("--output").arg(o);
        }
        // A missing explicit --config is an error; the defaults come from an empty file.
        std::fs::write(dir.join("no-such-config.yaml"), config).unwrap();
        let mut child = cmd
            .env("AERIE_DETECTOR__METRICS__LISTEN", "127.0.0.1:0")
            .env("AERIE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning aerie-detector");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let keep = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("processes read from /proc") {
                    let _ = tx.send(());
                }
                keep.lock().unwrap().push(line);
            }
        });
        let ready = rx.recv_timeout(Duration::from_secs(90)).is_ok();
        let mut d = Detector {
            child,
            alerts,
            stderr,
        };
        if !ready {
            let _ = d.child.kill();
            panic!(
                "aerie-detector did not become ready:\n{}",
                d.stderr.lock().unwrap().join("\n")
            );
        }
        d
    }

    /// Every alert written so far.
    pub fn alerts(&self) -> Vec<Alert> {
        let text = std::fs::read_to_string(&self.alerts).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Wait up to `timeout` for an alert of `rule` that `pred` accepts.
    pub fn wait_for(
        &self,
        rule: &str,
        timeout: Duration,
        pred: impl Fn(&Alert) -> bool,
    ) -> Option<Alert> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(a) = self
                .alerts()
                .into_iter()
                .find(|a| a.rule == rule && pred(a))
            {
                return Some(a);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop with SIGINT; returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        // SAFETY: plain kill(2) on our child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                if !status.success() {
                    // The reader thread sees the last lines at EOF: give it a moment.
                    std::thread::sleep(Duration::from_millis(200));
                    eprintln!(
                        "aerie-detector exited with {status} after SIGINT; its log:\n{}",
                        self.stderr.lock().unwrap().join("\n")
                    );
                }
                return status.success();
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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

/// Run a command to completion (its exit status is not interesting to detection tests).
pub fn run(cmd: &mut Command) {
    let _ = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running a test action");
}

/// Our own task name, which is what children see as `proc.pname`.
pub fn my_comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim()
        .to_owned()
}

/// Program ids from the start-up banner (`program ids: 12 13 14`).
pub fn program_ids(log: &str) -> Vec<u32> {
    log.lines()
        .find_map(|l| l.split("program ids: ").nth(1))
        .map(|rest| {
            rest.split(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a BPF program with this id is loaded (BPF_PROG_GET_FD_BY_ID succeeds).
pub fn program_loaded(id: u32) -> bool {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    // union bpf_attr for this command: prog_id, next_id, open_flags.
    let mut attr = [0u32; 4];
    attr[0] = id;
    // SAFETY: bpf(2) reads `size` bytes of `attr`, which lives for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_FD_BY_ID,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd >= 0 {
        // SAFETY: closing the fd the kernel just gave us.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    false
}

/// Collects failures so that one run reports every broken case.
#[derive(Default)]
pub struct Failures(Vec<String>);

impl Failures {
    pub fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.0.push(what.into());
        }
    }

    pub fn finish(self, d: Detector) {
        let log = d.stderr.lock().unwrap().join("\n");
        let alerts: Vec<String> = d.alerts().iter().map(|a| a.to_json()).collect();
        eprintln!("{} alerts written; checked cases:", alerts.len());
        for a in d.alerts() {
            if a.output_fields
                .values()
                .any(|v| v.as_str().is_some_and(|s| s.contains("aerie")))
            {
                eprintln!("  {}: {}", a.rule, a.output);
            }
        }
        let ids = program_ids(&log);
        let clean = d.stop();
        let mut f = self.0;
        if log.contains('\x1b') {
            f.push("terminal colour codes in the detector's piped log".into());
        }
        if !clean {
            f.push("aerie-detector did not exit cleanly on SIGINT".into());
        }
        if ids.is_empty() {
            f.push("the start-up banner lists no program ids".into());
        }
        // The kernel frees programs after an RCU grace period: give it a moment.
        let end = Instant::now() + Duration::from_secs(10);
        while ids.iter().any(|id| program_loaded(*id)) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100));
        }
        for id in ids {
            if program_loaded(id) {
                f.push(format!(
                    "eBPF program {id} is still loaded after the detector stopped"
                ));
            }
        }
        assert!(
            f.is_empty(),
            "{} failure(s):\n- {}\n--- detector log:\n{log}\n--- alerts:\n{}",
            f.len(),
            f.join("\n- "),
            alerts.join("\n")
        );
    }
}
