//! Reads of kernel structures through the BTF-derived offsets in `Config::offsets`.

use aya_ebpf::helpers::generated::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_current_uid_gid,
    bpf_ktime_get_boot_ns, bpf_probe_read_kernel, bpf_probe_read_kernel_str,
};
use core::ffi::c_void;
use detector_common::{
    EventHeader, KernelOffsets, NAME_CHUNK, PATH_WALK_DEPTH, ProcInfo, TASK_COMM_LEN, VAR_CAP,
    exe_flags, flags,
};

/// Offsets equal to this are absent in the running kernel.
pub const ABSENT: u32 = u32::MAX;

/// `*(T *)(base + off)` from kernel memory; `None` when the offset is absent or the read fails.
#[inline(always)]
pub fn read<T: Copy>(base: u64, off: u32) -> Option<T> {
    if base == 0 || off == ABSENT {
        return None;
    }
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: bpf_probe_read_kernel tolerates bad addresses (returns an error).
    let rc = unsafe {
        bpf_probe_read_kernel(
            v.as_mut_ptr().cast::<c_void>(),
            core::mem::size_of::<T>() as u32,
            (base + off as u64) as *const c_void,
        )
    };
    if rc < 0 {
        None
    } else {
        // SAFETY: fully written by the helper.
        Some(unsafe { v.assume_init() })
    }
}

#[inline(always)]
pub fn ptr(base: u64, off: u32) -> u64 {
    read::<u64>(base, off).unwrap_or(0)
}

#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_get_current_task() }
}

/// Fill the identity fields every record carries, for the current task; with `creds` also
/// ppid, euid/egid, loginuid and capabilities (seven kernel reads), flagged `flags::CREDS`.
/// Without, those fields are cleared.
#[inline(always)]
pub fn fill_header(hdr: &mut EventHeader, off: &KernelOffsets, task: u64, creds: bool) {
    // SAFETY: helpers without pointer arguments, except comm which gets a sized buffer.
    unsafe {
        hdr.ts_boot_ns = bpf_ktime_get_boot_ns();
        let pid_tgid = bpf_get_current_pid_tgid();
        hdr.tgid = (pid_tgid >> 32) as u32;
        hdr.tid = pid_tgid as u32;
        let uid_gid = bpf_get_current_uid_gid();
        hdr.uid = uid_gid as u32;
        hdr.gid = (uid_gid >> 32) as u32;
        // No zeroing first: the helper NUL-pads to the size (strscpy_pad).
        bpf_get_current_comm(hdr.comm.as_mut_ptr().cast(), TASK_COMM_LEN as u32);
    }
    if creds {
        fill_task_ids(hdr, off, task);
        hdr.flags |= flags::CREDS;
    } else {
        // Volatile: LLVM merges plain adjacent zero stores into a call to the
        // byte-at-a-time memset subprogram.
        // SAFETY: field pointers of a live &mut.
        unsafe {
            core::ptr::write_volatile(&mut hdr.ppid, 0);
            core::ptr::write_volatile(&mut hdr.euid, 0);
            core::ptr::write_volatile(&mut hdr.egid, 0);
            core::ptr::write_volatile(&mut hdr.loginuid, u32::MAX);
            core::ptr::write_volatile(&mut hdr.cap_permitted, 0);
            core::ptr::write_volatile(&mut hdr.cap_effective, 0);
        }
    }
}

/// ppid, euid, egid, loginuid of `task`.
#[inline(always)]
pub fn fill_task_ids(hdr: &mut EventHeader, off: &KernelOffsets, task: u64) {
    let parent = ptr(task, off.task_real_parent);
    hdr.ppid = read::<u32>(parent, off.task_tgid).unwrap_or(0);
    let cred = ptr(task, off.task_cred);
    hdr.euid = read::<u32>(cred, off.cred_euid).unwrap_or(u32::MAX);
    hdr.egid = read::<u32>(cred, off.cred_egid).unwrap_or(u32::MAX);
    hdr.loginuid = read::<u32>(task, off.task_loginuid).unwrap_or(u32::MAX);
    let caps = read::<[u64; 2]>(cred, off.cred_cap_permitted).unwrap_or([0; 2]);
    hdr.cap_permitted = caps[0];
    hdr.cap_effective = caps[1];
}

