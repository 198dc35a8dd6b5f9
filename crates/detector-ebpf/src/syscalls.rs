//! `sys_enter` / `sys_exit`: one record per wanted syscall, sent at exit.
//!
//! Syscalls with entry-captured arguments (paths, socket addresses, argv) are recorded at
//! entry in `INFLIGHT` (keyed by tid) and completed with the return value at exit, so a
//! user who rewrites the buffer during the syscall cannot change what we report.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::generated::{bpf_probe_read_kernel, bpf_probe_read_user, bpf_probe_read_user_str},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use core::ffi::c_void;
use detector_common::{
    ARGV_CAP, ARGV_MAX_ARGS, ArgKind, Config, EventHeader, EventKind, MAX_SYSCALLS, PF_MAX_PATH,
    SOCKADDR_CAP, STR_CAP, SyscallSpec, VAR_CAP, counter, flags, slot, spec,
};

use crate::{
    filter,
    maps::{
        FILTERED, INFLIGHT_BIG, Inflight, InflightBig, InflightSmall, PATH_FILTER, PENDING,
        SMALL_VAR, SYS_SCRATCH, SYSCALLS, SysScratch, TASK_INFLIGHT, config, count, output,
        submit_with, zero,
    },
    task::{current_task, fill_header, ptr, read},
};

const BPF_ANY: u64 = 0;
const HDR: usize = core::mem::size_of::<EventHeader>();

#[inline(always)]
fn spec(nr: u64) -> Option<&'static SyscallSpec> {
    if nr >= MAX_SYSCALLS as u64 {
        return None;
    }
    let s = SYSCALLS.get(nr as u32)?;
    if s.enabled & spec::ENABLED == 0 {
        None
    } else {
        Some(s)
    }
}

#[inline(always)]
fn reg(p: *const u64) -> u64 {
    // SAFETY: `p` points into the tracepoint's `struct pt_regs *` argument, which tp_btf
    // types as a trusted BTF pointer: the verifier checks the field against the kernel's
    // BTF and turns this into a fault-tolerant load, much cheaper than a helper call.
    unsafe { core::ptr::read_volatile(p) }
}

/// x86_64 syscall arguments: rdi, rsi, rdx, r10, r8, r9.
#[inline(always)]
fn syscall_args(regs: *const pt_regs) -> [u64; 6] {
    // SAFETY: only addresses are computed here; reads go through bpf_probe_read_kernel.
    unsafe {
        [
            reg(&raw const (*regs).rdi),
            reg(&raw const (*regs).rsi),
            reg(&raw const (*regs).rdx),
            reg(&raw const (*regs).r10),
            reg(&raw const (*regs).r8),
            reg(&raw const (*regs).r9),
        ]
    }
}

#[inline(always)]
fn self_excluded(cfg: &Config) -> bool {
    excluded(cfg, aya_ebpf::helpers::bpf_get_current_pid_tgid())
}

/// Whether `pid_tgid` (from `bpf_get_current_pid_tgid`) is the detector's own process.
#[inline(always)]
fn excluded(cfg: &Config, pid_tgid: u64) -> bool {
    cfg.self_tgid != 0 && (pid_tgid >> 32) as u32 == cfg.self_tgid
}

/// Append a user string at `*pos` (bounded by STR_CAP and the space left).
#[inline(always)]
fn put_user_str(var: *mut u8, pos: &mut usize, src: u64, fl: &mut u16) -> u16 {
    if src == 0 || *pos >= VAR_CAP {
        return 0;
    }
    let at = *pos & (VAR_CAP - 1);
    let mut cap = VAR_CAP - at;
    if cap > STR_CAP {
        cap = STR_CAP;
    }
    // SAFETY: at < VAR_CAP, cap <= STR_CAP: inside the 2 * VAR_CAP buffer.
    let n =
        unsafe { bpf_probe_read_user_str(var.add(at).cast(), cap as u32, src as *const c_void) };
    if n <= 0 {
        *fl |= flags::READ_FAILED;
        return 0;
    }
    let n = (n as usize) & (VAR_CAP - 1);
    if n >= cap {
        *fl |= flags::TRUNCATED;
    }
    *pos += n;
    n as u16
}

