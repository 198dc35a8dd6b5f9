//! `config/detector.yaml`: the detector's settings, with defaults that work without secrets and
//! `AERIE_DETECTOR__SECTION__KEY` environment overrides.

mod extras;
mod output_spec;

pub use aerie_alert::Secret;
pub use extras::{AppendOutputConfig, ExtraFieldConfig, MatchConfig, RuleMatchingConfig};
pub use output_spec::{OutputSpec, ParseOutputError};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Prefix of environment overrides: `AERIE_DETECTOR__METRICS__LISTEN=127.0.0.1:9000`.
pub const ENV_PREFIX: &str = "AERIE_DETECTOR";

/// Everything `aerie-detector run` needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Rule files, loaded in order (later files may append to or override earlier ones).
    pub rules: Vec<PathBuf>,
    /// Where alerts go: `stdout`, `file:PATH` or `http(s)://HOST:PORT/PATH`.
    pub outputs: Vec<OutputSpec>,
    /// Host name written in alerts; empty means the kernel's host name.
    pub hostname: String,
    /// Lowest priority that produces an alert (Falco's `priority`).
    pub min_priority: aerie_alert::Priority,
    /// Where the host's root filesystem is mounted when the detector runs in a container
    /// (the Helm chart mounts it at `/host`): user and group names come from
    /// `<host_root>/etc/passwd` and `<host_root>/etc/group`. Empty: this filesystem's `/`.
    pub host_root: PathBuf,
    /// `all` (the default): every rule that matches an event raises an alert, so a rule
    /// you add is never hidden by a default rule matching the same event. `first`: stop at
    /// the first match in load order (Falco's default).
    pub rule_matching: RuleMatchingConfig,
    /// Added to the `output_fields` of every alert (Falco's `static_fields`), e.g.
    /// `k8s.cluster.name: ${CLUSTER_NAME}`. `${VAR}` is replaced from the environment.
    pub static_fields: BTreeMap<String, String>,
    /// Falco's `append_output`: text and fields added to the alerts of matching rules.
    pub append_output: Vec<AppendOutputConfig>,
    pub capture: CaptureConfig,
    pub state: StateConfig,
    pub http_output: HttpOutputConfig,
    pub metrics: MetricsConfig,
    pub drops: DropAlertConfig,
    pub k8s_audit: K8sAuditConfig,
    pub container: ContainerConfig,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            rules: vec![PathBuf::from("config/rules/aerie_rules.yaml")],
            outputs: vec![
                OutputSpec::Stdout,
                OutputSpec::File(PathBuf::from("run/alerts.jsonl")),
                OutputSpec::Http("http://127.0.0.1:2801/".to_owned()),
            ],
            hostname: String::new(),
            min_priority: aerie_alert::Priority::Debug,
            host_root: PathBuf::new(),
            rule_matching: RuleMatchingConfig::All,
            static_fields: BTreeMap::new(),
            append_output: Vec::new(),
            capture: CaptureConfig::default(),
            state: StateConfig::default(),
            http_output: HttpOutputConfig::default(),
            metrics: MetricsConfig::default(),
            drops: DropAlertConfig::default(),
            k8s_audit: K8sAuditConfig::default(),
            container: ContainerConfig::default(),
        }
    }
}

/// Kernel-side transport sizes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Size of each BPF ring buffer in bytes (a power of two, a multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// Keep opens whose path no loaded rule can match (and the closes of their descriptors)
    /// in the kernel. On by default; off sends every open, as Falco does.
    pub path_filter: bool,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            ring_buffer_bytes: 8 << 20,
            path_filter: true,
        }
    }
}

/// Memory bounds of the process and fd tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Most processes tracked at once; exited ones are evicted first, then the oldest.
    pub max_processes: usize,
    /// Most open descriptors remembered per process.
    pub max_fds_per_process: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            max_processes: 131_072,
            max_fds_per_process: 4096,
        }
    }
}

