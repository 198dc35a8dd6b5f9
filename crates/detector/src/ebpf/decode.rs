//! Ring-buffer record (bytes laid out by `detector_common`) -> [`Event`].

use detector_common::{
    EventHeader, EventKind as RawKind, NAME_CHUNK, ProcInfo, VAR_SLOTS, exe_flags, flags, slot,
    walk_flags,
};
use thiserror::Error;

use super::syscalls;
use crate::event::{
    Comm, Event, EventFlags, EventKind, ExecEvent, ExitEvent, ForkEvent, ProcDetails, SyscallEvent,
};

const HDR: usize = size_of::<EventHeader>();
const INFO: usize = size_of::<ProcInfo>();

/// A record that does not match the shared layout (a bug or a version skew between the
/// embedded eBPF object and this decoder).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("ring record of {0} bytes is shorter than its fixed part")]
    Short(usize),
    #[error("ring record kind {0} is unknown")]
    UnknownKind(u16),
    #[error(
        "ring record slot {slot} ({len} bytes at offset {at}) runs past the record end ({end})"
    )]
    SlotOverflow {
        slot: usize,
        len: usize,
        at: usize,
        end: usize,
    },
}

/// Converts the kernel's CLOCK_BOOTTIME stamps to wall-clock ns.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// CLOCK_REALTIME - CLOCK_BOOTTIME, ns.
    pub offset_ns: i128,
}

impl Clock {
    /// Measure the offset now.
    pub fn now() -> Self {
        let real = clock_ns(libc::CLOCK_REALTIME);
        let boot = clock_ns(libc::CLOCK_BOOTTIME);
        Self {
            offset_ns: real - boot,
        }
    }

    pub fn wall(&self, boot_ns: u64) -> u64 {
        (i128::from(boot_ns) + self.offset_ns).max(0) as u64
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

fn read_header(b: &[u8]) -> Result<EventHeader, DecodeError> {
    if b.len() < HDR {
        return Err(DecodeError::Short(b.len()));
    }
    // SAFETY: length checked; EventHeader is plain old data, read unaligned.
    Ok(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<EventHeader>()) })
}

/// Split the var area into its slots.
fn slots<'a>(
    hdr: &EventHeader,
    b: &'a [u8],
    start: usize,
) -> Result<[&'a [u8]; VAR_SLOTS], DecodeError> {
    let end = (hdr.len as usize).min(b.len());
    let mut out: [&[u8]; VAR_SLOTS] = [&[]; VAR_SLOTS];
    let mut at = start;
    for (i, &len) in hdr.var_len.iter().enumerate() {
        let len = len as usize;
        if at + len > end {
            return Err(DecodeError::SlotOverflow {
                slot: i,
                len,
                at,
                end,
            });
        }
        out[i] = &b[at..at + len];
        at += len;
    }
    Ok(out)
}

fn details(info: &ProcInfo, clock: &Clock) -> ProcDetails {
    ProcDetails {
        start_ts: clock.wall(info.start_boot_ns),
        exe_ino: info.exe_ino,
        exe_dev: info.exe_dev,
        exe_fs_magic: info.exe_fs_magic,
        exe_upper_layer: info.exe_flags & exe_flags::UPPER_LAYER != 0,
        exe_from_memfd: info.exe_flags & exe_flags::MEMFD != 0,
        exe_on_overlay: info.exe_flags & exe_flags::OVERLAY != 0,
        tty: info.tty,
        cgroup_id: info.cgroup_id,
        pgid: info.pgid,
        sid: info.sid,
        vpid: info.vpid,
        exe_ctime: info.exe_ctime,
        exe_mtime: info.exe_mtime,
    }
}

