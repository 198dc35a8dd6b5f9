//! In-kernel open filtering (`detector_common::PathFilter`): an open whose path no rule can
//! match, and later the close of its descriptor, never leave the kernel.
//!
//! The path test is word-at-a-time (SWAR) over the task slot the path was read into: every
//! byte loop here would cost more than the event it saves.

use aya_ebpf::helpers::generated::bpf_get_current_task_btf;
use detector_common::{
    FD_BITS_FDS, FD_BITS_SLOTS, FD_WALK_DIRECT, KernelOffsets, PF_MAX_PATH, PF_PREFIXES,
    PF_SUFFIXES, PathFilter, spec,
};

use crate::{
    maps::{FD_BITS, zero},
    task::{ABSENT, ptr, read},
};

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
/// Words of the path buffer (512 bytes); indexes are masked to stay inside it.
const WORDS: usize = 64;

/// High bit set in each byte of `x` that is zero (exact, no false positives).
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

#[inline(always)]
fn eq_bytes(w: u64, c: u8) -> u64 {
    zero_bytes(w ^ ONES.wrapping_mul(c as u64))
}

/// Aligned word `i` of the 512-byte, 8-byte-aligned buffer at `p`.
#[inline(always)]
fn word(p: *const u8, i: usize) -> u64 {
    // SAFETY: (i % WORDS) * 8 + 8 <= 512: inside the buffer, aligned.
    unsafe { core::ptr::read_volatile(p.add((i & (WORDS - 1)) * 8).cast::<u64>()) }
}

/// The 8 bytes at `off` (may be negative or unaligned); bytes before the buffer read as 0.
#[inline(always)]
fn bytes_at(p: *const u8, off: isize) -> u64 {
    if off <= -8 {
        return 0;
    }
    if off < 0 {
        return word(p, 0) << (8 * (-off) as u64);
    }
    let (i, sh) = ((off as usize) / 8, (off as usize) % 8);
    if sh == 0 {
        word(p, i)
    } else {
        (word(p, i) >> (8 * sh as u64)) | (word(p, i + 1) << (64 - 8 * sh as u64))
    }
}

/// True when the path at `p` must reach user space whatever the filter says: not absolute,
/// not in normal form (`//`, `/.`, `..`: fd.name would differ from the raw text, e.g.
/// `/tmp/../etc/shadow`), or ending in `/`. The caller has bounded its length.
///
/// The loop stops at the word holding the NUL, a test on the data: a test on the length
/// would give the verifier one state per possible length and blow its budget.
#[inline(always)]
fn must_send(p: *const u8) -> bool {
    let mut cur = word(p, 0);
    if cur & 0xff != b'/' as u64 {
        return true;
    }
    let mut i = 0;
    while i < PF_MAX_PATH.div_ceil(8) {
        let after = word(p, i + 1);
        // Byte j of `next` is the byte after byte j of `cur`.
        let next = (cur >> 8) | (after << 56);
        let nul = zero_bytes(cur);
        // Bytes before the first NUL (all when there is none); past it lie stale bytes.
        let first_nul = nul & nul.wrapping_neg();
        let valid = (first_nul >> 7).wrapping_sub(1);
        let slash = eq_bytes(cur, b'/');
        let bad = (slash & (eq_bytes(next, b'/') | eq_bytes(next, b'.') | zero_bytes(next)))
            | (eq_bytes(cur, b'.') & eq_bytes(next, b'.'));
        if bad & valid != 0 {
            return true;
        }
        if nul != 0 {
            return false;
        }
        cur = after;
        i += 1;
    }
    true
}

/// True when some prefix or suffix of the filter matches the path.
#[inline(always)]
fn matches(pf: &PathFilter, p: *const u8, len: usize) -> bool {
    // Prefixes: bytes past the NUL are stale, but a prefix longer than the path already
    // differs at the NUL (prefixes hold no NUL), so no length check is needed.
    let w = [word(p, 0), word(p, 1), word(p, 2), word(p, 3)];
    let mut k = 0;
    while k < PF_PREFIXES {
        if k as u32 >= pf.n_prefixes {
            break;
        }
        let (v, m) = (&pf.prefix[k], &pf.prefix_mask[k]);
        if w[0] & m[0] == v[0] && w[1] & m[1] == v[1] && w[2] & m[2] == v[2] && w[3] & m[3] == v[3]
        {
            return true;
        }
        k += 1;
    }
    // Suffixes: the last 16 bytes, right-aligned like the filter's.
    let end = len as isize;
    let lo = bytes_at(p, end - 16);
    let hi = bytes_at(p, end - 8);
    let mut k = 0;
    while k < PF_SUFFIXES {
        if k as u32 >= pf.n_suffixes {
            break;
        }
        let (v, m) = (&pf.suffix[k], &pf.suffix_mask[k]);
        if lo & m[0] == v[0] && hi & m[1] == v[1] {
            return true;
        }
        k += 1;
    }
    false
}

/// Whether an open of the path at `p` (`len` bytes, no NUL, at most PF_MAX_PATH) may stay
/// in the kernel.
#[inline(always)]
pub fn keep_in_kernel(pf: &PathFilter, p: *const u8, len: usize) -> bool {
    pf.enabled != 0 && !must_send(p) && !matches(pf, p, len)
}

