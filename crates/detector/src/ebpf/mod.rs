//! Kernel capture: loads the embedded eBPF object, fills its maps, attaches the programs and
//! reads their ring buffers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), aerie_detector::ebpf::CaptureError> {
//! use aerie_detector::ebpf::{Capture, CaptureConfig};
//! let mut capture = Capture::start(CaptureConfig::default())?;
//! capture.set_interesting(&["execve", "openat", "connect"])?;
//! let mut batch = Vec::new();
//! loop {
//!     capture.next_batch(&mut batch).await?;
//!     for event in batch.drain(..) { /* state + rules */ let _ = event; }
//!     let _drops = capture.counters()?.dropped();
//! }
//! # }
//! ```
//!
//! # How it works
//!
//! - **Programs** (all `tp_btf`, BTF-enabled raw tracepoints): `sys_enter`, `sys_exit`,
//!   `sched_process_exec`, `sched_process_fork`, `sched_process_exit`. Dropping the
//!   [`Capture`] detaches them all (the links are owned by the loaded object).
//! - **Filtering in the kernel**: the `SYSCALLS` array (indexed by x86_64 syscall number)
//!   says which syscalls are wanted and how each argument is captured ([`syscalls::SYSCALLS`]);
//!   [`Capture::set_interesting`] rewrites it at run time. Unwanted syscalls cost one array
//!   lookup in each program. The detector's own process is skipped (`exclude_self`).
//! - **Entry capture**: for syscalls with user-memory arguments (paths, socket addresses,
//!   argv, `open_how`) `sys_enter` copies them into the task's own `TASK_INFLIGHT` slot (task
//!   local storage, up to 512 bytes of data) or, when longer, the `INFLIGHT_BIG` hash (key:
//!   tid), and `sys_exit` completes that record with the return value and sends it — so the
//!   values are the ones the kernel acted on, not what the user rewrote meanwhile.
//!   Output-only addresses (accept's peer) are read at exit.
//! - **Identity**: every record has pid/tid/uid/gid/comm; ppid, euid/egid, loginuid and
//!   capabilities only process records and credential-changing syscalls (`flags::CREDS`,
//!   [`crate::event::EventFlags::creds`]); the process table keeps them for the rest.
//! - **Caps** (`detector_common`): a path or string 4096 bytes (PATH_MAX), argv 32 entries /
//!   4096 bytes at execve entry and 4096 bytes of `mm->arg_start..arg_end` at exec, a socket
//!   address 128 bytes, 8 KiB of variable data per syscall record, cgroup and cwd walks 8
//!   components of up to 127 bytes. Anything cut sets `EventFlags::truncated`.
//! - **Transport**: 1, 2 or 4 BPF ring buffers (CPU `n` writes ring `n & (rings-1)`),
//!   fixed-size records with reserve/submit, variable ones with `bpf_ringbuf_output` from a
//!   per-CPU scratch buffer. The reader is woken only when `wakeup_bytes` wait, and polls
//!   every `poll_interval` otherwise. [`Capture::next_batch`] drains all rings and sorts the
//!   batch by kernel timestamp.
//! - **Counters**: per-CPU `COUNTERS` (sent, ring full, in-flight map full, no scratch,
//!   exit without entry, truncated), summed by [`Capture::counters`] together with the
//!   reader's own (received, decode errors).
//! - **Portability**: Rust eBPF has no CO-RE relocations; every kernel struct offset the
//!   programs use is read from `/sys/kernel/btf/vmlinux` at start ([`btf`], [`offsets`]) and
//!   handed over in the `CONFIG` map. Members this kernel lacks are listed by
//!   [`Capture::missing_offsets`]; the programs then skip those reads.

pub mod btf;
pub mod calibration;
pub mod decode;
pub mod offsets;
pub mod path_filter;
pub mod syscalls;

use std::{collections::HashSet, io, task::Poll};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::BtfTracePoint,
};
use detector_common::{
    Config, FD_WALK_DIRECT, FD_WALK_GLOBAL, MAX_RINGS, MAX_SYSCALLS, PathFilter, SyscallSpec,
    counter,
};
use thiserror::Error;
use tokio::io::unix::AsyncFd;

use crate::event::Event;
pub use decode::{Clock, DecodeError};

/// The eBPF object built by `build.rs` from `crates/detector-ebpf`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/detector-ebpf"));

