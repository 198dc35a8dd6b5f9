//! Kernel struct offsets for the eBPF programs, read from the running kernel's BTF.

use detector_common::KernelOffsets;

use super::btf::Btf;

/// Marks an offset the running kernel does not have; the eBPF side then skips that read.
pub const ABSENT: u32 = u32::MAX;

/// Offsets plus the names of the members this kernel lacks (reported at start-up).
pub struct ResolvedOffsets {
    pub offsets: KernelOffsets,
    pub missing: Vec<&'static str>,
}

/// Resolve every offset in [`KernelOffsets`]. Never fails: missing members are recorded.
pub fn resolve(btf: &Btf) -> ResolvedOffsets {
    let missing = std::cell::RefCell::new(Vec::new());
    let get = |label: &'static str, s: &str, names: &[&str]| -> u32 {
        btf.member_offset_any(s, names).unwrap_or_else(|| {
            missing.borrow_mut().push(label);
            ABSENT
        })
    };
    // cap_effective is read together with cap_permitted (one 16-byte read): only when
    // the two are adjacent, as in every kernel since capabilities became 64-bit.
    let cap_permitted = match (
        btf.member_offset("cred", "cap_permitted"),
        btf.member_offset("cred", "cap_effective"),
    ) {
        (Some(p), Some(e)) if e == p + 8 => p,
        _ => {
            missing
                .borrow_mut()
                .push("cred.cap_permitted/cap_effective");
            ABSENT
        }
    };
    let offsets = KernelOffsets {
        task_real_parent: get("task_struct.real_parent", "task_struct", &["real_parent"]),
        task_tgid: get("task_struct.tgid", "task_struct", &["tgid"]),
        task_pid: get("task_struct.pid", "task_struct", &["pid"]),
        task_cred: get("task_struct.cred", "task_struct", &["cred"]),
        task_loginuid: get(
            "task_struct.loginuid",
            "task_struct",
            &["loginuid.val", "loginuid"],
        ),
        task_signal: get("task_struct.signal", "task_struct", &["signal"]),
        task_mm: get("task_struct.mm", "task_struct", &["mm"]),
        task_fs: get("task_struct.fs", "task_struct", &["fs"]),
        task_cgroups: get("task_struct.cgroups", "task_struct", &["cgroups"]),
        task_start_boottime: get(
            "task_struct.start_boottime",
            "task_struct",
            &["start_boottime", "real_start_time"],
        ),
        task_exit_code: get("task_struct.exit_code", "task_struct", &["exit_code"]),
        cred_uid: get("cred.uid", "cred", &["uid.val", "uid"]),
        cred_gid: get("cred.gid", "cred", &["gid.val", "gid"]),
        cred_euid: get("cred.euid", "cred", &["euid.val", "euid"]),
        cred_egid: get("cred.egid", "cred", &["egid.val", "egid"]),
        signal_tty: get("signal_struct.tty", "signal_struct", &["tty"]),
        tty_index: get("tty_struct.index", "tty_struct", &["index"]),
        tty_driver: get("tty_struct.driver", "tty_struct", &["driver"]),
        tty_driver_major: get("tty_driver.major", "tty_driver", &["major"]),
        tty_driver_minor_start: get("tty_driver.minor_start", "tty_driver", &["minor_start"]),
        mm_exe_file: get("mm_struct.exe_file", "mm_struct", &["exe_file"]),
        mm_arg_start: get("mm_struct.arg_start", "mm_struct", &["arg_start"]),
        mm_arg_end: get("mm_struct.arg_end", "mm_struct", &["arg_end"]),
        mm_env_start: get("mm_struct.env_start", "mm_struct", &["env_start"]),
        mm_env_end: get("mm_struct.env_end", "mm_struct", &["env_end"]),
        file_f_inode: get("file.f_inode", "file", &["f_inode"]),
        file_dentry: get("file.f_path.dentry", "file", &["f_path.dentry"]),
        inode_i_ino: get("inode.i_ino", "inode", &["i_ino"]),
        inode_i_sb: get("inode.i_sb", "inode", &["i_sb"]),
        inode_i_nlink: get("inode.i_nlink", "inode", &["i_nlink", "__i_nlink"]),
        inode_size: btf.struct_size("inode").unwrap_or_else(|| {
            missing.borrow_mut().push("sizeof(inode)");
            ABSENT
        }),
        sb_s_dev: get("super_block.s_dev", "super_block", &["s_dev"]),
        sb_s_magic: get("super_block.s_magic", "super_block", &["s_magic"]),
        dentry_d_parent: get("dentry.d_parent", "dentry", &["d_parent"]),
        dentry_name: get("dentry.d_name.name", "dentry", &["d_name.name"]),
        dentry_d_inode: get("dentry.d_inode", "dentry", &["d_inode"]),
        css_set_dfl_cgrp: get("css_set.dfl_cgrp", "css_set", &["dfl_cgrp"]),
        cgroup_kn: get("cgroup.kn", "cgroup", &["kn"]),
        kernfs_node_name: get("kernfs_node.name", "kernfs_node", &["name"]),
        kernfs_node_parent: get("kernfs_node.parent", "kernfs_node", &["__parent", "parent"]),
        kernfs_node_id: get("kernfs_node.id", "kernfs_node", &["id"]),
        fs_pwd_dentry: get("fs_struct.pwd.dentry", "fs_struct", &["pwd.dentry"]),
        bprm_filename: get("linux_binprm.filename", "linux_binprm", &["filename"]),
        cred_cap_permitted: cap_permitted,
        signal_pids: get("signal_struct.pids", "signal_struct", &["pids"]),
        pid_level: get("pid.level", "pid", &["level"]),
        pid_numbers: get("pid.numbers", "pid", &["numbers"]),
        upid_size: btf.struct_size("upid").unwrap_or_else(|| {
            missing.borrow_mut().push("sizeof(upid)");
            ABSENT
        }),
        inode_ctime_sec: get(
            "inode.i_ctime_sec",
            "inode",
            &["i_ctime_sec", "__i_ctime.tv_sec", "i_ctime.tv_sec"],
        ),
        inode_mtime_sec: get(
            "inode.i_mtime_sec",
            "inode",
            &["i_mtime_sec", "__i_mtime.tv_sec", "i_mtime.tv_sec"],
        ),
        signal_live: get("signal_struct.live", "signal_struct", &["live"]),
        task_files: get("task_struct.files", "task_struct", &["files"]),
        files_fdt: get("files_struct.fdt", "files_struct", &["fdt"]),
        fdtable_fd: get("fdtable.fd", "fdtable", &["fd"]),
        inode_i_mode: get("inode.i_mode", "inode", &["i_mode"]),
        file_private_data: get("file.private_data", "file", &["private_data"]),
        socket_sk: get("socket.sk", "socket", &["sk"]),
        sock_family: get("sock.skc_family", "sock", &["__sk_common.skc_family"]),
        sock_num: get("sock.skc_num", "sock", &["__sk_common.skc_num"]),
        sock_rcv_saddr: get("sock.skc_rcv_saddr", "sock", &["__sk_common.skc_rcv_saddr"]),
        sock_v6_rcv_saddr: get(
            "sock.skc_v6_rcv_saddr",
            "sock",
            &["__sk_common.skc_v6_rcv_saddr"],
        ),
    };
    ResolvedOffsets {
        offsets,
        missing: missing.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offset_resolves_on_the_running_kernel() {
        let Ok(btf) = Btf::from_sys_fs() else {
            eprintln!("no /sys/kernel/btf/vmlinux: skipping");
            return;
        };
        let r = resolve(&btf);
        // loginuid needs CONFIG_AUDIT; everything else exists on any 5.x+/6.x kernel.
        let unexpected: Vec<_> = r
            .missing
            .iter()
            .filter(|m| **m != "task_struct.loginuid")
            .collect();
        assert!(unexpected.is_empty(), "missing offsets: {unexpected:?}");
        assert_eq!(r.offsets.task_tgid, r.offsets.task_pid + 4);
        assert_ne!(r.offsets.cred_euid, r.offsets.cred_uid);
    }
}
