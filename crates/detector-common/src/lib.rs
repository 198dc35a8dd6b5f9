//! `#[repr(C)]` event layouts shared by the eBPF programs (no_std) and user space.
#![no_std]