/// Append `len` bytes of user memory at `*pos` (bounded by SOCKADDR_CAP and the space left).
#[inline(always)]
fn put_user_bytes(var: *mut u8, pos: &mut usize, src: u64, len: u64, fl: &mut u16) -> u16 {
    if src == 0 || len == 0 || *pos >= VAR_CAP - SOCKADDR_CAP {
        return 0;
    }
    let mut len = len as usize;
    if len > SOCKADDR_CAP {
        len = SOCKADDR_CAP;
        *fl |= flags::TRUNCATED;
    }
    let at = *pos & (VAR_CAP - 1);
    // SAFETY: at < VAR_CAP, len <= SOCKADDR_CAP: inside the buffer.
    let rc = unsafe { bpf_probe_read_user(var.add(at).cast(), len as u32, src as *const c_void) };
    if rc != 0 {
        *fl |= flags::READ_FAILED;
        return 0;
    }
    *pos += len;
    len as u16
}

#[inline(always)]
fn read_user_u64(addr: u64) -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: 8-byte read into a stack slot.
    let rc = unsafe { bpf_probe_read_user((&mut v as *mut u64).cast(), 8, addr as *const c_void) };
    if rc == 0 { Some(v) } else { None }
}

#[inline(always)]
fn read_user_u32(addr: u64) -> Option<u32> {
    let mut v = 0u32;
    // SAFETY: 4-byte read into a stack slot.
    let rc = unsafe { bpf_probe_read_user((&mut v as *mut u32).cast(), 4, addr as *const c_void) };
    if rc == 0 { Some(v) } else { None }
}

/// argv strings back to back (each NUL-terminated), at most ARGV_MAX_ARGS / ARGV_CAP bytes.
#[inline(always)]
fn put_argv(var: *mut u8, pos: &mut usize, argv: u64, fl: &mut u16) -> u16 {
    let start = *pos;
    if argv == 0 {
        return 0;
    }
    for i in 0..ARGV_MAX_ARGS {
        let Some(p) = read_user_u64(argv + 8 * i as u64) else {
            *fl |= flags::READ_FAILED;
            break;
        };
        if p == 0 {
            break;
        }
        if *pos - start >= ARGV_CAP || *pos >= VAR_CAP {
            *fl |= flags::TRUNCATED;
            break;
        }
        if put_user_str(var, pos, p, fl) == 0 {
            break;
        }
        if i == ARGV_MAX_ARGS - 1 {
            *fl |= flags::TRUNCATED;
        }
    }
    (*pos - start) as u16
}

#[btf_tracepoint(function = "sys_enter")]
pub fn sys_enter(ctx: BtfTracePointContext) -> i32 {
    let _ = try_enter(&ctx);
    0
}

