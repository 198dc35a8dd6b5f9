//! `#[repr(C)]` event layouts shared by the eBPF programs (no_std) and user space.
//!
//! # Wire format of one ring-buffer record
//!
//! ```text
//! +-------------------+  EventHeader (fixed, 8-byte aligned)
//! | ProcInfo          |  only for EventKind::ProcExec / ProcFork / ProcExit
//! +-------------------+
//! | var area          |  variable-length slots, back to back, in slot order 0..VAR_SLOTS;
//! |                   |  slot i holds `header.var_len[i]` bytes (0 = absent)
//! +-------------------+
//! ```
//!
//! The meaning of each slot depends on the event kind (see [`slot`]). Strings are stored as
//! the kernel's `bpf_probe_read_*_str` returned them, i.e. including the trailing NUL when
//! it fit; argv is the raw NUL-separated `mm->arg_start..arg_end` area.
#![no_std]

/// Length of `task_struct::comm`.
pub const TASK_COMM_LEN: usize = 16;
/// Size of the per-syscall spec table (x86_64 syscall numbers are all below this).
pub const MAX_SYSCALLS: u32 = 512;
/// Bytes available for variable-length data in one syscall event (all slots together).
pub const VAR_CAP: usize = 8192;
/// Cap for one path / string argument (PATH_MAX).
pub const STR_CAP: usize = 4096;
/// Cap for argv bytes (NUL-separated) in exec events.
pub const ARGV_CAP: usize = 4096;
/// Cap for environment bytes (`NAME=value` entries, NUL-separated) in exec events; read only
/// when a loaded rule uses `proc.env` or `proc.aenv` (`Config::capture_env`).
pub const ENV_CAP: usize = 4096;
/// Cap for the number of argv entries read at execve entry.
pub const ARGV_MAX_ARGS: usize = 32;
/// Cap for one socket address.
pub const SOCKADDR_CAP: usize = 128;
/// Number of variable-length slots per event.
pub const VAR_SLOTS: usize = 8;
/// Ring buffers declared in the object (`EVENTS0` .. `EVENTS3`); a CPU writes to
/// `EVENTS[cpu & (Config::nr_rings - 1)]` (nr_rings is a power of two).
pub const MAX_RINGS: u32 = 4;
/// Depth of the leaf-first path walks (cgroup path, cwd).
pub const PATH_WALK_DEPTH: usize = 8;
/// Each walked name sits in a fixed chunk of this many bytes (NUL-terminated, truncated).
/// Fixed strides keep the verifier's state space small.
pub const NAME_CHUNK: usize = 128;
/// Size of one walked-path region (`PATH_WALK_DEPTH * NAME_CHUNK`).
pub const WALK_REGION: usize = PATH_WALK_DEPTH * NAME_CHUNK;

/// `header.kind` values.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A syscall exit (`sys_exit`), with entry-captured arguments.
    Syscall = 1,
    /// `sched_process_exec`: a successful exec, with the new image's details.
    ProcExec = 2,
    /// `sched_process_fork`: a new task; the header describes the parent, ProcInfo the child.
    ProcFork = 3,
    /// `sched_process_exit`: a task ended.
    ProcExit = 4,
}

impl EventKind {
    pub const fn from_u16(v: u16) -> Option<Self> {
        match v {
            1 => Some(Self::Syscall),
            2 => Some(Self::ProcExec),
            3 => Some(Self::ProcFork),
            4 => Some(Self::ProcExit),
            _ => None,
        }
    }
}

/// `header.flags` bits.
pub mod flags {
    /// Some variable-length data was cut at its cap.
    pub const TRUNCATED: u16 = 1 << 0;
    /// A syscall exit without a recorded entry (entry happened before attach, or the
    /// in-flight map was full): entry-captured slots are missing.
    pub const NO_ENTRY: u16 = 1 << 1;
    /// A user-memory read failed (bad pointer or page not resident): that slot is empty.
    pub const READ_FAILED: u16 = 1 << 2;
    /// ProcExit: the whole thread group ended (the last thread exited).
    pub const GROUP_DEAD: u16 = 1 << 3;
    /// `ppid`, `euid`, `egid`, `loginuid` and the capability sets were read. Set on process
    /// records and on syscalls whose spec asks for it (credential changes); other syscall
    /// records leave those fields zero and user space keeps them in its process table —
    /// re-reading them took seven kernel reads per event.
    pub const CREDS: u16 = 1 << 4;
    /// ProcExec: the environment was read (`slot::PROC_ENV`, empty for an empty environment).
    pub const ENV: u16 = 1 << 5;
}

