//! Evaluate Falco's stable rules on 1M synthetic syscall events held in memory.
//!
//! Run: `cargo bench -p aerie-rules --bench engine`
//!
//! The mix is mostly ordinary opens, execs and connects that match nothing, plus a few
//! that match (`cat /etc/shadow`, a terminal shell in a container). Reports the median of
//! several runs (events/s, ns/event) and allocations per event, counted by a global
//! allocator, for all events and for non-matching events alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aerie_rules::{
    EngineConfig, Event, FieldArg, FieldId, FieldRef, Matches, RuleLoader, Value, syscall_fields,
};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Debug)]
enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// An event in the engine's in-memory form: values indexed by field id, as the detector's
/// extractor table does.
#[derive(Clone, Debug)]
struct SynthEvent {
    evt_type: &'static str,
    by_id: Vec<Option<Val>>,
    ancestors: Vec<String>,
    args: Vec<(String, String)>,
}

impl Event for SynthEvent {
    fn source(&self) -> &str {
        "syscall"
    }
    fn event_type(&self) -> Option<&str> {
        Some(self.evt_type)
    }
    fn extract(&self, f: &FieldRef<'_>, out: &mut dyn FnMut(Value<'_>)) -> bool {
        // Dispatch on the field id, as a real extractor's table does.
        let ids = special_ids();
        if f.id == ids.aname {
            match f.arg {
                FieldArg::Index(n) if n >= 1 => {
                    return match self.ancestors.get(n as usize - 1) {
                        Some(a) => {
                            out(Value::Str(a));
                            true
                        }
                        None => false,
                    };
                }
                FieldArg::None => {
                    for a in &self.ancestors {
                        out(Value::Str(a));
                    }
                    return true;
                }
                _ => {}
            }
        } else if f.id == ids.arg {
            if let FieldArg::Key(k) = f.arg {
                return match self.args.iter().find(|(n, _)| n == k) {
                    Some((_, v)) => {
                        out(Value::Str(v));
                        true
                    }
                    None => false,
                };
            }
            return false;
        }
        if f.arg != FieldArg::None {
            return false;
        }
        match self.by_id.get(f.id.0 as usize) {
            Some(Some(Val::Str(s))) => out(Value::Str(s)),
            Some(Some(Val::Int(i))) => out(Value::Int(*i)),
            Some(Some(Val::Bool(b))) => out(Value::Bool(*b)),
            _ => return false,
        }
        true
    }
}

struct SpecialIds {
    aname: FieldId,
    arg: FieldId,
}

fn special_ids() -> &'static SpecialIds {
    static IDS: OnceLock<SpecialIds> = OnceLock::new();
    IDS.get_or_init(|| SpecialIds {
        aname: syscall_fields()
            .get("proc.aname")
            .map(|(id, _)| id)
            .unwrap_or(FieldId(0)),
        arg: syscall_fields()
            .get("evt.arg")
            .map(|(id, _)| id)
            .unwrap_or(FieldId(0)),
    })
}

struct Builder(SynthEvent);