#[inline(always)]
fn try_enter(ctx: &BtfTracePointContext) -> Option<()> {
    let nr: u64 = ctx.arg(1);
    let sp = spec(nr)?;
    if sp.capture_entry == 0 {
        return None;
    }
    let cfg = config()?;
    if self_excluded(cfg) {
        return None;
    }
    let regs: *const pt_regs = ctx.arg(0);
    if sp.enabled & spec::PATH_FILTER != 0 && enter_open(sp, nr, regs).is_some() {
        return Some(());
    }
    let Some(s) = SYS_SCRATCH.get_ptr_mut(0) else {
        count(counter::DROP_NO_SCRATCH);
        return None;
    };
    // SAFETY: per-CPU scratch, exclusively ours for this program run.
    let s: &mut SysScratch = unsafe { &mut *s };
    let args = syscall_args(regs);
    s.hdr.args = args;
    s.hdr.syscall_nr = nr as u16;
    zero(&mut s.hdr.var_len);
    let var = s.var.as_mut_ptr();
    let mut pos = 0usize;
    let mut fl = 0u16;
    let mut argv = 0u64;
    let kinds = sp.kinds;
    let mut i = 0;
    while i < 6 {
        let k = kinds[i];
        let n = if k == ArgKind::Str as u8 {
            put_user_str(var, &mut pos, args[i], &mut fl)
        } else if k == ArgKind::Sockaddr as u8 {
            let len = if i < 5 { args[i + 1] } else { 0 };
            put_user_bytes(var, &mut pos, args[i], len, &mut fl)
        } else if k == ArgKind::Msghdr as u8 {
            // struct user_msghdr (uapi): msg_name at 0, msg_namelen at 8.
            let name = read_user_u64(args[i]).unwrap_or(0);
            let len = read_user_u32(args[i] + 8).unwrap_or(0) as u64;
            put_user_bytes(var, &mut pos, name, len, &mut fl)
        } else if k == ArgKind::OpenHow as u8 {
            put_user_bytes(var, &mut pos, args[i], 24, &mut fl)
        } else {
            if k == ArgKind::Argv as u8 {
                argv = args[i];
            }
            0
        };
        s.hdr.var_len[i] = n;
        i += 1;
    }
    if argv != 0 {
        s.hdr.var_len[slot::SYS_ARGV] = put_argv(var, &mut pos, argv, &mut fl);
    }
    s.hdr.flags = fl;
    s.hdr.len = (HDR + if pos > VAR_CAP { VAR_CAP } else { pos }) as u32;
    let stored = if pos <= SMALL_VAR {
        match TASK_INFLIGHT.current(true) {
            Some(v) => {
                // A constant size: the verifier loses a clamped variable one, and 672
                // bytes cost about as little as the header alone.
                // SAFETY: the scratch is larger than the task's slot.
                let rc = unsafe {
                    bpf_probe_read_kernel(
                        (v as *mut InflightSmall).cast(),
                        core::mem::size_of::<InflightSmall>() as u32,
                        (s as *const SysScratch).cast(),
                    )
                };
                v.hdr.kind = PENDING;
                if rc == 0 { Ok(()) } else { Err(rc) }
            }
            None => Err(-1),
        }
    } else {
        // A pending small entry left by a lost exit must not be taken for this one.
        if let Some(v) = TASK_INFLIGHT.current(false) {
            v.hdr.kind = 0;
        }
        let tid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
        // SAFETY: SysScratch starts with the layout of Inflight and is larger.
        let v: &InflightBig = unsafe { &*(s as *const SysScratch).cast() };
        INFLIGHT_BIG.insert(tid, v, BPF_ANY).map_err(|e| e as i64)
    };
    if stored.is_err() {
        count(counter::DROP_INFLIGHT_FULL);
    }
    Some(())
}

/// The entry of an open whose only captured argument is its path (open, openat, creat):
/// the path is read straight into the task's slot (no scratch copy) and judged by the
/// path filter there. `None` when the generic capture must take it (openat2, a path that
/// does not fit or cannot be read).
#[inline(always)]
fn enter_open(sp: &SyscallSpec, nr: u64, regs: *const pt_regs) -> Option<()> {
    // Which argument is the path, from the spec: a loop over the kinds would give the
    // verifier one state per index.
    let fast = (sp.capture_entry >> spec::FAST_OPEN_SHIFT) & 7;
    if fast == 0 || fast > 2 {
        return None;
    }
    let idx = (fast - 1) as usize;
    let pf = PATH_FILTER.get(0)?;
    let v = TASK_INFLIGHT.current(true)?;
    let args = syscall_args(regs);
    let path = if idx == 0 { args[0] } else { args[1] };
    let var = v.var.as_mut_ptr();
    // SAFETY: PF_MAX_PATH + 1 <= SMALL_VAR bytes of the task's slot.
    let n = unsafe {
        bpf_probe_read_user_str(var.cast(), (PF_MAX_PATH + 1) as u32, path as *const c_void)
    };
    if n <= 0 || n as usize > PF_MAX_PATH {
        return None;
    }
    let n = n as usize;
    let keep = filter::keep_in_kernel(pf, var, n - 1);
    let h = &mut v.hdr;
    h.args = args;
    h.syscall_nr = nr as u16;
    zero(&mut h.var_len);
    h.var_len[idx & 1] = n as u16;
    h.flags = 0;
    h.len = (HDR + n) as u32;
    h.kind = if keep { FILTERED } else { PENDING };
    Some(())
}

#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit(ctx: BtfTracePointContext) -> i32 {
    let _ = try_exit(&ctx);
    0
}

