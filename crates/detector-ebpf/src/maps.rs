//! Maps shared by all programs, and the helpers that write to the ring buffers.

use aya_ebpf::{
    helpers::generated::bpf_get_smp_processor_id,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use detector_common::{
    Config, EventHeader, MAX_RINGS, MAX_SYSCALLS, ProcInfo, SyscallSpec, VAR_CAP, counter,
};

/// Default ring size; user space overrides it with `set_max_entries` at load time.
const RING_BYTES: u32 = 1 << 22;

#[map]
pub static EVENTS0: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);
#[map]
pub static EVENTS1: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);
#[map]
pub static EVENTS2: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);
#[map]
pub static EVENTS3: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Entry 0: runtime config and kernel offsets.
#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Per syscall number: enabled / capture-at-entry / argument kinds.
#[map]
pub static SYSCALLS: Array<SyscallSpec> = Array::with_max_entries(MAX_SYSCALLS, 0);

/// Per-CPU counters, indexed by `detector_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// A syscall record under construction: header + twice the var capacity so that a bounded
/// write at any offset below `VAR_CAP` stays inside the buffer (verifier-friendly).
#[repr(C)]
pub struct SysScratch {
    pub hdr: EventHeader,
    pub var: [u8; 2 * VAR_CAP],
}

/// What the in-flight map stores between entry and exit: header + `VAR_CAP` bytes.
#[repr(C)]
pub struct Inflight {
    pub hdr: EventHeader,
    pub var: [u8; VAR_CAP],
}

/// A process lifecycle record under construction.
#[repr(C)]
pub struct ProcScratch {
    pub hdr: EventHeader,
    pub info: ProcInfo,
    pub var: [u8; 2 * VAR_CAP],
}

#[map]
pub static SYS_SCRATCH: PerCpuArray<SysScratch> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static PROC_SCRATCH: PerCpuArray<ProcScratch> = PerCpuArray::with_max_entries(1, 0);

/// BPF_F_NO_PREALLOC: memory is only used by syscalls actually in flight.
const BPF_F_NO_PREALLOC: u32 = 1;

/// Syscalls blocked between entry and exit at once (e.g. slow connects): memory is at most
/// `INFLIGHT_MAX * size_of::<Inflight>()` (~136 MiB), normally a few KiB. Beyond it the
/// exit is still sent, flagged NO_ENTRY, and counted as DROP_INFLIGHT_FULL.
const INFLIGHT_MAX: u32 = 16384;

/// tid -> entry-captured syscall, completed and sent at exit.
#[map]
pub static INFLIGHT: HashMap<u32, Inflight> =
    HashMap::with_max_entries(INFLIGHT_MAX, BPF_F_NO_PREALLOC);

#[inline(always)]
pub fn count(idx: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
pub fn config() -> Option<&'static Config> {
    CONFIG.get(0)
}

/// The ring buffer this CPU writes to.
#[inline(always)]
pub fn ring(cfg: &Config) -> &'static RingBuf {
    // SAFETY: helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    // nr_rings is a power of two <= MAX_RINGS (user space guarantees it): mask, no division.
    match cpu & (cfg.nr_rings.wrapping_sub(1) & (MAX_RINGS - 1)) {
        0 => &EVENTS0,
        1 => &EVENTS1,
        2 => &EVENTS2,
        _ => &EVENTS3,
    }
}

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// Wake the reader only when enough data waits (see `Config::wakeup_bytes`).
#[inline(always)]
fn wakeup_flag(cfg: &Config, ring: &RingBuf) -> u64 {
    if cfg.wakeup_bytes == 0 {
        return 0;
    }
    if ring.query(BPF_RB_AVAIL_DATA) >= cfg.wakeup_bytes as u64 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// Copy `len` bytes at `data` into this CPU's ring and count the outcome.
#[inline(always)]
pub fn output(cfg: &Config, data: *const u8, len: usize) {
    // SAFETY: callers bound `len` by the size of the buffer behind `data`.
    let bytes = unsafe { core::slice::from_raw_parts(data, len) };
    let ring = ring(cfg);
    match ring.output::<[u8]>(bytes, wakeup_flag(cfg, ring)) {
        Ok(()) => count(counter::SENT),
        Err(_) => count(counter::DROP_RING_FULL),
    }
}

/// Send a fixed-size header-only record with reserve/submit (no copy).
#[inline(always)]
pub fn submit_header(cfg: &Config, hdr: &EventHeader) {
    let ring = ring(cfg);
    match ring.reserve::<EventHeader>(0) {
        Some(mut entry) => {
            entry.write(*hdr);
            entry.submit(wakeup_flag(cfg, ring));
            count(counter::SENT);
        }
        None => count(counter::DROP_RING_FULL),
    }
}

/// A header + ProcInfo record, reserve/submit.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ProcRecord {
    pub hdr: EventHeader,
    pub info: ProcInfo,
}

#[inline(always)]
pub fn submit_proc(cfg: &Config, rec: &ProcRecord) {
    let ring = ring(cfg);
    match ring.reserve::<ProcRecord>(0) {
        Some(mut entry) => {
            entry.write(*rec);
            entry.submit(wakeup_flag(cfg, ring));
            count(counter::SENT);
        }
        None => count(counter::DROP_RING_FULL),
    }
}
