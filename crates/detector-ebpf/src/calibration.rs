//! Calibration programs for `benches/kernel_path.rs`: never attached by the detector.
//!
//! They measure the floor of this hook design on the running machine: what the
//! `sys_enter`/`sys_exit` raw tracepoints cost with programs that do nothing, and with one
//! read of an open's path from user memory (the least an entry-capturing probe must do).

use aya_ebpf::{
    bindings::pt_regs, helpers::generated::bpf_probe_read_user_str, macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use core::ffi::c_void;
use detector_common::PF_MAX_PATH;

use crate::maps::SYS_SCRATCH;

const NR_OPEN: u64 = 2;
const NR_OPENAT: u64 = 257;

#[btf_tracepoint(function = "sys_enter")]
pub fn calibrate_sys_enter(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sys_exit")]
pub fn calibrate_sys_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// `sys_enter` that reads the path of open/openat (the same bound as the path filter's
/// read) into per-CPU scratch, and does nothing else.
#[btf_tracepoint(function = "sys_enter")]
pub fn calibrate_sys_enter_path(ctx: BtfTracePointContext) -> i32 {
    let nr: u64 = ctx.arg(1);
    let regs: *const pt_regs = ctx.arg(0);
    // SAFETY: tp_btf types `regs` as a trusted pointer; these are checked loads.
    let path = unsafe {
        match nr {
            NR_OPEN => core::ptr::read_volatile(&raw const (*regs).rdi),
            NR_OPENAT => core::ptr::read_volatile(&raw const (*regs).rsi),
            _ => return 0,
        }
    };
    let Some(s) = SYS_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: PF_MAX_PATH + 1 bytes fit the scratch's variable area.
    unsafe {
        bpf_probe_read_user_str(
            (*s).var.as_mut_ptr().cast(),
            (PF_MAX_PATH + 1) as u32,
            path as *const c_void,
        )
    };
    0
}
