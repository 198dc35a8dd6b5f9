//! Field extraction: Falco's syscall fields over a decoded event and the detector's state.

pub mod args;
pub mod extract;
pub mod flags;
pub mod syscalls;
pub mod sysevent;

pub use extract::{EventCtx, needs_runtime, supported_fields};
pub use sysevent::{Creds, SockAddr, SysEvent};