#[inline(always)]
fn try_exit(ctx: &BtfTracePointContext) -> Option<()> {
    let regs: *const pt_regs = ctx.arg(0);
    // SAFETY: address computation only.
    let nr = reg(unsafe { &raw const (*regs).orig_rax });
    let sp = spec(nr)?;
    let cfg = config()?;
    // One helper call for both uses: each costs tens of ns on the kept-open path.
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    if excluded(cfg, pid_tgid) {
        return None;
    }
    let ret: i64 = ctx.arg(1);
    let creds = sp.enabled & spec::CREDS != 0;
    let tgid = (pid_tgid >> 32) as u32;
    if sp.enabled & spec::CLOSES_FD != 0 {
        // SAFETY: address computation only.
        let fd = reg(unsafe { &raw const (*regs).rdi }) as i32;
        if filter::take_filtered(tgid, fd as i64) {
            count(counter::FILTERED_CLOSE);
            return Some(());
        }
    }
    if sp.enabled & spec::NEW_FD != 0 {
        // The descriptor is user space's now: its close must be sent (a kept open marks
        // it again below).
        filter::take_filtered(tgid, ret);
    }
    let task = current_task();
    if sp.capture_entry != 0 {
        let tid = pid_tgid as u32;
        let mut found = false;
        if let Some(v) = TASK_INFLIGHT.current(false) {
            if v.hdr.kind == FILTERED && v.hdr.syscall_nr as u64 == nr {
                v.hdr.kind = 0;
                if ret < 0
                    || !filter::may_be_dir(sp.capture_entry, &v.hdr.args)
                    || !filter::is_dir_or_unknown(&cfg.offsets, task, ret)
                {
                    filter::mark_filtered(tgid, ret);
                    count(counter::FILTERED_OPEN);
                    return Some(());
                }
                // A directory: sent after all, as if it had been pending.
                v.hdr.kind = PENDING;
            }
            if v.hdr.kind == PENDING {
                found = send_entry(cfg, v, nr, ret, task, sp);
                v.hdr.kind = 0;
            }
        }
        // A stale small entry (its exit was never seen) must not hide a fresh big one.
        if !found && let Some(v) = INFLIGHT_BIG.get_ptr_mut(tid) {
            // SAFETY: as above.
            found = send_entry(cfg, unsafe { &mut *v }, nr, ret, task, sp);
            let _ = INFLIGHT_BIG.remove(tid);
        }
        if !found {
            count(counter::NO_ENTRY);
            submit_with(cfg, |h: &mut EventHeader| {
                exit_header(h, nr, ret, regs);
                h.flags = flags::NO_ENTRY;
                fill_header(h, &cfg.offsets, task, creds);
            });
        }
        return Some(());
    }
    // Exit-only syscall. Output addresses (accept) are read now, into slot SYS_EXIT_ADDR.
    let mut out_addr = 0usize;
    let mut i = 0;
    while i < 5 {
        if sp.kinds[i] == ArgKind::SockaddrOut as u8 {
            out_addr = i + 1;
        }
        i += 1;
    }
    if out_addr == 0 || ret < 0 {
        submit_with(cfg, |h: &mut EventHeader| {
            exit_header(h, nr, ret, regs);
            fill_header(h, &cfg.offsets, task, creds);
        });
        return Some(());
    }
    let Some(s) = SYS_SCRATCH.get_ptr_mut(0) else {
        count(counter::DROP_NO_SCRATCH);
        return None;
    };
    // SAFETY: per-CPU scratch, exclusively ours for this program run.
    let s: &mut SysScratch = unsafe { &mut *s };
    exit_header(&mut s.hdr, nr, ret, regs);
    fill_header(&mut s.hdr, &cfg.offsets, task, creds);
    let args = s.hdr.args;
    let idx = (out_addr - 1) & 7;
    let addr = if idx < 5 { args[idx] } else { 0 };
    let lenp = if idx < 5 { args[idx + 1] } else { 0 };
    let mut fl = 0u16;
    let mut pos = 0usize;
    if lenp != 0 {
        let len = read_user_u32(lenp).unwrap_or(0) as u64;
        s.hdr.var_len[slot::SYS_EXIT_ADDR] =
            put_user_bytes(s.var.as_mut_ptr(), &mut pos, addr, len, &mut fl);
    }
    s.hdr.flags |= fl;
    let len = HDR + (pos & (VAR_CAP - 1));
    s.hdr.len = len as u32;
    output(cfg, (s as *const SysScratch).cast(), len);
    Some(())
}