/// `SyscallSpec::enabled` bits.
pub mod spec {
    /// The syscall is wanted.
    pub const ENABLED: u8 = 1 << 0;
    /// Its records carry the full identity ([`super::flags::CREDS`]): it changes credentials.
    pub const CREDS: u8 = 1 << 1;
    /// An open of a path ([`super::PathFilter`] may keep it in the kernel): open, openat, creat.
    pub const PATH_FILTER: u8 = 1 << 2;
    /// A successful call returns a new descriptor that user space tracks (open family,
    /// socket, accept, dup*, memfd_create...): it must not stay marked as filtered.
    pub const NEW_FD: u8 = 1 << 3;
    /// close: kept in the kernel when its descriptor came from a filtered open.
    pub const CLOSES_FD: u8 = 1 << 4;
    /// connect: a successful (or in-progress) call also reports the socket's local
    /// address, in [`super::slot::SYS_EXIT_ADDR`].
    pub const LOCAL_ADDR: u8 = 1 << 5;
    /// `SyscallSpec::capture_entry >> FAST_OPEN_SHIFT`: 1 + the index of the path argument
    /// of an open whose path is its only entry capture (open, openat, creat; 0 = none).
    pub const FAST_OPEN_SHIFT: u8 = 4;
    /// `SyscallSpec::capture_entry >> OPEN_FLAGS_SHIFT & 7` of a fast open: 1 + the index of
    /// its flags argument, [`OPEN_NEVER_DIR`] when it cannot open a directory (creat), 0 when
    /// unknown. An open for writing or creating cannot return a directory (EISDIR), so its
    /// descriptor needs no directory check in the kernel.
    pub const OPEN_FLAGS_SHIFT: u8 = 1;
    pub const OPEN_NEVER_DIR: u8 = 7;
}

/// Prefixes and suffixes a [`PathFilter`] holds at most, and the bytes compared of each.
pub const PF_PREFIXES: usize = 32;
pub const PF_PREFIX_WORDS: usize = 4;
pub const PF_SUFFIXES: usize = 16;
pub const PF_SUFFIX_WORDS: usize = 2;
/// Longest path (without its NUL) the open filter judges; longer ones are always sent.
pub const PF_MAX_PATH: usize = 479;

/// Which opens may stay in the kernel, derived from the loaded rules (`aerie_rules::
/// OpenPathFilter`). An open whose raw path is absolute, plain (no `//`, `/.`, `..`, no
/// trailing `/`), at most [`PF_MAX_PATH`] bytes, and matches none of the prefixes or
/// suffixes can match no rule: it is counted and dropped, and so is the later close of its
/// descriptor. Directories are always sent (user space resolves `*at` calls through them).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PathFilter {
    /// 0: every open is sent.
    pub enabled: u32,
    pub n_prefixes: u32,
    pub n_suffixes: u32,
    pub _pad: u32,
    /// Little-endian words of the prefix bytes, left-aligned; `prefix_mask` has 0xff for
    /// each byte that counts.
    pub prefix: [[u64; PF_PREFIX_WORDS]; PF_PREFIXES],
    pub prefix_mask: [[u64; PF_PREFIX_WORDS]; PF_PREFIXES],
    /// Little-endian words of the suffix bytes, right-aligned in 16 bytes; masked likewise.
    pub suffix: [[u64; PF_SUFFIX_WORDS]; PF_SUFFIXES],
    pub suffix_mask: [[u64; PF_SUFFIX_WORDS]; PF_SUFFIXES],
}

impl PathFilter {
    /// A disabled filter: every open is sent.
    pub const fn disabled() -> Self {
        PathFilter {
            enabled: 0,
            n_prefixes: 0,
            n_suffixes: 0,
            _pad: 0,
            prefix: [[0; PF_PREFIX_WORDS]; PF_PREFIXES],
            prefix_mask: [[0; PF_PREFIX_WORDS]; PF_PREFIXES],
            suffix: [[0; PF_SUFFIX_WORDS]; PF_SUFFIXES],
            suffix_mask: [[0; PF_SUFFIX_WORDS]; PF_SUFFIXES],
        }
    }
}

