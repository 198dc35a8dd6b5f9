//! Process lifecycle: `sched_process_exec`, `sched_process_fork`, `sched_process_exit`.

use aya_ebpf::{
    helpers::generated::bpf_probe_read_user, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use core::ffi::c_void;
use detector_common::{
    ARGV_CAP, ENV_CAP, EventKind, STR_CAP, VAR_CAP, WALK_REGION, flags, slot, walk_flags,
};

use crate::{
    maps::{
        INFLIGHT_BIG, PROC_SCRATCH, ProcRecord, ProcScratch, config, count, output, submit_with,
        zero,
    },
    task::{
        current_task, fill_header, fill_proc_info, ptr, put_kernel_str, read, task_ids, walk_names,
    },
};

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    let _ = try_exec(&ctx);
    0
}

#[inline(always)]
fn try_exec(ctx: &BtfTracePointContext) -> Option<()> {
    let cfg = config()?;
    let off = &cfg.offsets;
    let task = current_task();
    let Some(s) = PROC_SCRATCH.get_ptr_mut(0) else {
        count(detector_common::counter::DROP_NO_SCRATCH);
        return None;
    };
    // SAFETY: per-CPU scratch, exclusively ours for this program run.
    let s: &mut ProcScratch = unsafe { &mut *s };
    fill_header(&mut s.hdr, off, task, true);
    if s.hdr.tgid == cfg.self_tgid {
        return None;
    }
    let old_pid: u64 = ctx.arg(1);
    let bprm: u64 = ctx.arg(2);
    // A non-leader thread that execs takes over the leader's pid (de_thread): move its
    // in-flight execve entry to the new tid so that sys_exit finds it.
    let old_tid = old_pid as u32;
    if old_tid != s.hdr.tid {
        // (TASK_INFLIGHT needs nothing: the task keeps its storage, only its pid changes.)
        if let Some(v) = INFLIGHT_BIG.get_ptr(old_tid) {
            // SAFETY: a live map value, copied by the helper into the new key.
            let _ = INFLIGHT_BIG.insert(s.hdr.tid, unsafe { &*v }, 0);
            let _ = INFLIGHT_BIG.remove(old_tid);
        }
    }
    s.hdr.kind = EventKind::ProcExec as u16;
    s.hdr.syscall_nr = 0;
    s.hdr.ret = 0;
    zero(&mut s.hdr.args);
    zero(&mut s.hdr.var_len);
    zero(&mut s.info);
    fill_proc_info(&mut s.info, off, task);
    s.info.other_tgid = old_pid as u32;

    let mut fl = 0u16;
    let var = s.var.as_mut_ptr();

    // Fixed regions first (constant offsets): cgroup v2 path and cwd, leaf first.
    let cgroups = ptr(task, off.task_cgroups);
    let kn = ptr(ptr(cgroups, off.css_set_dfl_cgrp), off.cgroup_kn);
    if walk_names(
        var,
        kn,
        off.kernfs_node_name,
        off.kernfs_node_parent,
        &mut fl,
    ) {
        s.info.walk_flags |= walk_flags::CGROUP_COMPLETE;
    }
    s.hdr.var_len[slot::PROC_CGROUP] = WALK_REGION as u16;
    let pwd = ptr(ptr(task, off.task_fs), off.fs_pwd_dentry);
    // SAFETY: the second region is inside the 2 * VAR_CAP buffer.
    let cwd_region = unsafe { var.add(WALK_REGION) };
    if walk_names(
        cwd_region,
        pwd,
        off.dentry_name,
        off.dentry_d_parent,
        &mut fl,
    ) {
        s.info.walk_flags |= walk_flags::CWD_COMPLETE;
    }
    s.hdr.var_len[slot::PROC_CWD] = WALK_REGION as u16;
    let mut pos = 2 * WALK_REGION;

    s.hdr.var_len[slot::PROC_FILENAME] = put_kernel_str(
        var,
        &mut pos,
        ptr(bprm, off.bprm_filename),
        STR_CAP,
        &mut fl,
    );

    // argv: the new image's mm->arg_start..arg_end (NUL-separated), capped at ARGV_CAP.
    let mm = ptr(task, off.task_mm);
    s.hdr.var_len[slot::PROC_ARGV] = put_mm_range(
        var,
        &mut pos,
        mm,
        off.mm_arg_start,
        off.mm_arg_end,
        ARGV_CAP,
        &mut fl,
    );
    // exe dentry name
    let exe = ptr(mm, off.mm_exe_file);
    let name = ptr(ptr(exe, off.file_dentry), off.dentry_name);
    s.hdr.var_len[slot::PROC_EXE_NAME] = put_kernel_str(var, &mut pos, name, 256, &mut fl);

    // environment: mm->env_start..env_end, only when a rule reads it (ENV_CAP bytes).
    // Slots are laid out in index order: PROC_ENV comes after PROC_EXE_NAME.
    if cfg.capture_env != 0 {
        fl |= flags::ENV;
        s.hdr.var_len[slot::PROC_ENV] = put_mm_range(
            var,
            &mut pos,
            mm,
            off.mm_env_start,
            off.mm_env_end,
            ENV_CAP,
            &mut fl,
        );
    }
    if fl & flags::TRUNCATED != 0 {
        count(detector_common::counter::TRUNCATED);
    }
    s.hdr.flags = fl | flags::CREDS;
    let fixed = core::mem::size_of::<crate::maps::ProcRecord>();
    let len = fixed + (pos & (2 * VAR_CAP - 1));
    s.hdr.len = len as u32;
    output(cfg, (s as *const ProcScratch).cast(), len);
    Some(())
}