/// Falco `http_output` plus aerie's retry queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpOutputConfig {
    /// Per-request timeout.
    pub timeout_ms: u64,
    /// Alerts held in memory while the receiver is unreachable, before spilling to disk.
    pub queue_capacity: usize,
    /// Directory of the on-disk spill file.
    pub spill_dir: PathBuf,
    /// Most bytes kept on disk; alerts beyond are dropped and counted.
    pub spill_max_bytes: u64,
    /// First retry delay; doubles up to `max_backoff_ms`.
    pub min_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Sent as `Authorization: Bearer <token>` (the router's ingest `auth`). Prefer
    /// `bearer_token_file` (a mounted Kubernetes Secret) or the environment
    /// (`AERIE_DETECTOR__HTTP_OUTPUT__BEARER_TOKEN`) so the token never sits in this file.
    pub bearer_token: Option<Secret>,
    /// A file holding the bearer token (surrounding whitespace is ignored).
    pub bearer_token_file: Option<PathBuf>,
    /// TLS towards an `https://` receiver.
    pub tls: HttpTlsConfig,
}

/// TLS settings of the HTTP output (Falco's `http_output` `ca_cert`, `mtls`, `insecure`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpTlsConfig {
    /// PEM bundle of CAs to trust in addition to the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mTLS; needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub client_key_file: Option<PathBuf>,
    /// Skip certificate verification. Only by explicit opt-in, and logged as a warning.
    pub insecure: bool,
}

impl Default for HttpOutputConfig {
    fn default() -> Self {
        HttpOutputConfig {
            timeout_ms: 5_000,
            queue_capacity: 10_000,
            spill_dir: PathBuf::from("run/spool"),
            spill_max_bytes: 256 << 20,
            min_backoff_ms: 100,
            max_backoff_ms: 30_000,
            bearer_token: None,
            bearer_token_file: None,
            tls: HttpTlsConfig::default(),
        }
    }
}

/// The Kubernetes audit webhook (Falco's k8saudit plugin: `http://:9765/k8s-audit`): the API
/// server's webhook backend posts audit events here and the `k8s_audit` rules judge them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct K8sAuditConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// URL path the events are posted to.
    pub path: String,
    /// Largest request body accepted (the API server batches events).
    pub max_body_bytes: usize,
    /// Audit log files to follow, independently of `enabled` (the API server's log backend
    /// with `--audit-log-format=json`: one event per line). Rotation by rename and by
    /// copy-truncate is followed; the read position survives restarts.
    pub files: Vec<PathBuf>,
    /// Where the read position of each file is kept (one small state file per file).
    pub state_dir: PathBuf,
    /// How often the files are checked for new lines and rotation.
    pub poll_interval_ms: u64,
}

impl Default for K8sAuditConfig {
    fn default() -> Self {
        K8sAuditConfig {
            enabled: false,
            listen: SocketAddr::from(([0, 0, 0, 0], 9765)),
            path: "/k8s-audit".to_owned(),
            max_body_bytes: 10 << 20,
            files: Vec::new(),
            state_dir: PathBuf::from("run/k8s-audit"),
            poll_interval_ms: 250,
        }
    }
}

/// Container metadata from the node's runtimes (see `crate::container`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerConfig {
    /// CRI sockets (containerd, CRI-O), asked first, in order; resolved under `host_root`.
    pub cri_sockets: Vec<PathBuf>,
    /// Docker Engine API sockets (docker, podman), asked after the CRI ones.
    pub docker_sockets: Vec<PathBuf>,
    /// Bound of one metadata lookup, and the longest a new container's events wait for it
    /// before being judged with what is known (Falco's `container_metadata_timeout`).
    pub metadata_timeout_ms: u64,
    /// Most containers whose metadata is cached.
    pub cache_size: usize,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        ContainerConfig {
            cri_sockets: crate::container::DEFAULT_CRI_SOCKETS
                .iter()
                .map(PathBuf::from)
                .collect(),
            docker_sockets: crate::container::DEFAULT_DOCKER_SOCKETS
                .iter()
                .map(PathBuf::from)
                .collect(),
            metadata_timeout_ms: 500,
            cache_size: crate::container::cache::DEFAULT_CAPACITY,
        }
    }
}

