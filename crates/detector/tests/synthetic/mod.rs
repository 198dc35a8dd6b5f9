//! Synthetic events through the real state tracker, field extractor and rules engine:
//! rule tests without a kernel.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use aerie_alert::Alert;
use aerie_detector::fields::{Creds, SockAddr, SysEvent};
use aerie_detector::run::{Pipeline, load_rules};
use aerie_detector::state::{BootClock, ExecInfo, ProcessTable, UserDb};
use aerie_rules::EngineConfig;

pub const HOST: &str = "host";
pub const CONTAINER: &str = "3f2a9c1b7d4e";
/// A fixed "now" for events, ns since the epoch.
pub const T0: u64 = 1_700_000_000_000_000_000;
pub const SEC: u64 = 1_000_000_000;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn default_rules() -> PathBuf {
    repo_root().join("config/rules/aerie_rules.yaml")
}

/// Falco's upstream rules, or `None` (with a notice) when absent outside CI.
/// `AERIE_FALCO_RULES_DIR` names another directory holding them.
pub fn falco_rules() -> Option<PathBuf> {
    let dir = std::env::var_os("AERIE_FALCO_RULES_DIR")
        .map_or_else(|| repo_root().join("../shared/falco-rules"), PathBuf::from);
    let p = dir.join("falco_rules.yaml");
    if p.exists() {
        return Some(p);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{} is missing (CI must have it)", p.display());
    }
    eprintln!("notice: {} not found; skipping", p.display());
    None
}

/// Where a scenario's processes come from: a temporary, empty procfs stand-in, so that only
/// the events the test sends exist.
fn scratch_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "aerie-synth-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub struct Scenario {
    pub p: Pipeline,
    pub now: u64,
}

/// A process to start.
pub struct Proc<'a> {
    pub pid: u32,
    pub ppid: u32,
    pub exe: &'a str,
    pub argv: &'a [&'a str],
    pub uid: u32,
    pub loginuid: u32,
    pub container: &'a str,
    pub cwd: &'a str,
    pub tty: u32,
    pub memfd: bool,
    pub upper: bool,
}

impl Default for Proc<'_> {
    fn default() -> Self {
        Proc {
            pid: 0,
            ppid: 1,
            exe: "/bin/true",
            argv: &[],
            uid: 0,
            loginuid: u32::MAX,
            container: HOST,
            cwd: "/root",
            tty: 0,
            memfd: false,
            upper: false,
        }
    }
}

impl Scenario {
    pub fn new(rule_files: &[PathBuf]) -> Self {
        Self::with_config(rule_files, &EngineConfig::default())
    }

    /// As [`Scenario::new`], with the engine built as `cfg` says.
    pub fn with_config(rule_files: &[PathBuf], cfg: &EngineConfig) -> Self {
        let dir = scratch_dir("s");
        std::fs::write(
            dir.join("passwd"),
            "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
             www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/bash\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("group"),
            "root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nalice:x:1000:\n",
        )
        .unwrap();
        let proc_root = dir.join("proc");
        std::fs::create_dir_all(&proc_root).unwrap();
        let table = ProcessTable::with_proc_root(&proc_root, 4096, 256, BootClock::fixed(0));
        let users = UserDb::from_files(dir.join("passwd"), dir.join("group"));
        let engine = load_rules(rule_files, cfg).unwrap();
        let mut s = Scenario {
            p: Pipeline::new(table, users, engine, "test-node".into()),
            now: T0,
        };
        // init, so that ancestors end somewhere sensible.
        s.spawn(&Proc {
            pid: 1,
            ppid: 0,
            exe: "/sbin/init",
            argv: &["/sbin/init"],
            ..Default::default()
        });
        s
    }

    /// Start a process as fork+exec would, and return the alerts the execve raised.
    pub fn spawn(&mut self, pr: &Proc<'_>) -> Vec<Alert> {
        self.now += 1_000;
        if pr.ppid != 0 && self.p.tracker.table.get(pr.ppid).is_some() {
            self.p.on_fork(pr.ppid, pr.pid, self.now);
        }
        let mut argv = Vec::new();
        for a in pr.argv {
            argv.extend_from_slice(a.as_bytes());
            argv.push(0);
        }
        // The kernel names a task after the file it executed, not after argv[0].
        let comm = pr.exe.rsplit('/').next().unwrap_or(pr.exe);
        let comm = &comm[..comm.len().min(15)];
        self.p.on_exec(
            pr.pid,
            pr.ppid,
            &ExecInfo {
                exepath: pr.exe,
                argv: &argv,
                comm,
                cwd: Some(pr.cwd),
                container_id: Some(pr.container),
                uid: pr.uid,
                gid: pr.uid,
                euid: pr.uid,
                egid: pr.uid,
                loginuid: pr.loginuid,
                tty: pr.tty,
                exe_upper_layer: pr.upper,
                exe_from_memfd: pr.memfd,
                ..Default::default()
            },
        );
        if let Some(p) = self.p.tracker.table.get_mut(pr.pid)
            && p.start_ns == 0
        {
            p.start_ns = self.now;
        }
        let mut ev = self.event(pr.pid, "execve", 0);
        ev.strs[0] = pr.exe.as_bytes();
        ev.argv = &[];
        self.send(&ev)
    }