/// Descriptors below this number are tracked in [`FdBits`]; a filtered open that returns a
/// higher one is still dropped, but its close is sent (harmless: user space ignores it).
pub const FD_BITS_FDS: usize = 256;
/// Slots of the `FD_BITS` array, indexed by `tgid % FD_BITS_SLOTS` and tagged with the tgid.
pub const FD_BITS_SLOTS: u32 = 1 << 16;

/// Name of the eBPF object's read-only global `[u32; 4]` that turns on direct, BTF-checked
/// loads for the first three steps of the descriptor walk (`task_struct.files`,
/// `files_struct.fdt`, `fdtable.fd`): `[FD_WALK_DIRECT, offsets...]`. Set at load time; the
/// verifier then reads the offsets as constants and checks each load against the BTF. Any
/// other first word keeps the walk on `bpf_probe_read_kernel` (about 30 ns per step more).
pub const FD_WALK_GLOBAL: &str = "FD_WALK";
/// First word of [`FD_WALK_GLOBAL`] that turns the direct walk on.
pub const FD_WALK_DIRECT: u32 = 0x00D1_EC70;

/// Per process: descriptors returned by filtered opens, whose close need not be sent.
/// A slot whose `tgid` is another process's counts as empty (closes are sent).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FdBits {
    pub tgid: u32,
    pub _pad: u32,
    pub bits: [u64; FD_BITS_FDS / 64],
}

/// Slot meanings. For `Syscall` events, slots 0..6 hold data captured for syscall argument i
/// (path, string, sockaddr), per the syscall's [`ArgKind`]s.
pub mod slot {
    /// Syscall: argv of execve/execveat (NUL-separated) read at entry.
    pub const SYS_ARGV: usize = 6;
    /// Syscall: socket address read at exit (accept/accept4 peer, getsockname-like outputs).
    pub const SYS_EXIT_ADDR: usize = 7;
    /// Exec: cgroup v2 path components, leaf first, one per `NAME_CHUNK`-byte chunk
    /// (NUL-terminated); the first chunk starting with NUL ends the list. `WALK_REGION` bytes.
    pub const PROC_CGROUP: usize = 0;
    /// Exec: cwd components, same layout as PROC_CGROUP.
    pub const PROC_CWD: usize = 1;
    /// Exec: the exec'd filename (`linux_binprm::filename`).
    pub const PROC_FILENAME: usize = 2;
    /// Exec: argv (`mm->arg_start..arg_end`).
    pub const PROC_ARGV: usize = 3;
    /// Exec: exe file name (dentry name of `mm->exe_file`).
    pub const PROC_EXE_NAME: usize = 4;
    /// Exec: environment (`mm->env_start..env_end`), with `flags::ENV`.
    pub const PROC_ENV: usize = 5;
}

/// Fixed header of every record. 8-byte aligned, 160 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// `bpf_ktime_get_boot_ns()` at the event (CLOCK_BOOTTIME).
    pub ts_boot_ns: u64,
    /// Syscall return value (Syscall), exit code (ProcExit), 0 otherwise.
    pub ret: i64,
    /// Raw syscall arguments from `pt_regs` (Syscall); kind-specific otherwise.
    pub args: [u64; 6],
    /// [`EventKind`] as u16.
    pub kind: u16,
    /// Syscall number (x86_64 numbering) for Syscall events.
    pub syscall_nr: u16,
    /// [`flags`] bits.
    pub flags: u16,
    pub _pad0: u16,
    /// Total record length in bytes, header included.
    pub len: u32,
    /// Thread group id (user-space "pid").
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent's tgid (`real_parent->tgid`).
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// `task->loginuid` (u32::MAX when unset or unavailable).
    pub loginuid: u32,
    pub _pad1: u32,
    /// `cred->cap_permitted` / `cred->cap_effective` (capability bit sets).
    pub cap_permitted: u64,
    pub cap_effective: u64,
    /// `task->comm`.
    pub comm: [u8; TASK_COMM_LEN],
    /// Length of each variable-length slot.
    pub var_len: [u16; VAR_SLOTS],
}