/// Names of the attached programs, in attach order (each is also its tracepoint).
pub const PROGRAMS: [&str; 5] = [
    "sched_process_fork",
    "sched_process_exec",
    "sched_process_exit",
    "sys_enter",
    "sys_exit",
];

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("this binary was built with AERIE_SKIP_EBPF: it has no eBPF object")]
    NoObject,
    #[error("reading kernel BTF (/sys/kernel/btf/vmlinux): {0}")]
    Btf(String),
    #[error("loading the eBPF object: {0} (needs root or CAP_BPF+CAP_PERFMON+CAP_SYS_RESOURCE)")]
    Load(#[source] aya::EbpfError),
    #[error("eBPF map {0} missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF program {0} missing from the object")]
    MissingProgram(&'static str),
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("ring buffer size {0} is not a power-of-two multiple of the page size")]
    RingSize(u32),
    #[error("Capture::start must run inside a tokio runtime")]
    NoRuntime,
    #[error("open path filter: {0}")]
    PathFilter(String),
    #[error("polling ring buffer: {0}")]
    Io(#[from] io::Error),
}

/// How to start the capture.
#[derive(Clone, Debug)]
pub struct CaptureConfig {
    /// Bytes per ring buffer (power-of-two multiple of the page size). Default 8 MiB.
    pub ring_bytes: u32,
    /// Number of ring buffers, rounded down to a power of two; CPU n writes to ring
    /// `n & (rings - 1)`. Default: one per CPU, at most 4 (`detector_common::MAX_RINGS`).
    pub rings: Option<u32>,
    /// Syscalls to capture at start (Falco names); `None` = every supported syscall.
    /// Change later with [`Capture::set_interesting`].
    pub syscalls: Option<Vec<String>>,
    /// Do not report the detector's own process (default true).
    pub exclude_self: bool,
    /// The kernel wakes the reader once this many bytes wait in a ring (default 64 KiB,
    /// capped at a quarter of the ring); smaller amounts are collected every
    /// `poll_interval`. 0 = wake on every record (lowest latency, highest cost: each
    /// wake-up is an inter-processor interrupt).
    pub wakeup_bytes: u32,
    /// How often the reader checks the rings without a wake-up (default 2 ms): the bound
    /// on how long a record can wait in a quiet ring.
    pub poll_interval: std::time::Duration,
    /// Walk a task's descriptor table with direct, BTF-checked loads where the kernel's
    /// verifier accepts them (default true). Should it refuse, [`Capture::start`] falls
    /// back to helper reads by itself; false asks for helper reads from the start.
    pub direct_fd_walk: bool,
    /// Exec records carry the new image's environment (up to
    /// `detector_common::ENV_CAP` bytes). Off by default: only rules that read `proc.env`
    /// or `proc.aenv` need it, and it is the largest part of an exec record.
    pub capture_env: bool,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            ring_bytes: 8 << 20,
            rings: None,
            syscalls: None,
            exclude_self: true,
            wakeup_bytes: 64 << 10,
            poll_interval: std::time::Duration::from_millis(2),
            direct_fd_walk: true,
            capture_env: false,
        }
    }
}

/// Result of [`Capture::set_interesting`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    /// Syscalls now captured.
    pub enabled: Vec<&'static str>,
    /// Requested names this capture does not support (they are never seen).
    pub unsupported: Vec<String>,
}

/// Kernel + decoder counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Records written to the ring buffers.
    pub sent: u64,
    /// Dropped because the ring buffer was full.
    pub drop_ring_full: u64,
    /// Entry captures lost because the in-flight map was full (exit still sent, NO_ENTRY).
    pub drop_inflight_full: u64,
    /// Dropped because the per-CPU scratch buffer was unavailable.
    pub drop_no_scratch: u64,
    /// Syscall exits without a recorded entry (sent with `flags.no_entry`).
    pub no_entry: u64,
    /// Records with data cut at a cap (sent).
    pub truncated: u64,
    /// Records read by user space.
    pub received: u64,
    /// Records user space could not decode (skipped).
    pub decode_errors: u64,
    /// Opens kept in the kernel by the path filter (no rule can match them; not drops).
    pub filtered_opens: u64,
    /// Closes kept in the kernel: their descriptor came from a filtered open.
    pub filtered_closes: u64,
}

impl Counters {
    /// Events lost, all reasons.
    pub fn dropped(&self) -> u64 {
        self.drop_ring_full + self.drop_no_scratch + self.decode_errors
    }

