//! Does this process hold what loading eBPF programs needs? Checked up front so that a missing
//! capability is explained in one sentence instead of surfacing as an opaque EPERM from the loader.

use std::fmt;

/// Linux capability numbers (include/uapi/linux/capability.h).
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_RESOURCE: u32 = 24;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Capabilities the detector needs, by name, in the order we report them.
const NEEDED: [(u32, &str); 4] = [
    (CAP_BPF, "CAP_BPF"),
    (CAP_PERFMON, "CAP_PERFMON"),
    (CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE"),
    (CAP_SYS_PTRACE, "CAP_SYS_PTRACE"),
];

/// The effective capabilities that are missing, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPrivileges {
    pub missing: Vec<&'static str>,
    pub euid: u32,
}

impl fmt::Display for MissingPrivileges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "needs root, or the capabilities CAP_BPF, CAP_PERFMON, CAP_SYS_RESOURCE \
             and CAP_SYS_PTRACE, to load its eBPF programs and read /proc; this process (euid {}) \
             lacks {}. Run it as root (sudo aerie-detector run ...) or grant them, e.g. \
             `setcap cap_bpf,cap_perfmon,cap_sys_resource,cap_sys_ptrace+ep aerie-detector`",
            self.euid,
            self.missing.join(", ")
        )
    }
}

impl std::error::Error for MissingPrivileges {}

/// Check the current process, from `/proc/self/status`.
///
/// Only CAP_BPF and CAP_PERFMON are strictly required on current kernels: since 5.11 BPF
/// memory is charged to the memory cgroup, so CAP_SYS_RESOURCE (raising RLIMIT_MEMLOCK) is
/// only needed on older kernels, and without CAP_SYS_PTRACE some other users' /proc entries
/// are unreadable (their exe path and cwd stay empty until they exec). Those two are
/// reported as a warning; the loader's own error names them if the kernel insists.
pub fn check_current() -> Result<(), MissingPrivileges> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    match check_status(&status) {
        Ok(()) => Ok(()),
        Err(e) if e.missing.iter().all(|c| ADVISORY.contains(c)) => {
            tracing::warn!(
                "running without {}: fine on kernels since 5.11 (BPF memory is charged to the \
                 memory cgroup); if loading fails, grant it or run as full root",
                e.missing.join(", ")
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Capabilities whose absence is not fatal on current kernels.
const ADVISORY: [&str; 2] = ["CAP_SYS_RESOURCE", "CAP_SYS_PTRACE"];

/// Check a `/proc/PID/status` text. CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, as it
/// does on kernels before 5.8 and in the kernel's own checks.
pub fn check_status(status: &str) -> Result<(), MissingPrivileges> {
    let cap_eff = status_field(status, "CapEff:")
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0);
    let euid = status_field(status, "Uid:")
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX);
    let has = |cap: u32| cap_eff & (1u64 << cap) != 0;
    let missing: Vec<&'static str> = NEEDED
        .iter()
        .filter(|(cap, _)| {
            let admin_covers = matches!(*cap, CAP_BPF | CAP_PERFMON) && has(CAP_SYS_ADMIN);
            !has(*cap) && !admin_covers
        })
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MissingPrivileges { missing, euid })
    }
}

fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_root_capabilities_pass() {
        let s = "Name:\tx\nUid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n";
        assert_eq!(check_status(s), Ok(()));
    }

    #[test]
    fn unprivileged_user_lists_every_missing_capability() {
        let s = "Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000000\n";
        let e = check_status(s).unwrap_err();
        assert_eq!(
            e.missing,
            [
                "CAP_BPF",
                "CAP_PERFMON",
                "CAP_SYS_RESOURCE",
                "CAP_SYS_PTRACE"
            ]
        );
        assert_eq!(e.euid, 1000);
        let text = e.to_string();
        assert!(
            text.contains("root") && text.contains("CAP_SYS_PTRACE"),
            "{text}"
        );
    }

    #[test]
    fn sys_admin_covers_bpf_and_perfmon_only() {
        let caps = (1u64 << CAP_SYS_ADMIN) | (1u64 << CAP_SYS_RESOURCE);
        let s = format!("Uid:\t0\t5\t5\t5\nCapEff:\t{caps:016x}\n");
        let e = check_status(&s).unwrap_err();
        assert_eq!(e.missing, ["CAP_SYS_PTRACE"]);
        assert_eq!(e.euid, 5);
    }

    #[test]
    fn exact_capability_set_passes() {
        let caps = NEEDED.iter().fold(0u64, |acc, (c, _)| acc | (1u64 << c));
        let s = format!("Uid:\t1000\t1000\t1000\t1000\nCapEff:\t{caps:016x}\n");
        assert_eq!(check_status(&s), Ok(()));
    }
}