/// Extra process details carried by ProcExec / ProcFork / ProcExit records, right after the
/// header. For ProcFork it describes the child; for ProcExec/ProcExit the current task.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcInfo {
    /// Task start time, CLOCK_BOOTTIME ns (`task->start_boottime`).
    pub start_boot_ns: u64,
    /// Inode number of `mm->exe_file`.
    pub exe_ino: u64,
    /// cgroup v2 id of the task's default cgroup (`kernfs_node::id`).
    pub cgroup_id: u64,
    /// Child tgid (ProcFork), previous pid (ProcExec), 0 otherwise.
    pub other_tgid: u32,
    /// Child tid (ProcFork).
    pub other_tid: u32,
    /// `s_dev` of the exe's superblock (kernel dev_t encoding: major << 20 | minor).
    pub exe_dev: u32,
    /// Controlling tty as a kernel dev_t (major << 20 | minor), 0 when none.
    pub tty: u32,
    /// [`exe_flags`] bits.
    pub exe_flags: u32,
    /// `s_magic` of the exe's superblock.
    pub exe_fs_magic: u32,
    /// [`walk_flags`] bits (exec only).
    pub walk_flags: u32,
    /// Process group and session ids (host pid namespace).
    pub pgid: u32,
    pub sid: u32,
    /// The process id inside its own pid namespace (`proc.vpid`).
    pub vpid: u32,
    /// Exe inode change / modification times, seconds since the epoch (exec only).
    pub exe_ctime: i64,
    pub exe_mtime: i64,
}

/// `ProcInfo::walk_flags` bits: the walk reached its root (the path is complete).
pub mod walk_flags {
    pub const CGROUP_COMPLETE: u32 = 1 << 0;
    pub const CWD_COMPLETE: u32 = 1 << 1;
}

/// `ProcInfo::exe_flags` bits.
pub mod exe_flags {
    /// The exe lives on overlayfs and has an upper-layer dentry (written in the container).
    pub const UPPER_LAYER: u32 = 1 << 0;
    /// The exe is a memfd (`memfd:` dentry name on an unlinked inode).
    pub const MEMFD: u32 = 1 << 1;
    /// The exe lives on overlayfs.
    pub const OVERLAY: u32 = 1 << 2;
}

/// How the syscall tracer treats one argument.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// Raw integer only (always present in `args`).
    Raw = 0,
    /// NUL-terminated user string (path, name), read at entry.
    Str = 1,
    /// `struct sockaddr *` with its length in the next argument, read at entry.
    Sockaddr = 2,
    /// `struct msghdr *`: its `msg_name`/`msg_namelen` read at entry.
    Msghdr = 3,
    /// `struct sockaddr *` output with `socklen_t *` length in the next argument, read at
    /// exit into [`slot::SYS_EXIT_ADDR`] (accept, accept4).
    SockaddrOut = 4,
    /// `char *const argv[]`, read at entry into [`slot::SYS_ARGV`].
    Argv = 5,
    /// `struct open_how *` (openat2): its 24 bytes read at entry.
    OpenHow = 6,
}

/// One entry of the `SYSCALLS` table (indexed by syscall number).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SyscallSpec {
    /// [`spec`] bits; 0 when the syscall is not wanted (it never leaves the kernel).
    pub enabled: u8,
    /// Non-zero when some argument is captured at entry (paths, addresses): the entry
    /// is kept (task storage; a tid-keyed hash when large) and completed at exit.
    pub capture_entry: u8,
    /// [`ArgKind`] per argument.
    pub kinds: [u8; 6],
}

