//! Maps shared by all programs, and the helpers that write to the ring buffers.

use aya_ebpf::{
    helpers::generated::{
        bpf_get_current_task_btf, bpf_get_smp_processor_id, bpf_task_storage_get,
    },
    macros::{btf_map, map},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use detector_common::{
    Config, EventHeader, FD_BITS_SLOTS, FdBits, MAX_RINGS, MAX_SYSCALLS, PathFilter, ProcInfo,
    SyscallSpec, VAR_CAP, counter,
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

/// Entry 0: which opens may stay in the kernel (filled from the rules by user space).
#[map]
pub static PATH_FILTER: Array<PathFilter> = Array::with_max_entries(1, 0);

/// Per process (slot `tgid % FD_BITS_SLOTS`, tagged): descriptors of filtered opens.
/// An array, not a hash: the lookup is inlined by the verifier, and a slot taken over by a
/// colliding process only makes closes be sent.
#[map]
pub static FD_BITS: Array<FdBits> = Array::with_max_entries(FD_BITS_SLOTS, 0);

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

/// What the in-flight maps store between entry and exit: header + `N` bytes of var data.
/// Inserting copies the whole value, so most entries go to the small map: an 8 KiB value
/// cost more to copy (and allocate) than the rest of the entry program.
#[repr(C)]
pub struct Inflight<const N: usize> {
    pub hdr: EventHeader,
    pub var: [u8; N],
}

/// Var bytes of a small in-flight entry: one or two ordinary paths or a socket address.
pub const SMALL_VAR: usize = 512;
pub type InflightSmall = Inflight<SMALL_VAR>;
pub type InflightBig = Inflight<VAR_CAP>;

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

/// A BPF_MAP_TYPE_TASK_STORAGE definition (aya-ebpf has none), BTF-defined as the kernel
/// requires: one value per task, created on first use, freed with the task.
#[repr(C)]
pub struct TaskStorage<V> {
    r#type: *const [i32; 29],
    key: *const i32,
    value: *const V,
    max_entries: *const [i32; 0],
    /// BPF_F_NO_PREALLOC, required for local storage.
    map_flags: *const [i32; 1],
}

// SAFETY: placeholder pointers patched by the loader, never dereferenced.
unsafe impl<V> Sync for TaskStorage<V> {}

const BPF_LOCAL_STORAGE_GET_F_CREATE: u64 = 1;

impl<V> TaskStorage<V> {
    pub const fn new() -> Self {
        Self {
            r#type: core::ptr::null(),
            key: core::ptr::null(),
            value: core::ptr::null(),
            max_entries: core::ptr::null(),
            map_flags: core::ptr::null(),
        }
    }

    /// The current task's value, created zeroed when `create` and absent.
    #[inline(always)]
    pub fn current(&self, create: bool) -> Option<&'static mut V> {
        let flags = if create {
            BPF_LOCAL_STORAGE_GET_F_CREATE
        } else {
            0
        };
        // SAFETY: helpers on the current task (a trusted BTF pointer); the value pointer
        // is the task's own storage, only used by this task's programs.
        unsafe {
            let p = bpf_task_storage_get(
                (self as *const Self).cast_mut().cast(),
                bpf_get_current_task_btf(),
                core::ptr::null_mut(),
                flags,
            );
            p.cast::<V>().as_mut()
        }
    }
}

/// The current task's entry-captured syscall when its var data fits `SMALL_VAR`: a task
/// storage slot is found from the task itself and reused from one syscall to the next, so
/// an entry costs no hash insert, allocation or delete. `hdr.kind` is PENDING while set.
#[btf_map]
pub static TASK_INFLIGHT: TaskStorage<InflightSmall> = TaskStorage::new();

/// `hdr.kind` of a TASK_INFLIGHT value waiting for its exit (0 = free).
pub const PENDING: u16 = 0xffff;
/// `hdr.kind` of an open the path filter keeps in the kernel, waiting for its exit.
pub const FILTERED: u16 = 0xfffe;

/// Large entry captures blocked between entry and exit at once (e.g. slow connects): memory
/// is at most `INFLIGHT_MAX * 8.3 KiB` (~136 MiB), normally none. Beyond it the exit is
/// still sent, flagged NO_ENTRY, and counted as DROP_INFLIGHT_FULL.
const INFLIGHT_MAX: u32 = 16384;

/// tid -> entry-captured syscall with more var data (long paths, argv).
#[map]
pub static INFLIGHT_BIG: HashMap<u32, InflightBig> =
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

/// Bytes a record of `len` bytes takes in a ring: an 8-byte header, 8-byte aligned.
#[inline(always)]
fn ring_size(len: u64) -> u64 {
    (len + 8 + 7) & !7
}

/// Wake-up flag for a record of `len` bytes when `before` bytes already wait in the ring.
/// Only the record that makes the backlog cross `Config::wakeup_bytes` wakes the reader:
/// a wake-up is an irq_work self-IPI (a VM exit under KVM), and waking on every record
/// past the threshold cost more than the rest of the program until the reader caught up.
/// A missed crossing (two CPUs on one ring) only waits for the reader's poll timer.
#[inline(always)]
fn wakeup_flag(cfg: &Config, before: u64, len: u64) -> u64 {
    let thr = cfg.wakeup_bytes as u64;
    if thr == 0 {
        return 0;
    }
    if before < thr && before + ring_size(len) >= thr {
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
    let before = if cfg.wakeup_bytes == 0 {
        0
    } else {
        ring.query(BPF_RB_AVAIL_DATA)
    };
    match ring.output::<[u8]>(bytes, wakeup_flag(cfg, before, len as u64)) {
        Ok(()) => count(counter::SENT),
        Err(_) => count(counter::DROP_RING_FULL),
    }
}

/// Reserve a fixed-size `T` record in this CPU's ring, let `fill` write it in place (no
/// stack copy: bpf-linker turns struct copies into byte-at-a-time memmove loops), submit.
/// `fill` must write every field.
#[inline(always)]
pub fn submit_with<T: 'static>(cfg: &Config, fill: impl FnOnce(&mut T)) {
    let ring = ring(cfg);
    match ring.reserve::<T>(0) {
        Some(mut entry) => {
            // SAFETY: ring memory of size_of::<T>() bytes, ours until submit; `fill` writes
            // every field (callers zero the record first).
            fill(unsafe { &mut *entry.as_mut_ptr() });
            let len = core::mem::size_of::<T>() as u64;
            let before = if cfg.wakeup_bytes == 0 {
                0
            } else {
                // The reserved record already counts as waiting.
                ring.query(BPF_RB_AVAIL_DATA).saturating_sub(ring_size(len))
            };
            entry.submit(wakeup_flag(cfg, before, len));
            count(counter::SENT);
        }
        None => count(counter::DROP_RING_FULL),
    }
}

/// Zero `T` with 8-byte volatile stores: a plain `= zeroed()` or `[0; N]` becomes a call to
/// the byte-at-a-time memset subprogram.
#[inline(always)]
pub fn zero<T>(v: &mut T) {
    const { assert!(core::mem::size_of::<T>() % 8 == 0) };
    let p = (v as *mut T).cast::<u64>();
    let mut i = 0;
    while i < core::mem::size_of::<T>() / 8 {
        // SAFETY: inside `v`, which is 8-byte aligned (all our records are).
        unsafe { core::ptr::write_volatile(p.add(i), 0) };
        i += 1;
    }
}

/// A header + ProcInfo record.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ProcRecord {
    pub hdr: EventHeader,
    pub info: ProcInfo,
}