/// Append the user memory `*(mm + start_off) .. *(mm + end_off)` (argv or the environment of
/// the new image) at `*pos`, capped at `cap` (at most VAR_CAP). Returns the bytes written.
#[inline(always)]
fn put_mm_range(
    var: *mut u8,
    pos: &mut usize,
    mm: u64,
    start_off: u32,
    end_off: u32,
    cap: usize,
    fl: &mut u16,
) -> u16 {
    let start = read::<u64>(mm, start_off).unwrap_or(0);
    let end = read::<u64>(mm, end_off).unwrap_or(0);
    if start == 0 || end <= start || *pos >= VAR_CAP {
        return 0;
    }
    let mut len = (end - start) as usize;
    if len > cap {
        len = cap;
        *fl |= flags::TRUNCATED;
    }
    let at = *pos & (VAR_CAP - 1);
    // SAFETY: at < VAR_CAP, len <= cap <= VAR_CAP: inside the 2 * VAR_CAP buffer.
    let rc = unsafe { bpf_probe_read_user(var.add(at).cast(), len as u32, start as *const c_void) };
    if rc != 0 {
        *fl |= flags::READ_FAILED;
        return 0;
    }
    *pos += len;
    len as u16
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    let _ = try_fork(&ctx);
    0
}

#[inline(always)]
fn try_fork(ctx: &BtfTracePointContext) -> Option<()> {
    let cfg = config()?;
    let off = &cfg.offsets;
    let child: u64 = ctx.arg(1);
    let (child_tgid, child_tid) = task_ids(off, child);
    if child_tgid == child_tid {
        crate::filter::reset(child_tgid);
    }
    // SAFETY: helper without arguments.
    let tgid = (unsafe { aya_ebpf::helpers::generated::bpf_get_current_pid_tgid() } >> 32) as u32;
    if tgid == cfg.self_tgid {
        return None;
    }
    submit_with(cfg, |rec: &mut ProcRecord| {
        init_record(rec);
        fill_header(&mut rec.hdr, off, current_task(), true);
        rec.hdr.kind = EventKind::ProcFork as u16;
        fill_proc_info(&mut rec.info, off, child);
        let (tgid, tid) = task_ids(off, child);
        rec.info.other_tgid = tgid;
        rec.info.other_tid = tid;
    });
    Some(())
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(_ctx: BtfTracePointContext) -> i32 {
    let _ = try_exit();
    0
}

#[inline(always)]
fn try_exit() -> Option<()> {
    let cfg = config()?;
    let off = &cfg.offsets;
    let task = current_task();
    // SAFETY: helper without arguments.
    let pid_tgid = unsafe { aya_ebpf::helpers::generated::bpf_get_current_pid_tgid() };
    // A task killed inside a syscall never reaches sys_exit: forget its entry.
    let tid = pid_tgid as u32;
    // (TASK_INFLIGHT is freed with the task.)
    let _ = INFLIGHT_BIG.remove(tid);
    if (pid_tgid >> 32) as u32 == cfg.self_tgid {
        return None;
    }
    submit_with(cfg, |rec: &mut ProcRecord| {
        init_record(rec);
        fill_header(&mut rec.hdr, off, task, true);
        rec.hdr.kind = EventKind::ProcExit as u16;
        rec.hdr.ret = read::<i32>(task, off.task_exit_code).unwrap_or(0) as i64;
        // do_exit decrements signal->live before this tracepoint: 0 means the last thread.
        let signal = ptr(task, off.task_signal);
        let group_dead = match read::<i32>(signal, off.signal_live) {
            Some(live) => live == 0,
            None => rec.hdr.tid == rec.hdr.tgid,
        };
        if group_dead {
            rec.hdr.flags |= flags::GROUP_DEAD;
        }
        rec.info.start_boot_ns = read::<u64>(task, off.task_start_boottime).unwrap_or(0);
    });
    Some(())
}

/// A zeroed ProcRecord with its length set.
#[inline(always)]
fn init_record(rec: &mut ProcRecord) {
    zero(rec);
    rec.hdr.len = core::mem::size_of::<ProcRecord>() as u32;
}