/// Kernel struct member offsets read from the running kernel's BTF at load time.
/// `u32::MAX` means "not present in this kernel" and disables what depends on it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KernelOffsets {
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_pid: u32,
    pub task_cred: u32,
    pub task_loginuid: u32,
    pub task_signal: u32,
    pub task_mm: u32,
    pub task_fs: u32,
    pub task_cgroups: u32,
    pub task_start_boottime: u32,
    pub task_exit_code: u32,
    pub cred_uid: u32,
    pub cred_gid: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
    pub signal_tty: u32,
    pub tty_index: u32,
    pub tty_driver: u32,
    pub tty_driver_major: u32,
    pub tty_driver_minor_start: u32,
    pub mm_exe_file: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_env_start: u32,
    pub mm_env_end: u32,
    pub file_f_inode: u32,
    /// `file.f_path.dentry` (f_path offset + path.dentry offset).
    pub file_dentry: u32,
    pub inode_i_ino: u32,
    pub inode_i_sb: u32,
    pub inode_i_nlink: u32,
    /// `sizeof(struct inode)`: overlayfs' `ovl_inode.__upperdentry` follows `vfs_inode`.
    pub inode_size: u32,
    pub sb_s_dev: u32,
    pub sb_s_magic: u32,
    pub dentry_d_parent: u32,
    /// `dentry.d_name.name`.
    pub dentry_name: u32,
    pub dentry_d_inode: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_name: u32,
    pub kernfs_node_parent: u32,
    pub kernfs_node_id: u32,
    /// `fs_struct.pwd.dentry`.
    pub fs_pwd_dentry: u32,
    pub bprm_filename: u32,
    /// `cred.cap_permitted`; `cap_effective` must follow it (checked in user space).
    pub cred_cap_permitted: u32,
    /// `signal_struct.pids` (array of `struct pid *` indexed by PIDTYPE_*).
    pub signal_pids: u32,
    pub pid_level: u32,
    pub pid_numbers: u32,
    /// `sizeof(struct upid)`; `upid.nr` is at offset 0.
    pub upid_size: u32,
    pub inode_ctime_sec: u32,
    pub inode_mtime_sec: u32,
    /// `signal_struct.live`: threads still alive; 0 at exit = the whole process ended.
    pub signal_live: u32,
    /// `task->files->fdt->fd[n]->f_inode->i_mode`: is a new descriptor a directory.
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_fd: u32,
    pub inode_i_mode: u32,
    /// `file->private_data` (a socket's `struct socket`) `->sk->__sk_common`: the local
    /// address a connect was given (`skc_family`, `skc_num`, `skc_rcv_saddr`,
    /// `skc_v6_rcv_saddr`).
    pub file_private_data: u32,
    pub socket_sk: u32,
    pub sock_family: u32,
    pub sock_num: u32,
    pub sock_rcv_saddr: u32,
    pub sock_v6_rcv_saddr: u32,
}

/// Runtime configuration, entry 0 of the `CONFIG` array map.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Events of this thread group are not reported (the detector itself); 0 = none.
    pub self_tgid: u32,
    /// Number of ring buffers in use: a power of two, 1..=MAX_RINGS.
    pub nr_rings: u32,
    /// Wake the reader only once this many bytes are waiting in a ring (0 = every record).
    /// Below it records are submitted with BPF_RB_NO_WAKEUP and the reader's timer picks
    /// them up: a wake-up is an IPI (a VM exit under virtualisation), far dearer than a record.
    pub wakeup_bytes: u32,
    /// Non-zero: exec records carry the new image's environment (`slot::PROC_ENV`).
    pub capture_env: u32,
    pub offsets: KernelOffsets,
}

/// Indexes into the per-CPU `COUNTERS` array map.
pub mod counter {
    /// Events written to a ring buffer.
    pub const SENT: u32 = 0;
    /// Dropped: ring buffer full.
    pub const DROP_RING_FULL: u32 = 1;
    /// Dropped entry capture: the in-flight map was full (the exit is sent with NO_ENTRY).
    pub const DROP_INFLIGHT_FULL: u32 = 2;
    /// Syscall exits seen without their entry (NO_ENTRY sent).
    pub const NO_ENTRY: u32 = 3;
    /// Events whose data was truncated at a cap.
    pub const TRUNCATED: u32 = 4;
    /// Dropped: the per-CPU scratch buffer was unavailable (should never happen).
    pub const DROP_NO_SCRATCH: u32 = 5;
    /// Opens kept in the kernel: no rule can match their path (not drops).
    pub const FILTERED_OPEN: u32 = 6;
    /// Closes kept in the kernel: their descriptor came from a filtered open.
    pub const FILTERED_CLOSE: u32 = 7;
    /// Number of counters.
    pub const COUNT: u32 = 8;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data, #[repr(C)], every bit pattern valid.
    unsafe impl aya::Pod for super::SyscallSpec {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PathFilter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FdBits {}
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 160);
const _: () = assert!(core::mem::size_of::<ProcInfo>() == 80);
const _: () = assert!(core::mem::size_of::<SyscallSpec>() == 8);