/// `a + b` for offsets, keeping ABSENT absent.
#[inline(always)]
pub fn add_off(a: u32, b: u32) -> u32 {
    if a == ABSENT || b == ABSENT {
        ABSENT
    } else {
        a.wrapping_add(b)
    }
}

const PIDTYPE_TGID: u32 = 1;
const PIDTYPE_PGID: u32 = 2;
const PIDTYPE_SID: u32 = 3;

/// `pid_nr(signal->pids[kind])` in the initial (host) pid namespace.
#[inline(always)]
fn signal_pid_nr(off: &KernelOffsets, signal: u64, kind: u32) -> u32 {
    let pid = ptr(signal, add_off(off.signal_pids, kind * 8));
    // numbers[0].nr
    read::<i32>(pid, off.pid_numbers).unwrap_or(0) as u32
}

/// Identity of an arbitrary task (fork child): pid, tgid, uid, gid from its cred.
#[inline(always)]
pub fn task_ids(off: &KernelOffsets, task: u64) -> (u32, u32) {
    (
        read::<u32>(task, off.task_tgid).unwrap_or(0),
        read::<u32>(task, off.task_pid).unwrap_or(0),
    )
}

/// Start time, exe inode/dev/fs magic/flags, tty and cgroup id of `task`.
#[inline(always)]
pub fn fill_proc_info(info: &mut ProcInfo, off: &KernelOffsets, task: u64) {
    info.start_boot_ns = read::<u64>(task, off.task_start_boottime).unwrap_or(0);
    // tty: signal->tty -> MKDEV(driver->major, driver->minor_start + index)
    let signal = ptr(task, off.task_signal);
    let tty = ptr(signal, off.signal_tty);
    info.tty = 0;
    if tty != 0 {
        let index = read::<i32>(tty, off.tty_index).unwrap_or(0) as u32;
        let driver = ptr(tty, off.tty_driver);
        let major = read::<i32>(driver, off.tty_driver_major).unwrap_or(0) as u32;
        let minor = read::<i32>(driver, off.tty_driver_minor_start).unwrap_or(0) as u32;
        // new_encode_dev(), as /proc/PID/stat's tty_nr and Falco's proc.tty (pts/0 = 34816).
        let minor = (minor + index) & 0xfffff;
        info.tty = (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12);
    }
    // exe: mm->exe_file->f_inode
    let mm = ptr(task, off.task_mm);
    let exe = ptr(mm, off.mm_exe_file);
    let inode = ptr(exe, off.file_f_inode);
    info.exe_ino = read::<u64>(inode, off.inode_i_ino).unwrap_or(0);
    let sb = ptr(inode, off.inode_i_sb);
    info.exe_dev = read::<u32>(sb, off.sb_s_dev).unwrap_or(0);
    let magic = read::<u64>(sb, off.sb_s_magic).unwrap_or(0) as u32;
    info.exe_fs_magic = magic;
    let mut fl = 0;
    const OVERLAYFS_SUPER_MAGIC: u32 = 0x794c_7630;
    if magic == OVERLAYFS_SUPER_MAGIC {
        fl |= exe_flags::OVERLAY;
        // struct ovl_inode { ...; struct inode vfs_inode; struct dentry *__upperdentry; }
        if off.inode_size != ABSENT && ptr(inode, off.inode_size) != 0 {
            fl |= exe_flags::UPPER_LAYER;
        }
    }
    // memfd: dentry name starts with "memfd:" and the inode has no links.
    let dentry = ptr(exe, off.file_dentry);
    let name = ptr(dentry, off.dentry_name);
    if let Some(prefix) = read::<[u8; 6]>(name, 0)
        && &prefix == b"memfd:"
        && read::<u32>(inode, off.inode_i_nlink).unwrap_or(1) == 0
    {
        fl |= exe_flags::MEMFD;
    }
    info.exe_flags = fl;
    info.exe_ctime = read::<i64>(inode, off.inode_ctime_sec).unwrap_or(0);
    info.exe_mtime = read::<i64>(inode, off.inode_mtime_sec).unwrap_or(0);
    // process group, session, and the pid as seen inside the task's own pid namespace
    info.pgid = signal_pid_nr(off, signal, PIDTYPE_PGID);
    info.sid = signal_pid_nr(off, signal, PIDTYPE_SID);
    let tgid_pid = ptr(signal, add_off(off.signal_pids, PIDTYPE_TGID * 8));
    let level = read::<u32>(tgid_pid, off.pid_level).unwrap_or(0) & 31;
    let upid = if off.upid_size == ABSENT {
        ABSENT
    } else {
        level * off.upid_size
    };
    info.vpid = read::<i32>(tgid_pid, add_off(off.pid_numbers, upid)).unwrap_or(0) as u32;
    // cgroup v2 id: task->cgroups->dfl_cgrp->kn->id
    let cgroups = ptr(task, off.task_cgroups);
    let cgrp = ptr(cgroups, off.css_set_dfl_cgrp);
    let kn = ptr(cgrp, off.cgroup_kn);
    info.cgroup_id = read::<u64>(kn, off.kernfs_node_id).unwrap_or(0);
}

