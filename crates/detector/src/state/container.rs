//! Container id from a cgroup path, the way Falco's container engines recognise them.
//!
//! Handled forms (the id is 64 hex digits; Falco reports the first 12):
//! - docker, cgroupfs driver: `/docker/<id>`
//! - docker, systemd driver: `/system.slice/docker-<id>.scope`
//! - containerd / CRI, cgroupfs: `/kubepods/burstable/pod<uid>/<id>`
//! - containerd / CRI, systemd: `.../kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope`
//! - CRI-O: `.../crio-<id>.scope` (but not `crio-conmon-<id>.scope`, the monitor process)
//! - podman: `/machine.slice/libpod-<id>.scope`, rootless `.../libpod-<id>.scope/container`
//!   (but not `libpod-conmon-<id>.scope`)
//! - plain containerd (nerdctl, ctr): `/<namespace>/<id>`, `nerdctl-<id>.scope`

/// Length of the short id Falco reports in `container.id`.
pub const SHORT_ID_LEN: usize = 12;

/// The id Falco uses for processes that are not in a container.
pub const HOST_ID: &str = "host";

/// Prefixes runtimes put before the id in a systemd scope name.
const SCOPE_PREFIXES: [&str; 6] = [
    "docker-",
    "cri-containerd-",
    "crio-",
    "libpod-",
    "nerdctl-",
    "containerd-",
];

/// The 12-character container id in a cgroup path, or `None` for a host process.
/// Accepts one path (`/kubepods/...`) or a whole `/proc/PID/cgroup` text.
pub fn container_id_from_cgroup(cgroup: &str) -> Option<&str> {
    // `/proc/PID/cgroup` lines are `hierarchy:controllers:path`; a bare path has no colon
    // before its first slash.
    for line in cgroup.lines() {
        let path = match line.find('/') {
            Some(i) => &line[i..],
            None => continue,
        };
        if let Some(id) = id_in_path(path) {
            return Some(id);
        }
    }
    None
}

/// The container id of a `/proc/PID/cgroup` text, read the way the kernel side reads it: from
/// the cgroup v2 line (`0::/path`) when there is one, so that /proc and exec events agree on
/// hybrid hosts; from any v1 line otherwise.
pub fn container_id_from_proc_cgroup(text: &str) -> Option<&str> {
    match text.lines().find_map(|l| l.strip_prefix("0::")) {
        Some(v2) => container_id_from_cgroup(v2),
        None => container_id_from_cgroup(text),
    }
}

/// The container id in leaf-first path components (as the kernel walk reports them).
pub fn container_id_from_components<'a>(
    leaf_first: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    leaf_first.into_iter().find_map(id_in_component)
}

fn id_in_path(path: &str) -> Option<&str> {
    // The innermost container wins: scan from the leaf.
    path.rsplit('/').find_map(id_in_component)
}

