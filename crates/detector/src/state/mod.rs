//! Process, descriptor, container and user state, kept in user space from /proc and from
//! kernel events. Single-threaded: the event loop owns it, so nothing here locks.

pub mod apply;
pub mod clock;
pub mod container;
pub mod fd;
pub mod hash;
pub mod paths;
pub mod process;
pub mod table;
pub mod users;

pub use clock::BootClock;
pub use fd::{FdInfo, FdKind, FdTable, L4Proto};
pub use process::Process;
pub use table::{ExecInfo, ProcessTable};
pub use users::UserDb;
