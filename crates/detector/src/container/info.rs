//! What a container runtime says about one container (and, under Kubernetes, its pod), in
//! the shape field extraction reads: every text Falco prints is built once when the answer
//! arrives, so extracting a field never allocates.

/// A bind or volume mount of a container (Falco's `container.mount*` fields).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mount {
    /// Host path (`container.mount.source`).
    pub source: String,
    /// Path inside the container (`container.mount.dest`).
    pub dest: String,
    /// Mount mode as the runtime reports it (docker's `Mode`, empty over CRI).
    pub mode: String,
    /// Writable (`container.mount.rdwr`).
    pub rdwr: bool,
    /// `private`, `rslave` or `rshared` (CRI's propagation, named as Falco names it).
    pub propagation: String,
}

/// The Kubernetes pod a container runs in (from the CRI pod sandbox).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodInfo {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// Full sandbox id (64 hex digits).
    pub sandbox_id: String,
    /// Pod labels, sorted by key.
    pub labels: Vec<(String, String)>,
    /// `[k1:v1, k2:v2]`, Falco's `k8s.pod.labels` text.
    pub labels_text: String,
    /// The pod's primary IP, empty when the sandbox reports none.
    pub ip: String,
}

impl PodInfo {
    /// Set `labels` (sorted) and their text.
    pub fn set_labels(&mut self, mut labels: Vec<(String, String)>) {
        labels.sort();
        self.labels_text = list_text(labels.iter().map(|(k, v)| format!("{k}:{v}")));
        self.labels = labels;
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What a runtime told us about one container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerInfo {
    /// The full id (64 hex digits), `container.full_id`.
    pub full_id: String,
    pub name: String,
    /// Falco's `container.type`: `docker`, `podman`, `containerd`, `cri-o`.
    pub runtime: &'static str,
    /// The image as configured (`nginx:1.25`, `registry/x/app@sha256:...`).
    pub image: String,
    pub image_repository: String,
    pub image_tag: String,
    /// `sha256:...` of the image's repository digest, when the runtime knows it.
    pub image_digest: String,
    /// The image id (`container.image.id`, 12 characters as Falco prints it).
    pub image_id: String,
    pub privileged: bool,
    pub mounts: Vec<Mount>,
    /// `source:dest:mode:rdwr:propagation,...`, Falco's `container.mounts` text.
    pub mounts_text: String,
    /// Start (or creation) time, ns since the epoch; 0 when unknown.
    pub start_ts: u64,
    /// The pod, for containers started by a CRI runtime on behalf of the kubelet.
    pub pod: Option<PodInfo>,
}

impl ContainerInfo {
    /// Set `image` and the repository and tag derived from it.
    pub fn set_image(&mut self, image: &str) {
        let (repo, tag) = split_image(image);
        self.image_repository = repo.to_owned();
        self.image_tag = tag.to_owned();
        if let Some((_, digest)) = image.split_once('@')
            && self.image_digest.is_empty()
        {
            self.image_digest = digest.to_owned();
        }
        self.image = image.to_owned();
    }

    /// Set `mounts` and their text.
    pub fn set_mounts(&mut self, mounts: Vec<Mount>) {
        self.mounts_text = mounts
            .iter()
            .map(|m| {
                format!(
                    "{}:{}:{}:{}:{}",
                    m.source, m.dest, m.mode, m.rdwr, m.propagation
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        self.mounts = mounts;
    }

    /// The mount chosen by a field argument: an index (`[0]`) or a host source path, which
    /// may be a glob (`[/proc*]`), as in Falco's `container.mount.dest[/etc]`.
    pub fn mount_by(&self, key: MountKey<'_>) -> Option<&Mount> {
        match key {
            MountKey::Index(i) => self.mounts.get(i),
            MountKey::Source(pattern) => self.mounts.iter().find(|m| glob(pattern, &m.source)),
        }
    }
}

/// How a `container.mount*[...]` field names its mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKey<'a> {
    Index(usize),
    Source(&'a str),
}

/// `[a, b]`: Falco's text for a list of values.
fn list_text(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    format!("[{}]", v.join(", "))
}

/// Shell-style match of `text` against `pattern` (`*`, `?`; no character classes), as
/// fnmatch without flags: `*` also crosses `/`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// `registry:5000/team/app:1.2@sha256:..` → (`registry:5000/team/app`, `1.2`).
pub fn split_image(image: &str) -> (&str, &str) {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest[last_slash..].rfind(':') {
        Some(i) => (
            &no_digest[..last_slash + i],
            &no_digest[last_slash + i + 1..],
        ),
        None => (no_digest, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_split_into_repository_and_tag() {
        assert_eq!(split_image("nginx:1.25"), ("nginx", "1.25"));
        assert_eq!(
            split_image("registry:5000/team/app:2@sha256:abc"),
            ("registry:5000/team/app", "2")
        );
        assert_eq!(split_image("registry:5000/app"), ("registry:5000/app", ""));
        assert_eq!(split_image(""), ("", ""));
        let mut c = ContainerInfo::default();
        c.set_image("docker.io/library/busybox@sha256:0123");
        assert_eq!(c.image_repository, "docker.io/library/busybox");
        assert_eq!(c.image_digest, "sha256:0123");
    }

    #[test]
    fn mounts_are_found_by_index_or_source_glob() {
        let mut c = ContainerInfo::default();
        c.set_mounts(vec![
            Mount {
                source: "/etc".into(),
                dest: "/host/etc".into(),
                rdwr: false,
                propagation: "private".into(),
                ..Mount::default()
            },
            Mount {
                source: "/proc/sys".into(),
                dest: "/hostproc".into(),
                rdwr: true,
                propagation: "rslave".into(),
                ..Mount::default()
            },
        ]);
        assert_eq!(
            c.mounts_text,
            "/etc:/host/etc::false:private,/proc/sys:/hostproc::true:rslave"
        );
        let dest = |k| c.mount_by(k).map(|m| m.dest.as_str());
        assert_eq!(dest(MountKey::Source("/etc")), Some("/host/etc"));
        assert_eq!(dest(MountKey::Source("/proc*")), Some("/hostproc"));
        assert_eq!(dest(MountKey::Source("/root*")), None);
        assert_eq!(dest(MountKey::Source("/")), None);
        assert_eq!(dest(MountKey::Index(1)), Some("/hostproc"));
        assert_eq!(dest(MountKey::Index(2)), None);
    }

    #[test]
    fn globs_match_like_fnmatch() {
        assert!(glob("/proc*", "/proc"));
        assert!(glob("/proc*", "/proc/sys/kernel"));
        assert!(glob("/ro?t", "/root"));
        assert!(!glob("/etc", "/etc/kubernetes"));
        assert!(glob("*", ""));
        assert!(!glob("a*b", "acbd"));
    }

    #[test]
    fn pod_labels_print_as_falco_does() {
        let mut p = PodInfo::default();
        p.set_labels(vec![
            ("tier".into(), "web".into()),
            ("app".into(), "shop".into()),
        ]);
        assert_eq!(p.labels_text, "[app:shop, tier:web]");
        assert_eq!(p.label("tier"), Some("web"));
        assert_eq!(p.label("none"), None);
    }
}
