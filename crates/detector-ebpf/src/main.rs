//! aerie eBPF programs: syscall capture (`sys_enter`/`sys_exit`) and process lifecycle
//! (`sched_process_fork`/`exec`/`exit`), all on BTF-enabled raw tracepoints (`tp_btf`).
//!
//! Built for `bpfel-unknown-none` by `crates/detector/build.rs`. On the host this is an
//! empty binary so that `cargo clippy --workspace` works on stable.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod calibration;
#[cfg(target_arch = "bpf")]
mod filter;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod proc;
#[cfg(target_arch = "bpf")]
mod syscalls;
#[cfg(target_arch = "bpf")]
mod task;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects programs that can reach this; it only exists to satisfy no_std.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
