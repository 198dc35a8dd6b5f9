//! Container metadata from the node's container runtimes: CRI (containerd, CRI-O) and the
//! Docker Engine API (docker, podman). Lookups run in their own task, each bounded by a
//! timeout; the event loop only sends ids and receives answers, so a slow or restarting
//! runtime never stalls capture. Until an answer arrives (or when no runtime answers) the
//! fields are absent and print `<NA>`, as in Falco.
//!
//! - [`info`]: what is known about one container and its pod
//! - [`cache`]: the bounded cache the event loop reads
//! - [`cri`], [`docker`]: the two runtime APIs
//! - [`lookup`]: the lookup task
//! - [`hold`]: events of a container whose metadata is in flight, held back briefly

pub mod cache;
pub mod cri;
pub mod docker;
pub mod hold;
pub mod info;
pub mod lookup;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cache::ContainerDb;
pub use info::{ContainerInfo, Mount, MountKey, PodInfo};

/// A lookup that did not give an answer. Every variant names the runtime socket.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("container runtime {0}: cannot connect: {1}")]
    Connect(String, String),
    #[error("container runtime {0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("container runtime {0}: call failed ({1:?}): {2}")]
    Rpc(String, tonic::Code, String),
    #[error("container runtime {0}: unreadable answer: {1}")]
    BadAnswer(String, String),
    #[error("container runtime {0}: no answer within {1:?}")]
    Timeout(String, Duration),
}

/// CRI sockets tried, relative to `host_root`: containerd, k3s's containerd, CRI-O.
pub const DEFAULT_CRI_SOCKETS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/run/k3s/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
];

/// Docker Engine API sockets tried, relative to `host_root`: docker, podman.
pub const DEFAULT_DOCKER_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/podman/podman.sock"];

/// `path` under `host_root` (`/host` + `/run/x.sock`); `path` itself when `host_root` is empty.
pub fn under_root(host_root: &Path, path: &Path) -> PathBuf {
    if host_root.as_os_str().is_empty() {
        return path.to_path_buf();
    }
    host_root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Falco's `container.type` for a Docker-API socket: `podman` for podman's, else `docker`.
pub fn docker_api_kind(socket: &Path) -> &'static str {
    if socket.to_string_lossy().contains("podman") {
        "podman"
    } else {
        "docker"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_resolve_under_the_host_root() {
        let s = Path::new("/run/containerd/containerd.sock");
        assert_eq!(under_root(Path::new(""), s), s);
        assert_eq!(
            under_root(Path::new("/host"), s),
            Path::new("/host/run/containerd/containerd.sock")
        );
        assert_eq!(
            docker_api_kind(Path::new("/run/podman/podman.sock")),
            "podman"
        );
        assert_eq!(docker_api_kind(Path::new("/var/run/docker.sock")), "docker");
    }
}