/// Leaf-first names in fixed `NAME_CHUNK` chunks -> "/a/b/c" (root first); `None` when
/// the kernel's walk did not reach the root (too deep, or unreadable).
fn join_leaf_first(b: &[u8], complete: bool) -> Option<String> {
    if !complete {
        return None;
    }
    let mut parts = Vec::new();
    for chunk in b.chunks(NAME_CHUNK) {
        if chunk.first().is_none_or(|&c| c == 0) {
            break;
        }
        parts.push(syscalls::slot_str(chunk));
    }
    let mut path = String::new();
    for p in parts.iter().rev() {
        path.push('/');
        path.push_str(p);
    }
    if path.is_empty() {
        path.push('/');
    }
    Some(path)
}

/// Decode one ring-buffer record.
pub fn decode(b: &[u8], clock: &Clock) -> Result<Event, DecodeError> {
    let hdr = read_header(b)?;
    let kind = RawKind::from_u16(hdr.kind).ok_or(DecodeError::UnknownKind(hdr.kind))?;
    let kind = match kind {
        RawKind::Syscall => {
            let s = slots(&hdr, b, HDR)?;
            let (name, args) = match syscalls::by_nr(hdr.syscall_nr) {
                Some(def) => (def.name, syscalls::decode_args(def.name, &hdr.args, &s)),
                None => ("unknown", crate::event::SyscallArgs::Other),
            };
            EventKind::Syscall(SyscallEvent {
                nr: hdr.syscall_nr,
                name,
                ret: hdr.ret,
                raw_args: hdr.args,
                args,
            })
        }
        RawKind::ProcExec | RawKind::ProcFork | RawKind::ProcExit => {
            if b.len() < HDR + INFO {
                return Err(DecodeError::Short(b.len()));
            }
            // SAFETY: length checked; ProcInfo is plain old data.
            let info: ProcInfo = unsafe { std::ptr::read_unaligned(b[HDR..].as_ptr().cast()) };
            match kind {
                RawKind::ProcExec => {
                    let s = slots(&hdr, b, HDR + INFO)?;
                    let opt = |i: usize| (!s[i].is_empty()).then(|| syscalls::slot_str(s[i]));
                    EventKind::Exec(ExecEvent {
                        filename: syscalls::slot_str(s[slot::PROC_FILENAME]),
                        argv: syscalls::split_nul(s[slot::PROC_ARGV]),
                        old_pid: info.other_tgid,
                        cgroup: join_leaf_first(
                            s[slot::PROC_CGROUP],
                            info.walk_flags & walk_flags::CGROUP_COMPLETE != 0,
                        ),
                        cwd: join_leaf_first(
                            s[slot::PROC_CWD],
                            info.walk_flags & walk_flags::CWD_COMPLETE != 0,
                        ),
                        exe_name: opt(slot::PROC_EXE_NAME),
                        env: (hdr.flags & flags::ENV != 0).then(|| s[slot::PROC_ENV].to_vec()),
                        details: details(&info, clock),
                    })
                }
                RawKind::ProcFork => EventKind::Fork(ForkEvent {
                    child_pid: info.other_tgid,
                    child_tid: info.other_tid,
                    is_thread: info.other_tgid == hdr.tgid,
                    details: details(&info, clock),
                }),
                _ => EventKind::Exit(ExitEvent {
                    exit_code: hdr.ret as i32,
                    leader: hdr.flags & flags::GROUP_DEAD != 0,
                    start_ts: clock.wall(info.start_boot_ns),
                }),
            }
        }
    };
    Ok(Event {
        ts: clock.wall(hdr.ts_boot_ns),
        boot_ns: hdr.ts_boot_ns,
        pid: hdr.tgid,
        tid: hdr.tid,
        ppid: hdr.ppid,
        uid: hdr.uid,
        gid: hdr.gid,
        euid: hdr.euid,
        egid: hdr.egid,
        loginuid: (hdr.loginuid != u32::MAX).then_some(hdr.loginuid),
        cap_permitted: hdr.cap_permitted,
        cap_effective: hdr.cap_effective,
        comm: Comm::from_kernel(&hdr.comm),
        flags: EventFlags {
            truncated: hdr.flags & flags::TRUNCATED != 0,
            no_entry: hdr.flags & flags::NO_ENTRY != 0,
            read_failed: hdr.flags & flags::READ_FAILED != 0,
            creds: hdr.flags & flags::CREDS != 0,
        },
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SyscallArgs;

    fn header(kind: RawKind, nr: u16) -> EventHeader {
        EventHeader {
            ts_boot_ns: 1_000,
            ret: 3,
            args: [u64::MAX - 99, 0, 0o101, 0o644, 0, 0], // AT_FDCWD as u64
            kind: kind as u16,
            syscall_nr: nr,
            flags: 0,
            _pad0: 0,
            len: 0,
            tgid: 10,
            tid: 11,
            ppid: 1,
            uid: 1000,
            gid: 1000,
            euid: 0,
            egid: 0,
            loginuid: u32::MAX,
            _pad1: 0,
            cap_permitted: 0,
            cap_effective: 1 << 21,
            comm: *b"cat\0\0\0\0\0\0\0\0\0\0\0\0\0",
            var_len: [0; VAR_SLOTS],
        }
    }

    fn bytes_of<T>(v: &T) -> &[u8] {
        // SAFETY: test helper over POD types.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
    }

    #[test]
    fn decodes_an_openat_record() {
        let path = b"/etc/shadow\0";
        let mut h = header(RawKind::Syscall, 257);
        h.var_len[1] = path.len() as u16;
        h.len = (HDR + path.len()) as u32;
        let mut rec = bytes_of(&h).to_vec();
        rec.extend_from_slice(path);
        let clock = Clock { offset_ns: 5 };
        let ev = decode(&rec, &clock).unwrap();
        assert_eq!((ev.pid, ev.tid, ev.ts, ev.loginuid), (10, 11, 1_005, None));
        assert_eq!(ev.comm.to_str_lossy(), "cat");
        assert_eq!(ev.cap_effective, 1 << 21);
        let EventKind::Syscall(s) = ev.kind else {
            panic!("not a syscall")
        };
        assert_eq!(s.name, "openat");
        assert_eq!(s.ret, 3);
        assert_eq!(
            s.args,
            SyscallArgs::Open {
                dirfd: Some(-100),
                path: "/etc/shadow".into(),
                flags: 0o101,
                mode: 0o644
            }
        );
    }

    #[test]
    fn rejects_bad_records_with_errors() {
        let clock = Clock { offset_ns: 0 };
        assert_eq!(
            decode(&[0; 10], &clock).unwrap_err(),
            DecodeError::Short(10)
        );
        let mut h = header(RawKind::Syscall, 257);
        h.kind = 99;
        assert_eq!(
            decode(bytes_of(&h), &clock).unwrap_err(),
            DecodeError::UnknownKind(99)
        );
        let mut h = header(RawKind::Syscall, 257);
        h.var_len[0] = 50;
        h.len = HDR as u32;
        assert!(matches!(
            decode(bytes_of(&h), &clock),
            Err(DecodeError::SlotOverflow { slot: 0, .. })
        ));
        let h = header(RawKind::ProcExec, 0);
        assert!(matches!(
            decode(bytes_of(&h), &clock),
            Err(DecodeError::Short(_))
        ));
    }

    #[test]
    fn cgroup_and_cwd_paths_are_rebuilt_root_first() {
        let mut region = vec![0u8; detector_common::WALK_REGION];
        region[..17].copy_from_slice(b"docker-abc.scope\0");
        region[NAME_CHUNK..NAME_CHUNK + 13].copy_from_slice(b"system.slice\0");
        region[2 * NAME_CHUNK + 1] = b'x'; // after the end marker: ignored
        assert_eq!(
            join_leaf_first(&region, true).as_deref(),
            Some("/system.slice/docker-abc.scope")
        );
        assert_eq!(join_leaf_first(&region, false), None, "incomplete walk");
        assert_eq!(join_leaf_first(&[0; 256], true).as_deref(), Some("/"));
    }
}