impl ContainerConfig {
    /// The metadata lookup settings, with every socket under `host_root`.
    pub fn lookup(&self, host_root: &Path) -> crate::container::lookup::LookupConfig {
        let under = |v: &[PathBuf]| {
            v.iter()
                .map(|p| crate::container::under_root(host_root, p))
                .collect()
        };
        crate::container::lookup::LookupConfig {
            cri_sockets: under(&self.cri_sockets),
            docker_sockets: under(&self.docker_sockets),
            timeout: std::time::Duration::from_millis(self.metadata_timeout_ms.max(1)),
        }
    }
}

/// `/healthz` and Prometheus `/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// Listen address; must be loopback unless you put a proxy in front.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8765)),
        }
    }
}

/// Falco's "syscall event drop" internal alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DropAlertConfig {
    /// Raise the alert when the share of dropped events in one check window exceeds this.
    pub threshold_ratio: f64,
    /// Length of one check window.
    pub window_ms: u64,
    /// At most one alert per this many milliseconds.
    pub min_interval_ms: u64,
}

impl Default for DropAlertConfig {
    fn default() -> Self {
        DropAlertConfig {
            threshold_ratio: 0.001,
            window_ms: 1_000,
            min_interval_ms: 30_000,
        }
    }
}

/// The configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading configuration {path}: {source}")]
    Load {
        path: PathBuf,
        #[source]
        source: config::ConfigError,
    },
    #[error("configuration {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl DetectorConfig {
    /// Read `path` (YAML) over the built-in defaults, then apply `AERIE_DETECTOR__…` overrides.
    /// A missing file is an error only when `required`.
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        Self::load_with_env(path, required, std::env::vars())
    }

    /// As [`DetectorConfig::load`], with the environment given explicitly (tests).
    pub fn load_with_env(
        path: &Path,
        required: bool,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let env_source = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("rules")
            .with_list_parse_key("outputs")
            .with_list_parse_key("k8s_audit.files")
            .with_list_parse_key("container.cri_sockets")
            .with_list_parse_key("container.docker_sockets")
            .try_parsing(true)
            .source(Some(env.iter().cloned().collect()));
        let built = config::Config::builder()
            .add_source(
                config::File::from(path)
                    .format(config::FileFormat::Yaml)
                    .required(required),
            )
            .add_source(env_source)
            .build()
            .map_err(|source| ConfigError::Load {
                path: path.to_owned(),
                source,
            })?;
        let mut cfg: DetectorConfig =
            built
                .try_deserialize()
                .map_err(|source| ConfigError::Load {
                    path: path.to_owned(),
                    source,
                })?;
        cfg.expand_env(&env)
            .map_err(|message| ConfigError::Invalid {
                path: path.to_owned(),
                message,
            })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(cfg)
    }

    /// `/etc/passwd` and `/etc/group` of the host (below `host_root`).
    pub fn user_db_paths(&self) -> (PathBuf, PathBuf) {
        let root = if self.host_root.as_os_str().is_empty() {
            Path::new("/")
        } else {
            self.host_root.as_path()
        };
        (root.join("etc/passwd"), root.join("etc/group"))
    }

    fn validate(&self) -> Result<(), String> {
        let rb = self.capture.ring_buffer_bytes;
        if !rb.is_power_of_two() || rb < 4096 {
            return Err(format!(
                "capture.ring_buffer_bytes = {rb}: must be a power of two of at least 4096"
            ));
        }
        if self.state.max_processes == 0 {
            return Err("state.max_processes must be at least 1".into());
        }
        if self.http_output.queue_capacity == 0 {
            return Err("http_output.queue_capacity must be at least 1".into());
        }
        if self.k8s_audit.poll_interval_ms == 0 {
            return Err("k8s_audit.poll_interval_ms must be at least 1".into());
        }
        if !self.k8s_audit.path.starts_with('/') {
            return Err(format!(
                "k8s_audit.path = {:?}: must start with /",
                self.k8s_audit.path
            ));
        }
        let h = &self.http_output;
        if h.bearer_token.as_ref().is_some_and(|t| !t.is_empty()) && h.bearer_token_file.is_some() {
            return Err("http_output: give bearer_token or bearer_token_file, not both".into());
        }
        if h.tls.client_cert_file.is_some() != h.tls.client_key_file.is_some() {
            return Err(
                "http_output.tls: client_cert_file and client_key_file go together (mTLS)".into(),
            );
        }
        if self.container.metadata_timeout_ms == 0 || self.container.cache_size == 0 {
            return Err(
                "container.metadata_timeout_ms and container.cache_size must be at least 1".into(),
            );
        }
        if !(0.0..=1.0).contains(&self.drops.threshold_ratio) {
            return Err(format!(
                "drops.threshold_ratio = {}: must be between 0 and 1",
                self.drops.threshold_ratio
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("detector.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aerie-cfg-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn missing_optional_file_gives_defaults() {
        let cfg =
            DetectorConfig::load_with_env(Path::new("/nonexistent/x.yaml"), false, []).unwrap();
        assert_eq!(
            cfg.rules,
            vec![PathBuf::from("config/rules/aerie_rules.yaml")]
        );
        assert_eq!(cfg.outputs.len(), 3);
        assert_eq!(cfg.metrics.listen.port(), 8765);
    }

    #[test]
    fn missing_required_file_names_the_path() {
        let err = DetectorConfig::load_with_env(Path::new("/nonexistent/x.yaml"), true, [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/x.yaml"), "{err}");
    }

    #[test]
    fn file_values_and_env_overrides_apply() {
        let d = tmpdir("env");
        let p = write(
            &d,
            "rules: [a.yaml, b.yaml]\noutputs: [stdout, 'file:/tmp/x.jsonl']\nmetrics:\n  listen: 127.0.0.1:9100\n",
        );
        let cfg = DetectorConfig::load_with_env(
            &p,
            true,
            [
                (
                    "AERIE_DETECTOR__METRICS__LISTEN".into(),
                    "127.0.0.1:9200".into(),
                ),
                (
                    "AERIE_DETECTOR__OUTPUTS".into(),
                    "stdout,http://127.0.0.1:1/".into(),
                ),
                ("UNRELATED".into(), "1".into()),
            ],
        )
        .unwrap();
        assert_eq!(
            cfg.rules,
            vec![PathBuf::from("a.yaml"), PathBuf::from("b.yaml")]
        );
        assert_eq!(cfg.metrics.listen.port(), 9200);
        assert_eq!(
            cfg.outputs,
            vec![
                OutputSpec::Stdout,
                OutputSpec::Http("http://127.0.0.1:1/".into())
            ]
        );
        let cfg = DetectorConfig::load_with_env(
            &p,
            true,
            [(
                "AERIE_DETECTOR__K8S_AUDIT__FILES".into(),
                "/var/log/a.log,/var/log/b.log".into(),
            )],
        )
        .unwrap();
        assert_eq!(
            cfg.k8s_audit.files,
            [
                PathBuf::from("/var/log/a.log"),
                PathBuf::from("/var/log/b.log")
            ]
        );
    }

    #[test]
    fn bad_values_are_reported_with_the_key() {
        let d = tmpdir("bad");
        let p = write(&d, "outputs: [carrier-pigeon]\n");
        let err = DetectorConfig::load_with_env(&p, true, [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("carrier-pigeon"), "{err}");

        let p = write(&d, "capture:\n  ring_buffer_bytes: 1000\n");
        let err = DetectorConfig::load_with_env(&p, true, [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ring_buffer_bytes"), "{err}");

        let p = write(&d, "metrcs: {}\n");
        let err = DetectorConfig::load_with_env(&p, true, [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrcs"), "{err}");
    }

    #[test]
    fn container_section_resolves_sockets_under_host_root() {
        let d = tmpdir("container");
        let p = write(
            &d,
            "host_root: /host\ncontainer:\n  cri_sockets: [/run/containerd/containerd.sock]\n  metadata_timeout_ms: 250\n",
        );
        let cfg = DetectorConfig::load_with_env(
            &p,
            true,
            [(
                "AERIE_DETECTOR__CONTAINER__DOCKER_SOCKETS".into(),
                "/var/run/docker.sock,/run/podman/podman.sock".into(),
            )],
        )
        .unwrap();
        let l = cfg.container.lookup(&cfg.host_root);
        assert_eq!(
            l.cri_sockets,
            [PathBuf::from("/host/run/containerd/containerd.sock")]
        );
        assert_eq!(
            l.docker_sockets,
            [
                PathBuf::from("/host/var/run/docker.sock"),
                PathBuf::from("/host/run/podman/podman.sock")
            ]
        );
        assert_eq!(l.timeout, std::time::Duration::from_millis(250));
        // Defaults: containerd, k3s, CRI-O; 500 ms.
        let def = ContainerConfig::default().lookup(Path::new(""));
        assert_eq!(def.cri_sockets.len(), 3);
        assert_eq!(def.timeout, std::time::Duration::from_millis(500));
        let p = write(&d, "container:\n  metadata_timeout_ms: 0\n");
        let err = DetectorConfig::load_with_env(&p, true, [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("container.metadata_timeout_ms"), "{err}");
        let p = write(&d, "container:\n  cri_socket: /x\n");
        let err = DetectorConfig::load_with_env(&p, true, [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cri_socket"), "{err}");
    }

    #[test]
    fn shipped_config_parses() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/detector.yaml");
        let cfg = DetectorConfig::load_with_env(&p, true, []).unwrap();
        assert!(cfg.rules.iter().any(|r| r.ends_with("aerie_rules.yaml")));
        assert!(cfg.outputs.contains(&OutputSpec::Stdout));
        assert!(cfg.metrics.listen.ip().is_loopback());
    }

    #[test]
    fn bearer_token_comes_from_env_and_is_redacted_in_debug() {
        let cfg = DetectorConfig::load_with_env(
            Path::new("/nonexistent/x.yaml"),
            false,
            [(
                "AERIE_DETECTOR__HTTP_OUTPUT__BEARER_TOKEN".into(),
                "s3cret-t0ken".into(),
            )],
        )
        .unwrap();
        assert_eq!(
            cfg.http_output.bearer_token.as_ref().map(Secret::expose),
            Some("s3cret-t0ken")
        );
        let dump = format!("{cfg:?}");
        assert!(!dump.contains("s3cret-t0ken"), "{dump}");
        assert!(dump.contains("<redacted>"), "{dump}");
    }

    #[test]
    fn token_and_tls_conflicts_name_the_keys() {
        let d = tmpdir("auth");
        let p = write(
            &d,
            "http_output:\n  bearer_token: a\n  bearer_token_file: /run/secrets/t\n",
        );
        let err = DetectorConfig::load_with_env(&p, true, [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("bearer_token_file"), "{err}");

        let p = write(&d, "http_output:\n  tls:\n    client_cert_file: /c.pem\n");
        let err = DetectorConfig::load_with_env(&p, true, [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("client_key_file"), "{err}");
    }

    #[test]
    fn host_root_moves_the_user_databases() {
        let d = DetectorConfig::default();
        assert_eq!(
            d.user_db_paths(),
            (PathBuf::from("/etc/passwd"), PathBuf::from("/etc/group"))
        );
        let cfg = DetectorConfig::load_with_env(
            Path::new("/nonexistent/x.yaml"),
            false,
            [("AERIE_DETECTOR__HOST_ROOT".into(), "/host".into())],
        )
        .unwrap();
        assert_eq!(
            cfg.user_db_paths(),
            (
                PathBuf::from("/host/etc/passwd"),
                PathBuf::from("/host/etc/group")
            )
        );
    }
}
