//! aerie-detector: eBPF syscall capture, process/fd/container state, Falco-compatible rule
//! evaluation and alert outputs.

pub mod config;
pub mod container;
pub mod ebpf;
pub mod event;
pub mod fields;
pub mod k8s_audit;
pub mod metrics;
pub mod output;
pub mod run;
pub mod state;