fn id_in_component(c: &str) -> Option<&str> {
    let c = c.strip_suffix(".scope").unwrap_or(c);
    if c.contains("-conmon-") {
        return None;
    }
    let id = SCOPE_PREFIXES
        .iter()
        .find_map(|p| c.strip_prefix(p))
        .unwrap_or(c);
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(&id[..SHORT_ID_LEN])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";

    #[test]
    fn recognises_each_runtime_form() {
        let cases = [
            format!("/docker/{ID}"),
            format!("0::/system.slice/docker-{ID}.scope"),
            format!("/kubepods/burstable/pod0f1e2d3c-aaaa-bbbb-cccc-0123456789ab/{ID}"),
            format!(
                "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f1e2d3c_aaaa_bbbb_cccc_0123456789ab.slice/cri-containerd-{ID}.scope"
            ),
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podx.slice/crio-{ID}.scope"
            ),
            format!("0::/machine.slice/libpod-{ID}.scope"),
            format!(
                "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
            ),
            format!("0::/default/{ID}"),
            format!("12:pids:/docker/{ID}\n11:cpu,cpuacct:/docker/{ID}\n0::/"),
        ];
        for c in &cases {
            assert_eq!(container_id_from_cgroup(c), Some(&ID[..12]), "{c}");
        }
    }

    /// Real `/proc/PID/cgroup` texts by runtime, cgroup version and driver (ids replaced).
    #[test]
    fn recognises_each_runtime_and_layout_in_proc_cgroup() {
        const OUTER: &str = "aa11bb22cc33dd44ee55ff6600771188aa11bb22cc33dd44ee55ff6600771188";
        let uid = "0f1e2d3c-aaaa-bbbb-cccc-0123456789ab";
        let suid = uid.replace('-', "_");
        let cases: Vec<(&str, String)> = vec![
            (
                "containerd, cgroup v1 only (no unified hierarchy), cgroupfs driver (kubelet)",
                format!(
                    "12:pids:/kubepods/besteffort/pod{uid}/{ID}\n4:memory:/kubepods/besteffort/pod{uid}/{ID}\n1:name=systemd:/kubepods/besteffort/pod{uid}/{ID}"
                ),
            ),
            (
                "containerd, cgroup v1 hybrid, cgroupfs: the unified line has it too",
                format!(
                    "9:name=systemd:/kubepods/burstable/pod{uid}/{ID}\n4:memory:/kubepods/burstable/pod{uid}/{ID}\n0::/kubepods/burstable/pod{uid}/{ID}"
                ),
            ),
            (
                "containerd, cgroup v2, systemd driver",
                format!(
                    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{suid}.slice/cri-containerd-{ID}.scope"
                ),
            ),
            (
                "containerd, cgroup v1, systemd driver",
                format!(
                    "11:cpu,cpuacct:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{suid}.slice/cri-containerd-{ID}.scope\n1:name=systemd:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{suid}.slice/cri-containerd-{ID}.scope"
                ),
            ),
            (
                "CRI-O, cgroup v2, systemd driver",
                format!("0::/kubepods.slice/kubepods-pod{suid}.slice/crio-{ID}.scope"),
            ),
            (
                "CRI-O, cgroup v1, cgroupfs driver",
                format!("7:devices:/kubepods/pod{uid}/crio-{ID}"),
            ),
            (
                "k3s containerd, cgroup v2, cgroupfs",
                format!("0::/kubepods/besteffort/pod{uid}/{ID}"),
            ),
            (
                "docker, cgroup v1, cgroupfs",
                format!("6:freezer:/docker/{ID}\n1:name=systemd:/docker/{ID}"),
            ),
            (
                "docker, cgroup v2, systemd",
                format!("0::/system.slice/docker-{ID}.scope"),
            ),
            (
                "podman rootful, cgroup v1, cgroupfs",
                format!("3:cpuset:/libpod_parent/libpod-{ID}"),
            ),
            (
                "podman rootless, cgroup v2, systemd",
                format!(
                    "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
                ),
            ),
            (
                "nested: docker in a docker container, the inner one wins",
                format!("0::/docker/{OUTER}/docker/{ID}"),
            ),
            (
                "nested: a pod in a kind node (docker container)",
                format!(
                    "0::/system.slice/docker-{OUTER}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{suid}.slice/cri-containerd-{ID}.scope"
                ),
            ),
        ];
        for (what, text) in &cases {
            assert_eq!(
                container_id_from_proc_cgroup(text),
                Some(&ID[..12]),
                "{what}: {text}"
            );
        }
    }

    #[test]
    fn host_and_monitor_processes_have_no_container() {
        let cases = [
            "0::/init.scope".to_owned(),
            "0::/user.slice/user-0.slice/session-3.scope".to_owned(),
            "0::/system.slice/containerd.service".to_owned(),
            format!("0::/machine.slice/libpod-conmon-{ID}.scope"),
            format!("0::/kubepods.slice/crio-conmon-{ID}.scope"),
            // A pod's cgroup itself (no container below it) and the kubepods roots.
            "0::/kubepods/besteffort/pod0f1e2d3c-aaaa-bbbb-cccc-0123456789ab".to_owned(),
            "0::/kubepods.slice/kubepods-burstable.slice".to_owned(),
            "0::/system.slice/kubelet.service".to_owned(),
            // 63 hex digits is not an id.
            format!("/docker/{}", &ID[..63]),
            "0::/".to_owned(),
            String::new(),
        ];
        for c in &cases {
            assert_eq!(container_id_from_cgroup(c), None, "{c}");
        }
    }

    #[test]
    fn proc_cgroup_prefers_the_v2_line() {
        let hybrid = format!("4:memory:/docker/{ID}\n0::/user.slice/session-1.scope\n");
        assert_eq!(container_id_from_proc_cgroup(&hybrid), None);
        let v2 = format!("4:memory:/\n0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(container_id_from_proc_cgroup(&v2), Some(&ID[..12]));
        let v1_only = format!("4:memory:/docker/{ID}\n1:cpu:/docker/{ID}\n");
        assert_eq!(container_id_from_proc_cgroup(&v1_only), Some(&ID[..12]));
    }

    #[test]
    fn components_are_read_leaf_first() {
        let scope = format!("cri-containerd-{ID}.scope");
        let comps = [
            scope.as_str(),
            "kubepods-besteffort.slice",
            "kubepods.slice",
        ];
        assert_eq!(container_id_from_components(comps), Some(&ID[..12]));
        assert_eq!(
            container_id_from_components(["session-1.scope", "user.slice"]),
            None
        );
    }
}