impl Builder {
    fn new(evt_type: &'static str) -> Self {
        let n = syscall_fields().fields().len();
        Builder(SynthEvent {
            evt_type,
            by_id: vec![None; n],
            ancestors: Vec::new(),
            args: Vec::new(),
        })
        .set("evt.type", Val::Str(evt_type.into()))
    }
    fn set(mut self, name: &str, v: Val) -> Self {
        let (id, _) = syscall_fields().get(name).expect(name);
        self.0.by_id[id.0 as usize] = Some(v);
        self
    }
    fn s(self, name: &str, v: &str) -> Self {
        self.set(name, Val::Str(v.into()))
    }
    fn i(self, name: &str, v: i64) -> Self {
        self.set(name, Val::Int(v))
    }
    fn b(self, name: &str, v: bool) -> Self {
        self.set(name, Val::Bool(v))
    }
    fn process(self, name: &str, exe: &str, cmdline: &str, parent: &str, anc: &[&str]) -> Self {
        let mut b = self
            .s("proc.name", name)
            .s("proc.exe", exe)
            .s("proc.exepath", exe)
            .s("proc.cmdline", cmdline)
            .s("proc.args", cmdline.split_once(' ').map_or("", |(_, a)| a))
            .s("proc.pname", parent)
            .s("proc.pcmdline", parent)
            .s("proc.pexe", &format!("/usr/bin/{parent}"))
            .s("proc.cwd", "/home/app/")
            .i("proc.pid", 4242)
            .i("proc.vpid", 4242)
            .i("proc.tty", 0)
            .s("user.name", "app")
            .i("user.uid", 1000)
            .i("user.loginuid", 1000)
            .s("group.name", "app")
            .s("container.id", "host");
        b.0.ancestors = anc.iter().map(|s| s.to_string()).collect();
        b
    }
    fn container(self, id: &str, image: &str) -> Self {
        self.s("container.id", id)
            .s("container.image.repository", image)
            .s("container.name", "web")
    }
    fn open(self, path: &str, read: bool) -> Self {
        let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
        let mut b = self
            .s("fd.name", path)
            .s("fd.nameraw", path)
            .s("fd.directory", if dir.is_empty() { "/" } else { dir })
            .s("fd.filename", file)
            .s("fd.typechar", "f")
            .s("fd.type", "file")
            .i("fd.num", 5)
            .i("evt.rawres", 5)
            .s("evt.res", "SUCCESS")
            .b("evt.is_open_read", read)
            .b("evt.is_open_write", !read);
        b.0.args = vec![(
            "flags".into(),
            if read {
                "O_RDONLY|O_CLOEXEC"
            } else {
                "O_WRONLY|O_CREAT"
            }
            .into(),
        )];
        b
    }
    fn connect(self, ip: &str, port: i64) -> Self {
        self.s("fd.name", &format!("10.0.0.5:40000->{ip}:{port}"))
            .s("fd.typechar", "4")
            .s("fd.type", "ipv4")
            .s("fd.l4proto", "tcp")
            .s("fd.sip", ip)
            .s("fd.rip", ip)
            .i("fd.sport", port)
            .i("fd.rport", port)
            .i("fd.lport", 40000)
            .i("fd.num", 7)
            .i("evt.rawres", 0)
            .s("evt.res", "SUCCESS")
    }
    fn done(self) -> SynthEvent {
        self.0
    }
}

fn rules_path() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/falco-rules/falco_rules.yaml");
    p.exists().then_some(p)
}

/// The event pool: (event, expected to match).
fn pool() -> Vec<SynthEvent> {
    let mut v = Vec::new();
    let files = [
        "/var/www/html/index.html",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/etc/ld.so.cache",
        "/proc/self/status",
        "/home/app/data/users.db",
        "/tmp/upload-1234",
        "/var/log/nginx/access.log",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/usr/share/zoneinfo/UTC",
    ];
    let procs = [
        (
            "nginx",
            "/usr/sbin/nginx",
            "nginx -g daemon off;",
            "containerd-shim",
        ),
        ("python3", "/usr/bin/python3", "python3 app.py", "bash"),
        ("java", "/usr/bin/java", "java -jar svc.jar", "bash"),
        ("node", "/usr/bin/node", "node server.js", "npm"),
    ];
    for (i, f) in files.iter().enumerate() {
        for (j, (n, e, c, p)) in procs.iter().enumerate() {
            let b = Builder::new(if (i + j) % 3 == 0 { "open" } else { "openat" })
                .process(n, e, c, p, &[p, "systemd"])
                .open(f, (i + j) % 4 != 0);
            let b = if j % 2 == 0 {
                b.container("3ad7b26ded6d", "nginx")
            } else {
                b
            };
            v.push(b.done());
        }
    }
    for (n, args) in [
        ("ls", "ls -la"),
        ("grep", "grep foo bar.txt"),
        ("date", "date"),
        ("python3", "python3 -m pip list"),
        ("git", "git status"),
    ] {
        v.push(
            Builder::new("execve")
                .process(
                    n,
                    &format!("/usr/bin/{n}"),
                    args,
                    "bash",
                    &["bash", "sshd", "systemd"],
                )
                .i("evt.rawres", 0)
                .done(),
        );
    }
    for (ip, port) in [
        ("10.1.2.3", 443),
        ("172.16.0.10", 5432),
        ("8.8.8.8", 53),
        ("10.96.0.1", 8080),
    ] {
        v.push(
            Builder::new("connect")
                .process(
                    "curl",
                    "/usr/bin/curl",
                    "curl https://svc",
                    "bash",
                    &["bash", "systemd"],
                )
                .connect(ip, port)
                .done(),
        );
    }
    for t in ["read", "write", "close", "mmap"] {
        v.push(
            Builder::new(t)
                .process("nginx", "/usr/sbin/nginx", "nginx", "systemd", &["systemd"])
                .done(),
        );
    }
    v
}