    /// Let time pass.
    pub fn advance(&mut self, ns: u64) {
        self.now += ns;
    }

    /// A syscall exit of `pid` with its current credentials.
    pub fn event<'a>(&self, pid: u32, name: &'static str, res: i64) -> SysEvent<'a> {
        let p = self.p.tracker.table.get(pid);
        SysEvent {
            ts_ns: self.now,
            name,
            pid,
            tid: pid,
            res,
            creds: p.map(|p| Creds {
                uid: p.uid,
                gid: p.gid,
                euid: p.euid,
                egid: p.egid,
                loginuid: p.loginuid,
                cap_permitted: p.cap_permitted,
                cap_effective: p.cap_effective,
            }),
            ..Default::default()
        }
    }

    pub fn send(&mut self, ev: &SysEvent<'_>) -> Vec<Alert> {
        self.now += 1_000;
        let mut out = Vec::new();
        let ev = SysEvent {
            ts_ns: self.now,
            ..*ev
        };
        self.p.on_syscall(&ev, &mut |a| out.push(a));
        out
    }

    /// `openat(AT_FDCWD, path, flags)` returning `fd`.
    pub fn open(&mut self, pid: u32, path: &str, flags: u64, fd: i64) -> Vec<Alert> {
        let mut ev = self.event(pid, "openat", fd);
        ev.args = [(-100i32) as u32 as u64, 0, flags, 0o644, 0, 0];
        let bytes = path.as_bytes();
        ev.strs[1] = bytes;
        self.send(&ev)
    }

    pub fn socket(&mut self, pid: u32, domain: u64, ty: u64, fd: i64) -> Vec<Alert> {
        let mut ev = self.event(pid, "socket", fd);
        ev.args = [domain, ty, 0, 0, 0, 0];
        self.send(&ev)
    }

    pub fn connect(&mut self, pid: u32, fd: i32, addr: SockAddr<'_>, res: i64) -> Vec<Alert> {
        let mut ev = self.event(pid, "connect", res);
        ev.args[0] = fd as u32 as u64;
        ev.addr = Some(addr);
        self.send(&ev)
    }
}

/// Names of the rules that fired.
pub fn rules(alerts: &[Alert]) -> Vec<&str> {
    alerts.iter().map(|a| a.rule.as_str()).collect()
}

/// Extract fields (as written in a rule: `proc.aname[2]`, `evt.arg.flags`) from `ev` the way
/// the pipeline would, after applying the event to the state. `None`: not extractable.
pub fn extract(s: &mut Scenario, ev: &SysEvent<'_>, names: &[&str]) -> Vec<Option<Vec<String>>> {
    use aerie_detector::fields::EventCtx;
    use aerie_rules::{Event, FieldArg, FieldRef, syscall_fields};
    let evfd = s.p.tracker.before(ev);
    let scratch = std::cell::RefCell::new(String::new());
    let out = {
        let ctx = EventCtx::new(
            ev,
            &s.p.tracker.table,
            &s.p.tracker.transient,
            evfd,
            &s.p.users,
            &s.p.containers,
            &s.p.hostname,
            &scratch,
        );
        names
            .iter()
            .map(|name| {
                let reg = syscall_fields();
                let (id, info, arg) = match name.split_once('[') {
                    Some((base, rest)) => {
                        let a = rest.trim_end_matches(']');
                        let (id, info) = reg.get(base).unwrap_or_else(|| panic!("{base}"));
                        let arg = match a.parse::<u64>() {
                            Ok(i) => FieldArg::Index(i),
                            Err(_) => FieldArg::Key(a),
                        };
                        (id, info, arg)
                    }
                    None => {
                        let (id, info, key) = reg.resolve(name).unwrap_or_else(|| panic!("{name}"));
                        (id, info, key.map_or(FieldArg::None, FieldArg::Key))
                    }
                };
                let mut vals = Vec::new();
                ctx.extract(&FieldRef { id, info, arg }, &mut |v| {
                    vals.push(v.to_string())
                })
                .then_some(vals)
            })
            .collect()
    };
    s.p.tracker.after(ev);
    out
}

/// One single-valued field.
pub fn one(s: &mut Scenario, ev: &SysEvent<'_>, name: &str) -> Option<String> {
    extract(s, ev, &[name]).remove(0).map(|v| v.join(","))
}