/// Append a kernel string at `*pos` in `var` (a `2 * VAR_CAP` buffer), bounded by `cap`.
/// Returns the bytes written (including the NUL), 0 on failure.
#[inline(always)]
pub fn put_kernel_str(var: *mut u8, pos: &mut usize, src: u64, cap: usize, fl: &mut u16) -> u16 {
    if src == 0 || *pos >= VAR_CAP {
        return 0;
    }
    let at = *pos & (VAR_CAP - 1);
    // SAFETY: at < VAR_CAP and cap <= VAR_CAP, inside the 2 * VAR_CAP buffer.
    let n =
        unsafe { bpf_probe_read_kernel_str(var.add(at).cast(), cap as u32, src as *const c_void) };
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

/// Walk a dentry/kernfs chain leaf first, writing each name into its own `NAME_CHUNK`
/// chunk of the `WALK_REGION` bytes at `region`. Returns true when the root was reached.
#[inline(always)]
pub fn walk_names(
    region: *mut u8,
    mut node: u64,
    name_off: u32,
    parent_off: u32,
    fl: &mut u16,
) -> bool {
    let mut complete = false;
    let mut depth = 0;
    while depth < PATH_WALK_DEPTH {
        // SAFETY: depth < PATH_WALK_DEPTH: the chunk is inside the region.
        let chunk = unsafe { region.add(depth * NAME_CHUNK) };
        // SAFETY: first byte of the chunk; marks "end of list" unless overwritten below.
        unsafe { *chunk = 0 };
        if node == 0 {
            break;
        }
        let parent = ptr(node, parent_off);
        if parent == 0 || parent == node {
            complete = true; // the root's own name ("/" or the cgroup root) is implied
            break;
        }
        let name = ptr(node, name_off);
        // SAFETY: NAME_CHUNK bytes at the chunk.
        let n = unsafe {
            bpf_probe_read_kernel_str(chunk.cast(), NAME_CHUNK as u32, name as *const c_void)
        };
        if n <= 0 {
            *fl |= flags::READ_FAILED;
            break;
        }
        if n as usize >= NAME_CHUNK {
            *fl |= flags::TRUNCATED;
        }
        node = parent;
        depth += 1;
    }
    complete
}