    /// `(reason, count)` pairs for metrics (`drops_total{reason=...}`).
    pub fn drops_by_reason(&self) -> [(&'static str, u64); 4] {
        [
            ("ring_full", self.drop_ring_full),
            ("inflight_full", self.drop_inflight_full),
            ("no_scratch", self.drop_no_scratch),
            ("decode_error", self.decode_errors),
        ]
    }
}

/// A running capture. Dropping it detaches every program.
pub struct Capture {
    rings: Vec<AsyncFd<RingBuf<MapData>>>,
    counters: PerCpuArray<MapData, u64>,
    syscalls: Array<MapData, SyscallSpec>,
    path_filter: Array<MapData, PathFilter>,
    clock: Clock,
    poll: Option<tokio::time::Interval>,
    attached: Vec<&'static str>,
    missing_offsets: Vec<&'static str>,
    direct_fd_walk: bool,
    ring_bytes: u32,
    received: u64,
    decode_errors: u64,
    // Last: the programs (and their links) are dropped after the maps we read.
    _ebpf: Ebpf,
}

fn ring_name(i: u32) -> &'static str {
    ["EVENTS0", "EVENTS1", "EVENTS2", "EVENTS3"][i as usize]
}

impl Capture {
    /// Load, configure and attach. Must be called inside a tokio runtime (the ring
    /// buffers are registered with its reactor).
    pub fn start(cfg: CaptureConfig) -> Result<Self, CaptureError> {
        if !cfg.direct_fd_walk {
            return Self::start_with(&cfg, false);
        }
        match Self::start_with(&cfg, true) {
            // The direct descriptor walk (only sys_exit walks descriptors) depends on the
            // kernel's types agreeing with ours; a verifier that disagrees costs speed,
            // never the capture.
            Err(CaptureError::Program {
                name: name @ "sys_exit",
                source,
            }) => {
                tracing::warn!(
                    program = name,
                    error = %source,
                    "loading with the direct descriptor walk failed; retrying with helper reads"
                );
                Self::start_with(&cfg, false)
            }
            other => other,
        }
    }