/// Whether an open with these arguments may have returned a directory: not when it was for
/// writing or creating (the kernel answers EISDIR), which skips six dependent kernel reads.
/// O_PATH ignores the access mode and O_CREAT, so it may always be a directory.
#[inline(always)]
pub fn may_be_dir(capture_entry: u8, args: &[u64; 6]) -> bool {
    const O_ACCMODE: u64 = 0o3;
    const O_CREAT: u64 = 0o100;
    const O_PATH: u64 = 0o10000000;
    let which = (capture_entry >> spec::OPEN_FLAGS_SHIFT) & 7;
    if which == spec::OPEN_NEVER_DIR {
        return false;
    }
    if which == 0 || which > 6 {
        return true;
    }
    let flags = args[((which - 1) & 7) as usize % 6];
    flags & O_PATH != 0 || (flags & O_ACCMODE == 0 && flags & O_CREAT == 0)
}

/// `[FD_WALK_DIRECT, task_struct.files, files_struct.fdt, fdtable.fd]` when the loader
/// turned the direct walk on (see `detector_common::FD_WALK_GLOBAL`). Non-zero defaults
/// keep it in `.rodata`, which the verifier reads as constants once the map is frozen.
#[unsafe(no_mangle)]
static FD_WALK: [u32; 4] = [u32::MAX; 4];

#[inline(always)]
fn fd_walk(i: usize) -> u32 {
    // SAFETY: a read of our own static; volatile so that LLVM keeps the load (the value is
    // only known at load time).
    unsafe { core::ptr::read_volatile(&FD_WALK[i & 3]) }
}

/// The current task's descriptor array (`current->files->fdt->fd`), 0 when unknown.
#[inline(always)]
fn fd_array(off: &KernelOffsets, task: u64) -> u64 {
    if fd_walk(0) == FD_WALK_DIRECT {
        // Direct loads from the BTF-typed task: the verifier checks each offset against the
        // kernel's types and the JIT emits plain loads with fault fixup, instead of three
        // helper calls (≈ 90 ns less per open, measured with bpf_stats on a 2-vCPU VM).
        // SAFETY: the helper takes no arguments; the pointer is only dereferenced by
        // verifier-checked loads, which read 0 if a pointer is NULL or bad.
        unsafe {
            let task = bpf_get_current_task_btf() as *const u8;
            let files = core::ptr::read_volatile(task.add(fd_walk(1) as usize).cast::<*const u8>());
            if files.is_null() {
                return 0;
            }
            let fdt = core::ptr::read_volatile(files.add(fd_walk(2) as usize).cast::<*const u8>());
            if fdt.is_null() {
                return 0;
            }
            return core::ptr::read_volatile(fdt.add(fd_walk(3) as usize).cast::<u64>());
        }
    }
    if off.fdtable_fd == ABSENT {
        return 0;
    }
    let files = ptr(task, off.task_files);
    let fdt = ptr(files, off.files_fdt);
    ptr(fdt, off.fdtable_fd)
}

/// The `struct file *` of descriptor `fd` of the current task, 0 when unknown.
#[inline(always)]
pub fn fd_file(off: &KernelOffsets, task: u64, fd: i64) -> u64 {
    let array = fd_array(off, task);
    if array == 0 || fd < 0 {
        return 0;
    }
    ptr(array + ((fd as u64) & 0xffff_ffff) * 8, 0)
}

/// Whether descriptor `fd` of the current task is a directory (or cannot be told).
/// Directories always reach user space: `openat(dirfd, ...)` and `fchdir` resolve through them.
#[inline(always)]
pub fn is_dir_or_unknown(off: &KernelOffsets, task: u64, fd: i64) -> bool {
    if off.inode_i_mode == ABSENT {
        return true;
    }
    let file = fd_file(off, task, fd);
    if file == 0 {
        return true;
    }
    let inode = ptr(file, off.file_f_inode);
    const S_IFMT: u16 = 0o170000;
    const S_IFDIR: u16 = 0o040000;
    match read::<u16>(inode, off.inode_i_mode) {
        Some(mode) => mode & S_IFMT == S_IFDIR,
        None => true,
    }
}

#[inline(always)]
fn slot(tgid: u32) -> Option<&'static mut detector_common::FdBits> {
    let p = FD_BITS.get_ptr_mut(tgid & (FD_BITS_SLOTS - 1))?;
    // SAFETY: an array slot; concurrent writers are threads of one process or colliding
    // processes, where a lost update only makes a close be sent (see FdBits).
    Some(unsafe { &mut *p })
}

#[inline(always)]
fn bit(fd: i64) -> Option<(usize, u64)> {
    if fd < 0 || fd >= FD_BITS_FDS as i64 {
        return None;
    }
    Some((((fd as usize) >> 6) & 3, 1u64 << (fd as u64 & 63)))
}

/// Remember that `fd` of process `tgid` came from a filtered open.
#[inline(always)]
pub fn mark_filtered(tgid: u32, fd: i64) {
    let Some((w, b)) = bit(fd) else { return };
    let Some(s) = slot(tgid) else { return };
    if s.tgid != tgid {
        zero(&mut s.bits);
        s.tgid = tgid;
    }
    s.bits[w] |= b;
}

/// Forget `fd` of `tgid`; true when it came from a filtered open (its close stays here).
#[inline(always)]
pub fn take_filtered(tgid: u32, fd: i64) -> bool {
    let Some((w, b)) = bit(fd) else { return false };
    let Some(s) = slot(tgid) else { return false };
    if s.tgid != tgid || s.bits[w] & b == 0 {
        return false;
    }
    s.bits[w] &= !b;
    true
}

/// A new process starts with no filtered descriptors (its tgid may be a dead one's).
#[inline(always)]
pub fn reset(tgid: u32) {
    if let Some(s) = slot(tgid)
        && s.tgid == tgid
    {
        s.tgid = 0;
    }
}