/// Complete an entry record with the exit's identity and return value and send it.
/// False when the entry belongs to another syscall (a lost exit): the caller sends NO_ENTRY.
#[inline(always)]
fn send_entry<const N: usize>(
    cfg: &Config,
    v: &mut Inflight<N>,
    nr: u64,
    ret: i64,
    task: u64,
    sp: &SyscallSpec,
) -> bool {
    if v.hdr.syscall_nr as u64 != nr {
        return false;
    }
    fill_header(
        &mut v.hdr,
        &cfg.offsets,
        task,
        sp.enabled & spec::CREDS != 0,
    );
    v.hdr.kind = EventKind::Syscall as u16;
    v.hdr.ret = ret;
    let mut len = v.hdr.len as usize;
    if len > core::mem::size_of::<Inflight<N>>() {
        len = core::mem::size_of::<Inflight<N>>();
    }
    if len < HDR {
        len = HDR;
    }
    const EINPROGRESS: i64 = 115;
    if sp.enabled & spec::LOCAL_ADDR != 0 && (ret == 0 || ret == -EINPROGRESS) {
        len = append_local_addr(cfg, v, task, len);
    }
    if v.hdr.flags & flags::TRUNCATED != 0 {
        count(counter::TRUNCATED);
    }
    output(cfg, (v as *const Inflight<N>).cast(), len);
    true
}

/// Size of the local address a connect record carries (a `sockaddr_in6`; an IPv4 one is
/// the same bytes with the address at offset 4).
const LOCAL_ADDR_LEN: usize = 28;

/// Append the local address of the socket in argument 0 (`file->private_data->sk`) at
/// record length `len`, as a `sockaddr_in`/`sockaddr_in6` in slot SYS_EXIT_ADDR; returns
/// the new length. Falco reports a connect's tuple with the port the kernel picked.
#[inline(always)]
fn append_local_addr<const N: usize>(
    cfg: &Config,
    v: &mut Inflight<N>,
    task: u64,
    len: usize,
) -> usize {
    let off = &cfg.offsets;
    // connect's entry data is its address (at most SOCKADDR_CAP bytes), so this lands
    // below 256; the mask is what lets the verifier see the write stays in the value.
    let at = len - HDR;
    if at > 255 || 256 + LOCAL_ADDR_LEN > N {
        return len;
    }
    // Volatile: LLVM would drop the mask as redundant after the check above, and the
    // verifier does not always carry that check to the register used for the write.
    // SAFETY: a read of a local.
    let at = unsafe { core::ptr::read_volatile(&at) } & 255;
    let file = filter::fd_file(off, task, v.hdr.args[0] as i32 as i64);
    let sk = ptr(ptr(file, off.file_private_data), off.socket_sk);
    if sk == 0 {
        return len;
    }
    const AF_INET: u16 = 2;
    const AF_INET6: u16 = 10;
    let family = read::<u16>(sk, off.sock_family).unwrap_or(0);
    let port = read::<u16>(sk, off.sock_num).unwrap_or(0);
    let mut sa = [0u8; LOCAL_ADDR_LEN];
    sa[0..2].copy_from_slice(&family.to_le_bytes());
    sa[2..4].copy_from_slice(&port.to_be_bytes());
    let n = if family == AF_INET {
        let addr = read::<[u8; 4]>(sk, off.sock_rcv_saddr).unwrap_or([0; 4]);
        sa[4..8].copy_from_slice(&addr);
        16
    } else if family == AF_INET6 {
        let addr = read::<[u8; 16]>(sk, off.sock_v6_rcv_saddr).unwrap_or([0; 16]);
        sa[8..24].copy_from_slice(&addr);
        LOCAL_ADDR_LEN
    } else {
        return len;
    };
    // SAFETY: at < 256 and 256 + LOCAL_ADDR_LEN <= N: inside the record's variable area.
    let rc = unsafe {
        bpf_probe_read_kernel(
            v.var.as_mut_ptr().add(at).cast(),
            LOCAL_ADDR_LEN as u32,
            sa.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return len;
    }
    v.hdr.var_len[slot::SYS_EXIT_ADDR] = n as u16;
    v.hdr.len = (len + n) as u32;
    len + n
}

/// An exit-only header in place: zeroed, then the syscall's number, return and arguments.
#[inline(always)]
fn exit_header(h: &mut EventHeader, nr: u64, ret: i64, regs: *const pt_regs) {
    zero(h);
    h.ret = ret;
    h.args = syscall_args(regs);
    h.kind = EventKind::Syscall as u16;
    h.syscall_nr = nr as u16;
    h.len = HDR as u32;
}