    fn start_with(cfg: &CaptureConfig, direct_fd_walk: bool) -> Result<Self, CaptureError> {
        if EBPF_OBJECT.is_empty() {
            return Err(CaptureError::NoObject);
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(CaptureError::NoRuntime);
        }
        let page = page_size();
        if cfg.ring_bytes < page || !cfg.ring_bytes.is_power_of_two() {
            return Err(CaptureError::RingSize(cfg.ring_bytes));
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        // A power of two, so the kernel picks a ring with a mask.
        let nr_rings = prev_power_of_two(cfg.rings.unwrap_or(cpus).clamp(1, MAX_RINGS));

        let kernel_btf = btf::Btf::from_sys_fs().map_err(|e| CaptureError::Btf(e.to_string()))?;
        let resolved = offsets::resolve(&kernel_btf);
        drop(kernel_btf);
        let aya_btf = aya::Btf::from_sys_fs().map_err(|e| CaptureError::Btf(e.to_string()))?;

        let mut loader = EbpfLoader::new();
        loader.btf(Some(&aya_btf));
        // TASK_INFLIGHT is a task storage map, which aya creates but has no wrapper for.
        loader.allow_unsupported_maps();
        for i in 0..MAX_RINGS {
            // Unused rings get the minimum size.
            loader.map_max_entries(
                ring_name(i),
                if i < nr_rings { cfg.ring_bytes } else { page },
            );
        }
        let o = &resolved.offsets;
        let fd_walk = [FD_WALK_DIRECT, o.task_files, o.files_fdt, o.fdtable_fd];
        let direct_fd_walk = direct_fd_walk && !fd_walk.contains(&offsets::ABSENT);
        if direct_fd_walk {
            loader.override_global(FD_WALK_GLOBAL, &fd_walk, true);
        }
        let mut ebpf = loader.load(EBPF_OBJECT).map_err(CaptureError::Load)?;

        let self_tgid = if cfg.exclude_self {
            std::process::id()
        } else {
            0
        };
        {
            let map = ebpf
                .map_mut("CONFIG")
                .ok_or(CaptureError::MissingMap("CONFIG"))?;
            let mut config: Array<_, Config> =
                Array::try_from(map).map_err(|source| CaptureError::Map {
                    name: "CONFIG",
                    source,
                })?;
            let value = Config {
                self_tgid,
                nr_rings,
                wakeup_bytes: cfg.wakeup_bytes.min(cfg.ring_bytes / 4),
                capture_env: u32::from(cfg.capture_env),
                offsets: resolved.offsets,
            };
            config
                .set(0, value, 0)
                .map_err(|source| CaptureError::Map {
                    name: "CONFIG",
                    source,
                })?;
        }
        let syscalls = take_map(&mut ebpf, "SYSCALLS")?;
        let syscalls: Array<MapData, SyscallSpec> =
            Array::try_from(syscalls).map_err(|source| CaptureError::Map {
                name: "SYSCALLS",
                source,
            })?;
        let path_filter = take_map(&mut ebpf, "PATH_FILTER")?;
        let path_filter: Array<MapData, PathFilter> =
            Array::try_from(path_filter).map_err(|source| CaptureError::Map {
                name: "PATH_FILTER",
                source,
            })?;
        let counters = take_map(&mut ebpf, "COUNTERS")?;
        let counters: PerCpuArray<MapData, u64> =
            PerCpuArray::try_from(counters).map_err(|source| CaptureError::Map {
                name: "COUNTERS",
                source,
            })?;
        let mut rings = Vec::with_capacity(nr_rings as usize);
        for i in 0..nr_rings {
            let name = ring_name(i);
            let ring = RingBuf::try_from(take_map(&mut ebpf, name)?)
                .map_err(|source| CaptureError::Map { name, source })?;
            // SAFETY: the RingBuf owns its map fd, which stays open and unchanged until the
            // AsyncFd (and with it the RingBuf) is dropped.
            let fd =
                unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
                    .map_err(io::Error::from)?;
            rings.push(fd);
        }

        let mut capture = Capture {
            rings,
            counters,
            syscalls,
            path_filter,
            clock: Clock::now(),
            poll: (cfg.wakeup_bytes > 0).then(|| {
                let mut tick = tokio::time::interval(
                    cfg.poll_interval.max(std::time::Duration::from_micros(100)),
                );
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick
            }),
            attached: Vec::new(),
            missing_offsets: resolved.missing,
            direct_fd_walk,
            ring_bytes: cfg.ring_bytes,
            received: 0,
            decode_errors: 0,
            _ebpf: ebpf,
        };
        match &cfg.syscalls {
            Some(names) => capture.set_interesting(names)?,
            None => capture.set_all_interesting()?,
        };
        let btf_ref = &aya_btf;
        for name in PROGRAMS {
            let prog = capture
                ._ebpf
                .program_mut(name)
                .ok_or(CaptureError::MissingProgram(name))?;
            let prog: &mut BtfTracePoint = prog
                .try_into()
                .map_err(|source| CaptureError::Program { name, source })?;
            prog.load(name, btf_ref)
                .map_err(|source| CaptureError::Program { name, source })?;
            prog.attach()
                .map_err(|source| CaptureError::Program { name, source })?;
            capture.attached.push(name);
        }
        Ok(capture)
    }

    /// Capture exactly these syscalls (Falco `evt.type` names); every other syscall is
    /// dropped in the kernel. Unknown names are reported back, not an error.
    pub fn set_interesting<S: AsRef<str>>(
        &mut self,
        names: &[S],
    ) -> Result<Interest, CaptureError> {
        let wanted: HashSet<&str> = names.iter().map(AsRef::as_ref).collect();
        let mut interest = Interest::default();
        for name in &wanted {
            if syscalls::by_name(name).is_none() {
                interest.unsupported.push((*name).to_string());
            }
        }
        interest.unsupported.sort();
        for def in syscalls::SYSCALLS {
            let spec = if wanted.contains(def.name) {
                interest.enabled.push(def.name);
                syscalls::spec_of(def)
            } else {
                SyscallSpec::default()
            };
            self.syscalls
                .set(u32::from(def.nr), spec, 0)
                .map_err(|source| CaptureError::Map {
                    name: "SYSCALLS",
                    source,
                })?;
        }
        Ok(interest)
    }

    /// Keep opens of paths no rule can match in the kernel (`None`: send every open).
    /// Takes effect for opens that start after the call.
    pub fn set_path_filter(
        &mut self,
        filter: Option<&aerie_rules::OpenPathFilter>,
    ) -> Result<(), CaptureError> {
        let value = match filter {
            Some(f) => path_filter::encode(f)?,
            None => PathFilter::disabled(),
        };
        self.path_filter
            .set(0, value, 0)
            .map_err(|source| CaptureError::Map {
                name: "PATH_FILTER",
                source,
            })
    }

    /// Capture every supported syscall.
    pub fn set_all_interesting(&mut self) -> Result<Interest, CaptureError> {
        let all: Vec<&str> = syscalls::SYSCALLS.iter().map(|d| d.name).collect();
        self.set_interesting(&all)
    }

    /// Wait until at least one record is available, then drain every ring buffer into
    /// `out` (appended), sorted by kernel timestamp. Returns how many events were added.
    /// A record waits at most `poll_interval` (or until `wakeup_bytes` accumulate).
    /// Records that fail to decode are counted in [`Counters::decode_errors`] and skipped.
    pub async fn next_batch(&mut self, out: &mut Vec<Event>) -> Result<usize, CaptureError> {
        loop {
            let start = out.len();
            self.drain(out);
            if out.len() > start {
                out[start..].sort_by_key(|e| e.boot_ns);
                return Ok(out.len() - start);
            }
            // Nothing buffered: wait for any ring to become readable (or the poll tick, for
            // records below the wake-up threshold), clear readiness, then drain again
            // (clearing before draining loses no wake-up).
            let rings = &mut self.rings;
            let poll = &mut self.poll;
            std::future::poll_fn(|cx| {
                let mut ready = poll.as_mut().is_some_and(|t| t.poll_tick(cx).is_ready());
                for ring in rings.iter_mut() {
                    match ring.poll_read_ready_mut(cx) {
                        Poll::Ready(Ok(mut guard)) => {
                            guard.clear_ready();
                            ready = true;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {}
                    }
                }
                if ready {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            })
            .await?;
        }
    }

    /// Read whatever is buffered now, without waiting. Returns how many events were added.
    pub fn drain(&mut self, out: &mut Vec<Event>) -> usize {
        let start = out.len();
        for ring in &mut self.rings {
            let ring = ring.get_mut();
            while let Some(item) = ring.next() {
                self.received += 1;
                match decode::decode(&item, &self.clock) {
                    Ok(ev) => out.push(ev),
                    Err(e) => {
                        self.decode_errors += 1;
                        if self.decode_errors <= 10 {
                            tracing::warn!(error = %e, "skipping undecodable kernel record");
                        }
                    }
                }
            }
        }
        out.len() - start
    }

    /// Kernel counters (summed over CPUs) and user-side counters.
    pub fn counters(&self) -> Result<Counters, CaptureError> {
        let get = |idx: u32| -> Result<u64, CaptureError> {
            let values = self
                .counters
                .get(&idx, 0)
                .map_err(|source| CaptureError::Map {
                    name: "COUNTERS",
                    source,
                })?;
            Ok(values.iter().sum())
        };
        Ok(Counters {
            sent: get(counter::SENT)?,
            drop_ring_full: get(counter::DROP_RING_FULL)?,
            drop_inflight_full: get(counter::DROP_INFLIGHT_FULL)?,
            drop_no_scratch: get(counter::DROP_NO_SCRATCH)?,
            no_entry: get(counter::NO_ENTRY)?,
            truncated: get(counter::TRUNCATED)?,
            received: self.received,
            decode_errors: self.decode_errors,
            filtered_opens: get(counter::FILTERED_OPEN)?,
            filtered_closes: get(counter::FILTERED_CLOSE)?,
        })
    }

    /// Programs attached, in order (for the start-up banner).
    pub fn attached_programs(&self) -> &[&'static str] {
        &self.attached
    }

    /// Kernel ids of the loaded programs (as `bpftool prog show` lists them).
    pub fn program_ids(&self) -> Vec<u32> {
        self._ebpf
            .programs()
            .filter_map(|(_, p)| p.info().ok().map(|i| i.id()))
            .collect()
    }

    /// Bytes per ring buffer.
    pub fn ring_bytes(&self) -> u32 {
        self.ring_bytes
    }

    /// Number of ring buffers read.
    pub fn ring_count(&self) -> usize {
        self.rings.len()
    }

    /// Whether the programs walk descriptor tables with direct loads (see
    /// [`CaptureConfig::direct_fd_walk`]) rather than helper reads.
    pub fn direct_fd_walk(&self) -> bool {
        self.direct_fd_walk
    }

    /// Kernel struct members this kernel lacks (the dependent fields stay empty).
    pub fn missing_offsets(&self) -> &[&'static str] {
        &self.missing_offsets
    }

    /// The boot-time to wall-clock conversion used for `Event::ts`.
    pub fn clock(&self) -> Clock {
        self.clock
    }
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, CaptureError> {
    ebpf.take_map(name).ok_or(CaptureError::MissingMap(name))
}

fn prev_power_of_two(n: u32) -> u32 {
    if n == 0 {
        1
    } else {
        1 << (31 - n.leading_zeros())
    }
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u32 } else { 4096 }
}

/// Highest syscall number the kernel table holds (for callers validating numbers).
pub const MAX_SYSCALL_NR: u32 = MAX_SYSCALLS - 1;