fn matching() -> Vec<SynthEvent> {
    vec![
        Builder::new("openat")
            .process(
                "cat",
                "/usr/bin/cat",
                "cat /etc/shadow",
                "bash",
                &["bash", "sshd", "systemd"],
            )
            .open("/etc/shadow", true)
            .done(),
        Builder::new("execve")
            .process(
                "bash",
                "/bin/bash",
                "bash",
                "runc",
                &["runc", "containerd-shim", "systemd"],
            )
            .i("proc.tty", 34816)
            .container("3ad7b26ded6d", "nginx")
            .done(),
    ]
}

/// CPU time of this thread: the machine is shared, so wall time overstates the cost.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let Some(path) = rules_path() else {
        eprintln!("notice: ../shared/falco-rules/falco_rules.yaml not found; benchmark skipped");
        return;
    };
    let mut loader = RuleLoader::new();
    loader.load_file(&path);
    let engine = loader.compile(&EngineConfig::default());
    assert!(!loader.has_errors(), "stable rules must load");

    const N: usize = 1_000_000;
    let pool = pool();
    let hits = matching();
    let mut m = Matches::new();
    for e in &pool {
        assert_eq!(
            engine.evaluate(e, &mut m),
            0,
            "pool event unexpectedly matched: {e:?}"
        );
    }
    for e in &hits {
        assert_eq!(
            engine.evaluate(e, &mut m),
            1,
            "matching event did not match: {e:?}"
        );
    }
    // One event in 5000 matches.
    let events: Vec<&SynthEvent> = (0..N)
        .map(|i| {
            if i % 5000 == 4999 {
                &hits[(i / 5000) % hits.len()]
            } else {
                &pool[(i * 7919) % pool.len()]
            }
        })
        .collect();

    let runs = 5;
    let mut rates = Vec::new();
    let mut wall_rates = Vec::new();
    let mut matched = 0;
    for _ in 0..runs {
        matched = 0;
        let start = Instant::now();
        let cpu = thread_cpu_secs();
        for e in &events {
            matched += engine.evaluate(*e, &mut m);
        }
        let cpu = thread_cpu_secs() - cpu;
        let secs = start.elapsed().as_secs_f64();
        rates.push(N as f64 / cpu);
        wall_rates.push(N as f64 / secs);
    }
    let rate = median(rates.clone());
    let wall_rate = median(wall_rates);

    let before = ALLOCS.load(Ordering::Relaxed);
    for e in &events {
        engine.evaluate(*e, &mut m);
    }
    let all_allocs = ALLOCS.load(Ordering::Relaxed) - before;
    let mut non_matching = 0u64;
    let before_nm = ALLOCS.load(Ordering::Relaxed);
    for i in 0..N {
        let e = &pool[(i * 7919) % pool.len()];
        non_matching += engine.evaluate(e, &mut m) as u64;
    }
    let nm_allocs = ALLOCS.load(Ordering::Relaxed) - before_nm;
    assert_eq!(non_matching, 0);

    println!(
        "aerie-rules engine benchmark: Falco stable rules ({} rules), {N} synthetic syscall events",
        engine.enabled_rules()
    );
    println!(
        "  pool: {} non-matching templates (open/openat, execve, connect, read/write/close/mmap), {} matching",
        pool.len(),
        hits.len()
    );
    println!("  runs: {runs}, matches per run: {matched}");
    println!(
        "  median (thread CPU time, one core): {:.2} M events/s, {:.1} ns/event (min {:.2}, max {:.2} M events/s)",
        rate / 1e6,
        1e9 / rate,
        rates.iter().cloned().fold(f64::INFINITY, f64::min) / 1e6,
        rates.iter().cloned().fold(0.0, f64::max) / 1e6,
    );
    println!(
        "  median wall clock: {:.2} M events/s (shared machine: wall time includes waiting for the CPU)",
        wall_rate / 1e6
    );
    println!(
        "  allocations per event (all, {matched} matches): {:.6}",
        all_allocs as f64 / N as f64
    );
    println!(
        "  allocations per non-matching event: {:.6} ({nm_allocs} over {N})",
        nm_allocs as f64 / N as f64
    );
}
