//! Configuration: YAML through the `config` crate, `${ENV}` interpolation, `*_file` secrets,
//! falcosidekick environment names, and validation with errors that name file, field and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aerie_alert::Priority;
use serde::Deserialize;

use crate::duration::{parse_duration, parse_size};
use crate::matcher::Matcher;
pub use crate::matcher::{RawFieldCond, RawFieldSpec, RawMatch};
use crate::outputs::common::TlsConfig;
use crate::outputs::{Kind, RawKind};
use crate::yaml_lines::KeyLines;

/// The port falcosidekick listens on; Falco's `http_output` points here.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:2801";
pub use crate::outputs::pagerduty::{EU_URL as PAGERDUTY_EU_URL, US_URL as PAGERDUTY_US_URL};

/// A configuration error: which file, which field, which line (when it can be located) and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {field}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub field: String,
    pub reason: String,
}

pub use aerie_alert::Secret;

// ---------------------------------------------------------------------------------------------
// Raw (as written) configuration.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    max_body_size: Option<String>,
    queue_capacity: Option<usize>,
    queue: Option<crate::durable::RawQueue>,
    templates_dir: Option<String>,
    dedup: Option<RawDedup>,
    #[serde(default)]
    outputs: Vec<RawOutput>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    default_outputs: Vec<String>,
    request_timeout: Option<String>,
    auth: Option<RawAuth>,
    tls: Option<RawServerTls>,
    test_alert: Option<RawTestAlert>,
}

/// `POST /test` as written (`test_alert:`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestAlert {
    #[serde(default)]
    routed: bool,
}

/// Ingest authentication as written (`auth:`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
    client_ca_file: Option<String>,
    protect_metrics: Option<bool>,
}

/// The ingest TLS server as written (`tls:`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServerTls {
    cert_file: String,
    key_file: String,
    client_ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDedup {
    window: Option<String>,
    key: Option<Vec<String>>,
    #[serde(default)]
    summary: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    per_second: Option<u32>,
    per_minute: Option<u32>,
    burst: Option<u32>,
    #[serde(default)]
    per_key: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<u32>,
    initial_backoff: Option<String>,
    max_backoff: Option<String>,
    max_retry_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<String>,
    client_cert_file: Option<String>,
    client_key_file: Option<String>,
    #[serde(default)]
    insecure: bool,
}

/// One output as written: the keys every output has, and (flattened, selected by `type:`)
/// the keys of its kind, which reject unknown keys themselves.
#[derive(Debug, Deserialize)]
struct RawOutput {
    name: String,
    min_priority: Option<String>,
    template: Option<String>,
    rate_limit: Option<RawRateLimit>,
    timeout: Option<String>,
    retry: Option<RawRetry>,
    tls: Option<RawTls>,
    proxy: Option<String>,
    #[serde(flatten)]
    kind: RawKind,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<String>,
    #[serde(rename = "match")]
    matcher: Option<RawMatch>,
    #[serde(default)]
    outputs: Vec<String>,
    #[serde(default, rename = "continue")]
    cont: bool,
    dedup: Option<RawRouteDedup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouteDedup {
    window: Option<String>,
    key: Option<Vec<String>>,
    summary: Option<bool>,
    #[serde(default)]
    disabled: bool,
}

// ---------------------------------------------------------------------------------------------
// Validated configuration.

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (for messages).
    pub source: String,
    pub listen: String,
    pub max_body_bytes: usize,
    pub queue_capacity: usize,
    /// The durable queue (`queue:`); without `queue.dir` queues are in memory only.
    pub queue: crate::durable::QueueConfig,
    pub templates_dir: PathBuf,
    pub dedup: DedupConfig,
    pub outputs: Vec<OutputConfig>,
    pub routes: Vec<RouteConfig>,
    /// Indexes into `outputs` for alerts that match no route.
    pub default_outputs: Vec<usize>,
    /// Longest time a request may take to arrive and be answered (slow bodies get 408).
    pub request_timeout: Duration,
    /// Ingest authentication (bearer token); mTLS lives in `server_tls`.
    pub auth: AuthConfig,
    /// Serve ingest over TLS (and require client certificates when a client CA is set).
    pub server_tls: Option<ServerTlsConfig>,
    /// `test_alert.routed`: `POST /test` goes through the routes like any alert. Unset (the
    /// default, as in falcosidekick): the test alert goes to every output.
    pub test_alert_routed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DedupConfig {
    /// Zero disables dedup.
    pub window: Duration,
    pub key: Vec<String>,
    /// Send a summary when a window ends with suppressed repeats.
    pub summary: bool,
}

pub use crate::dedup::DEFAULT_DEDUP_KEY;

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Tokens per minute.
    pub per_minute: u32,
    pub burst: u32,
    pub per_key: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Cap on a server's `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone)]
pub struct OutputConfig {
    pub name: String,
    /// The kind (`type:`) with its own validated settings.
    pub kind: Kind,
    pub min_priority: Priority,
    /// Template file name under `templates_dir`; `None` sends the Falco JSON.
    pub template: Option<String>,
    pub rate_limit: Option<RateLimitConfig>,
    /// Per request, for HTTP outputs.
    pub timeout: Duration,
    pub retry: RetryConfig,
    /// Outbound TLS, for HTTP outputs.
    pub tls: TlsConfig,
    /// HTTP outputs: the proxy every request goes through (`http://host:port`).
    pub proxy: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    /// The `match:` block as written (for messages and lints).
    pub matcher: Option<RawMatch>,
    /// The same, compiled once; `None` matches every alert.
    pub compiled: Option<Matcher>,
    pub outputs: Vec<usize>,
    pub cont: bool,
    /// Route-level dedup override; `None` uses the global setting.
    pub dedup: Option<DedupConfig>,
    /// Line of the route in the config file, for messages.
    pub line: Option<usize>,
}

/// Overrides `auth.bearer_token` (a Kubernetes Secret mounted as an environment variable).
pub const TOKEN_ENV: &str = "AERIE_ROUTER_TOKEN";
/// Default for `request_timeout`: a request must arrive and be answered within this.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Required on ingest when set; redacted in `Debug`.
    pub bearer_token: Option<Secret>,
    /// Require the token on `/metrics` too (off by default: scrapers and probes stay simple).
    pub protect_metrics: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerTlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// When set, every client must present a certificate signed by this CA (mTLS).
    pub client_ca_file: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------------
// Loading.

/// How the process environment is consulted: the real one, or a fixed map (tests).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Config {
    /// Load and validate a config file against the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, &ProcessEnv)
    }

    pub fn load_with_env(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            field: ".".into(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse(&file, &text, env)
    }

    /// Parse config text; `file` only names it in errors.
    pub fn parse(file: &str, text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        let err = |line: Option<usize>, field: &str, reason: String| ConfigError {
            file: file.to_owned(),
            line,
            field: field.to_owned(),
            reason,
        };
        let text =
            interpolate(text, env).map_err(|(line, reason)| err(Some(line), "${}", reason))?;
        let lines = KeyLines::new(&text);
        let raw: RawConfig = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Yaml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| {
                let mut msg = e.to_string();
                let key = error_path(&msg);
                if key.starts_with("outputs[") && msg.contains("unknown field") {
                    // The list serde gives is the kind's own keys only.
                    msg.push_str(
                        " (keys every output takes: name, type, min_priority, template, rate_limit, timeout, retry, tls, proxy)",
                    );
                }
                let line = yaml_line(&msg)
                    .or_else(|| lines.line(&key))
                    .or_else(|| key_line(&text, &msg));
                err(line, &key, msg)
            })?;
        Builder {
            file,
            text: &text,
            lines: &lines,
            env,
        }
        .build(raw)
    }
}

struct Builder<'a> {
    file: &'a str,
    text: &'a str,
    lines: &'a KeyLines,
    env: &'a dyn Env,
}

impl Builder<'_> {
    fn err(&self, field: &str, needle: Option<&str>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            // The field's own key (or its nearest ancestor), else the first place `needle` is
            // written (for values that come from the environment).
            line: self
                .lines
                .line(field)
                .or_else(|| needle.and_then(|n| find_line(self.text, n))),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    fn dur(
        &self,
        field: &str,
        v: &Option<String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => parse_duration(s).map_err(|r| self.err(field, Some(s), r)),
        }
    }

    /// A secret given inline or through `<key>_file` (a mounted Kubernetes Secret).
    fn secret(
        &self,
        field: &str,
        inline: &Option<String>,
        file: &Option<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(self.err(
                field,
                None,
                format!("set either {field} or {field}_file, not both"),
            )),
            (Some(v), None) => Ok(Some(Secret::new(v.trim()))),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| Some(Secret::new(s.trim())))
                .map_err(|e| {
                    self.err(
                        &format!("{field}_file"),
                        Some(path),
                        format!("cannot read secret file {path}: {e}"),
                    )
                }),
            (None, None) => Ok(None),
        }
    }

    fn build(&self, mut raw: RawConfig) -> Result<Config, ConfigError> {
        let env_outputs = apply_falcosidekick_env(&mut raw, self.env);

        let listen = raw
            .listen
            .clone()
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        if listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(self.err(
                "listen",
                Some(&listen),
                format!("{listen:?} is not an address:port (e.g. 0.0.0.0:2801)"),
            ));
        }
        let max_body_bytes = match &raw.max_body_size {
            None => 4 << 20,
            Some(s) => parse_size(s).map_err(|r| self.err("max_body_size", Some(s), r))? as usize,
        };
        let queue_capacity = raw.queue_capacity.unwrap_or(65_536);
        if queue_capacity == 0 {
            return Err(self.err(
                "queue_capacity",
                Some("queue_capacity"),
                "must be at least 1",
            ));
        }
        let queue = crate::durable::QueueConfig::from_raw(raw.queue.as_ref())
            .map_err(|(field, reason)| self.err(field, field.rsplit('.').next(), reason))?;
        let dedup = match &raw.dedup {
            None => DedupConfig {
                window: Duration::ZERO,
                key: DEFAULT_DEDUP_KEY.iter().map(|s| s.to_string()).collect(),
                summary: false,
            },
            Some(d) => DedupConfig {
                window: self.dur("dedup.window", &d.window, Duration::from_secs(600))?,
                key: self.dedup_key("dedup.key", d.key.clone())?,
                summary: d.summary,
            },
        };

        let mut outputs = Vec::with_capacity(raw.outputs.len());
        for (i, o) in raw.outputs.iter().enumerate() {
            let out = self.output(i, o)?;
            if outputs.iter().any(|p: &OutputConfig| p.name == out.name) {
                return Err(self.err(
                    &format!("outputs[{i}].name"),
                    Some(&format!("name: {}", out.name)),
                    format!("duplicate output name {:?}", out.name),
                ));
            }
            outputs.push(out);
        }
        let index_of = |field: &str, name: &str| -> Result<usize, ConfigError> {
            outputs.iter().position(|o| o.name == name).ok_or_else(|| {
                self.err(
                    field,
                    Some(name),
                    format!(
                        "unknown output {name:?} (defined: {})",
                        outputs
                            .iter()
                            .map(|o| o.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
        };

        let mut routes = Vec::with_capacity(raw.routes.len());
        for (i, r) in raw.routes.iter().enumerate() {
            let mut outs = Vec::new();
            for (j, name) in r.outputs.iter().enumerate() {
                let idx = index_of(&format!("routes[{i}].outputs[{j}]"), name)?;
                if !outs.contains(&idx) {
                    outs.push(idx);
                }
            }
            for name in &env_outputs {
                let idx = index_of("env", name)?;
                if !outs.contains(&idx) {
                    outs.push(idx);
                }
            }
            if outs.is_empty() {
                return Err(self.err(
                    &format!("routes[{i}].outputs"),
                    r.name.as_deref(),
                    "a route needs at least one output",
                ));
            }
            let name = r.name.clone().unwrap_or_else(|| format!("route-{i}"));
            let dedup_override = match &r.dedup {
                None => None,
                Some(d) if d.disabled => Some(DedupConfig {
                    window: Duration::ZERO,
                    ..dedup.clone()
                }),
                Some(d) => Some(DedupConfig {
                    window: self.dur(
                        &format!("routes[{i}].dedup.window"),
                        &d.window,
                        dedup.window,
                    )?,
                    key: match &d.key {
                        Some(k) => {
                            self.dedup_key(&format!("routes[{i}].dedup.key"), Some(k.clone()))?
                        }
                        None => dedup.key.clone(),
                    },
                    summary: d.summary.unwrap_or(dedup.summary),
                }),
            };
            let line = self.lines.exact(&format!("routes[{i}]"));
            let compiled = match &r.matcher {
                None => None,
                Some(m) => Some(Matcher::compile(m).map_err(|reason| {
                    self.err(
                        &format!("routes[{i}].match.{}", reason.0),
                        Some(&reason.2),
                        reason.1,
                    )
                })?),
            };
            routes.push(RouteConfig {
                name,
                matcher: r.matcher.clone(),
                compiled,
                outputs: outs,
                cont: r.cont,
                dedup: dedup_override,
                line,
            });
        }

        let mut default_outputs = Vec::new();
        for (j, name) in raw
            .default_outputs
            .iter()
            .chain(env_outputs.iter())
            .enumerate()
        {
            let idx = index_of(&format!("default_outputs[{j}]"), name)?;
            if !default_outputs.contains(&idx) {
                default_outputs.push(idx);
            }
        }
        if routes.is_empty() && default_outputs.is_empty() && !outputs.is_empty() {
            // No routing at all: every alert goes everywhere, as in falcosidekick.
            default_outputs = (0..outputs.len()).collect();
        }

        let request_timeout = self.dur(
            "request_timeout",
            &raw.request_timeout,
            DEFAULT_REQUEST_TIMEOUT,
        )?;
        if request_timeout.is_zero() {
            return Err(self.err(
                "request_timeout",
                Some("request_timeout"),
                "must be above 0",
            ));
        }
        let (auth, server_tls) = self.auth(&raw)?;
        let templates_dir = match &raw.templates_dir {
            // Unset: `templates/` when there is one, else the embedded templates.
            None => PathBuf::from("templates"),
            Some(d) => {
                let dir = PathBuf::from(d);
                if !dir.is_dir() {
                    // A typo here would otherwise fall back to the embedded templates silently.
                    return Err(self.err(
                        "templates_dir",
                        None,
                        format!("{d:?} is not a directory"),
                    ));
                }
                dir
            }
        };
        Ok(Config {
            source: self.file.to_owned(),
            listen,
            max_body_bytes,
            queue_capacity,
            queue,
            templates_dir,
            dedup,
            outputs,
            routes,
            default_outputs,
            request_timeout,
            auth,
            server_tls,
            test_alert_routed: raw.test_alert.as_ref().is_some_and(|t| t.routed),
        })
    }

    /// `auth:` and `tls:`; `AERIE_ROUTER_TOKEN` overrides the configured bearer token.
    fn auth(&self, raw: &RawConfig) -> Result<(AuthConfig, Option<ServerTlsConfig>), ConfigError> {
        let a = raw.auth.as_ref();
        let none = None;
        let mut token = self.secret(
            "auth.bearer_token",
            a.map_or(&none, |a| &a.bearer_token),
            a.map_or(&none, |a| &a.bearer_token_file),
        )?;
        if let Some(t) = self.env.var(TOKEN_ENV)
            && !t.trim().is_empty()
        {
            token = Some(Secret::new(t.trim()));
        }
        if token.as_ref().is_some_and(Secret::is_empty) {
            return Err(self.err(
                "auth.bearer_token",
                Some("bearer_token"),
                "the token is empty",
            ));
        }
        let auth = AuthConfig {
            bearer_token: token,
            protect_metrics: a.and_then(|a| a.protect_metrics).unwrap_or(false),
        };
        let auth_ca = a.and_then(|a| a.client_ca_file.clone());
        let tls = match &raw.tls {
            None => {
                if auth_ca.is_some() {
                    return Err(self.err(
                        "auth.client_ca_file",
                        Some("client_ca_file"),
                        "client certificates need the TLS server: set tls.cert_file and tls.key_file",
                    ));
                }
                None
            }
            Some(t) => {
                let ca = match (&t.client_ca_file, auth_ca) {
                    (Some(x), Some(y)) if *x != y => {
                        return Err(self.err(
                            "tls.client_ca_file",
                            Some("client_ca_file"),
                            "auth.client_ca_file and tls.client_ca_file differ; set one",
                        ));
                    }
                    (x, y) => x.clone().or(y),
                };
                Some(ServerTlsConfig {
                    cert_file: PathBuf::from(&t.cert_file),
                    key_file: PathBuf::from(&t.key_file),
                    client_ca_file: ca.map(PathBuf::from),
                })
            }
        };
        Ok((auth, tls))
    }

    fn dedup_key(&self, field: &str, key: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
        let key = key.unwrap_or_else(|| DEFAULT_DEDUP_KEY.iter().map(|s| s.to_string()).collect());
        for (i, part) in key.iter().enumerate() {
            if crate::dedup::KeyPart::parse(part).is_none() {
                return Err(self.err(
                    &format!("{field}[{i}]"),
                    Some(part),
                    format!(
                        "unknown dedup key part {part:?} (expected rule, hostname, priority, source, tags or output_fields.<name>)"
                    ),
                ));
            }
        }
        if key.is_empty() {
            return Err(self.err(field, None, "dedup key needs at least one part"));
        }
        Ok(key)
    }

    fn output(&self, i: usize, o: &RawOutput) -> Result<OutputConfig, ConfigError> {
        let f = |k: &str| format!("outputs[{i}].{k}");
        if o.name.trim().is_empty() {
            return Err(self.err(&f("name"), None, "must not be empty"));
        }
        let min_priority = match &o.min_priority {
            None => Priority::Debug,
            Some(p) => p
                .parse::<Priority>()
                .map_err(|e| self.err(&f("min_priority"), Some(p), e.to_string()))?,
        };
        let rate_limit = match &o.rate_limit {
            None => None,
            Some(r) => {
                let per_minute = match (r.per_second, r.per_minute) {
                    (Some(_), Some(_)) => {
                        return Err(self.err(
                            &f("rate_limit"),
                            None,
                            "set per_second or per_minute, not both",
                        ));
                    }
                    (Some(s), None) => s.saturating_mul(60),
                    (None, Some(m)) => m,
                    (None, None) => {
                        return Err(self.err(
                            &f("rate_limit"),
                            None,
                            "needs per_second or per_minute",
                        ));
                    }
                };
                if per_minute == 0 {
                    return Err(self.err(
                        &f("rate_limit"),
                        None,
                        "rate must be at least 1 per minute",
                    ));
                }
                Some(RateLimitConfig {
                    per_minute,
                    burst: r.burst.unwrap_or(1).max(1),
                    per_key: r.per_key,
                })
            }
        };
        let default_retry = RetryConfig::default();
        let rr = o.retry.as_ref();
        let retry = RetryConfig {
            max_attempts: rr
                .and_then(|r| r.max_attempts)
                .unwrap_or(default_retry.max_attempts)
                .max(1),
            initial_backoff: self.dur(
                &f("retry.initial_backoff"),
                &rr.and_then(|r| r.initial_backoff.clone()),
                default_retry.initial_backoff,
            )?,
            max_backoff: self.dur(
                &f("retry.max_backoff"),
                &rr.and_then(|r| r.max_backoff.clone()),
                default_retry.max_backoff,
            )?,
            max_retry_after: self.dur(
                &f("retry.max_retry_after"),
                &rr.and_then(|r| r.max_retry_after.clone()),
                default_retry.max_retry_after,
            )?,
        };
        let tls = match &o.tls {
            None => TlsConfig::default(),
            Some(t) => {
                if t.client_cert_file.is_some() != t.client_key_file.is_some() {
                    return Err(self.err(
                        &f("tls"),
                        None,
                        "client_cert_file and client_key_file go together (mTLS)",
                    ));
                }
                TlsConfig {
                    ca_file: t.ca_file.as_ref().map(PathBuf::from),
                    client_cert_file: t.client_cert_file.as_ref().map(PathBuf::from),
                    client_key_file: t.client_key_file.as_ref().map(PathBuf::from),
                    insecure: t.insecure,
                }
            }
        };

        let proxy = match &o.proxy {
            None => None,
            Some(p) if p.starts_with("http://") || p.starts_with("https://") => Some(p.clone()),
            Some(p) => {
                return Err(self.err(&f("proxy"), Some(p), "must be an http:// or https:// URL"));
            }
        };
        let kind = o
            .kind
            .build()
            .map_err(|e| self.err(&f(&e.field), None, e.reason))?;
        let template = o
            .template
            .clone()
            .or_else(|| kind.default_template().map(str::to_owned));
        if let Some(t) = &template
            && (t.contains("..") || t.starts_with('/'))
        {
            return Err(self.err(
                &f("template"),
                Some(t),
                "must be a file name under templates_dir",
            ));
        }
        Ok(OutputConfig {
            name: o.name.clone(),
            kind,
            min_priority,
            template,
            rate_limit,
            timeout: self.dur(&f("timeout"), &o.timeout, Duration::from_secs(10))?,
            retry,
            tls,
            proxy,
        })
    }
}

/// Apply falcosidekick's environment names (SLACK_WEBHOOKURL, PAGERDUTY_ROUTINGKEY,
/// WEBHOOK_ADDRESS, ...; each output kind knows its own). They override the first output of
/// that type; when there is none, they create one which, as in falcosidekick, receives every
/// alert. Returns those created outputs.
fn apply_falcosidekick_env(raw: &mut RawConfig, env: &dyn Env) -> Vec<String> {
    let nonempty = |k: &str| env.var(k).filter(|v| !v.trim().is_empty());
    if let Some(addr) =
        nonempty("LISTENADDRESS").or_else(|| nonempty("LISTENPORT").map(|_| "0.0.0.0".into()))
    {
        let port = nonempty("LISTENPORT").unwrap_or_else(|| "2801".into());
        raw.listen = Some(format!("{addr}:{port}"));
    }
    let mut created = Vec::new();
    for &kind in crate::outputs::NAMES {
        let existing = raw.outputs.iter().position(|o| o.kind.name() == kind);
        let Some(mut probe) = RawKind::empty(kind) else {
            continue;
        };
        // Ask the kind on a scratch copy first: only its own trigger variable creates it.
        if probe.apply_env(&nonempty).is_none() {
            continue;
        }
        let i = match existing {
            Some(i) => i,
            None => {
                raw.outputs.push(RawOutput {
                    name: kind.to_owned(),
                    min_priority: None,
                    template: None,
                    rate_limit: None,
                    timeout: None,
                    retry: None,
                    tls: None,
                    proxy: None,
                    kind: probe,
                });
                created.push(kind.to_owned());
                raw.outputs.len() - 1
            }
        };
        let out = &mut raw.outputs[i];
        let shared = out.kind.apply_env(&nonempty).unwrap_or_default();
        if let Some(p) = out
            .kind
            .env_prefix()
            .and_then(|prefix| nonempty(&format!("{prefix}_MINIMUMPRIORITY")))
        {
            out.min_priority = Some(p);
        }
        if shared.tls_insecure {
            out.tls.get_or_insert_with(RawTls::default).insecure = true;
        }
    }
    created
}

/// Replace `${NAME}` and `${NAME:-default}`; `$$` is a literal `$`. An unset variable without
/// a default is an error naming it and its line.
pub fn interpolate(text: &str, env: &dyn Env) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut line = 1;
    while let Some(pos) = rest.find('$') {
        let (before, after) = rest.split_at(pos);
        line += before.matches('\n').count();
        out.push_str(before);
        // A comment line is copied as is: documentation may show `${NAME}`.
        let line_so_far = out.rsplit('\n').next().unwrap_or("");
        if line_so_far.trim_start().starts_with('#') {
            let end = after.find('\n').unwrap_or(after.len());
            out.push_str(&after[..end]);
            rest = &after[end..];
            continue;
        }
        if let Some(r) = after.strip_prefix("$$") {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix("${") {
            let end = r
                .find('}')
                .ok_or_else(|| (line, "unterminated ${ in environment reference".to_owned()))?;
            let expr = &r[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err((line, format!("invalid environment variable name {name:?}")));
            }
            match env.var(name).or_else(|| default.map(str::to_owned)) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err((
                        line,
                        format!(
                            "environment variable {name} is not set (use ${{{name}:-default}} for a default)"
                        ),
                    ));
                }
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// yaml-rust reports "... at line N column M".
fn yaml_line(msg: &str) -> Option<usize> {
    let i = msg.find("line ")?;
    msg[i + 5..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The config crate names the key: "... for key `outputs[0].type`".
fn error_key(msg: &str) -> String {
    msg.rsplit_once("for key `")
        .and_then(|(_, r)| r.split('`').next())
        .map(str::to_owned)
        .unwrap_or_else(|| ".".into())
}

/// The path of the key a config-crate error is about: `outputs[1].min_priorty` for an unknown
/// field of the second output, `outputs[0].rate_limit` for a value of the wrong type.
fn error_path(msg: &str) -> String {
    if msg.contains("unknown variant") || msg.contains("missing field `type`") {
        // An output's `type:` (the tag that selects its kind).
        return format!("{}.type", error_key(msg));
    }
    // The config crate writes `outputs[1]rate_limit`; the usual spelling has a dot.
    let raw = error_key(msg);
    let mut key = String::with_capacity(raw.len() + 4);
    let mut after_bracket = false;
    for c in raw.chars() {
        if after_bracket && c != '[' && c != '.' {
            key.push('.');
        }
        after_bracket = c == ']';
        key.push(c);
    }
    match msg
        .split("unknown field `")
        .nth(1)
        .and_then(|r| r.split('`').next())
    {
        Some(f) if key == "." => f.to_owned(),
        Some(f) => format!("{key}.{f}"),
        None => key,
    }
}

/// Best-effort line of the key named in a config-crate error.
fn key_line(text: &str, msg: &str) -> Option<usize> {
    let key = error_key(msg);
    let last = key.rsplit('.').next()?;
    let last = last.split('[').next()?;
    if last.is_empty() || last == "." {
        // unknown field `x`
        let f = msg.split("unknown field `").nth(1)?.split('`').next()?;
        return find_line(text, &format!("{f}:"));
    }
    find_line(text, &format!("{last}:"))
}

/// 1-based line of the first occurrence of `needle`.
pub fn find_line(text: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    let pos = text.find(needle)?;
    Some(text[..pos].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ISSUE_EXAMPLE: &str = r#"
listen: 0.0.0.0:2801
dedup: { window: 10m, key: [rule, hostname, output_fields.container.id, output_fields.proc.cmdline] }
outputs:
  - name: slack-secops
    type: slack
    webhook_url: ${SLACK_URL}
    min_priority: warning
    template: slack.hbs
    rate_limit: { per_minute: 30, burst: 10 }
  - name: pagerduty-oncall
    type: pagerduty
    routing_key: ${PAGERDUTY_ROUTING_KEY}
    min_priority: critical
  - name: archive
    type: file
    path: /var/log/aerie/alerts.jsonl
routes:
  - name: page
    match: { priority: ">= critical", tags_any: [container, k8s] }
    outputs: [pagerduty-oncall, slack-secops]
    continue: true
  - match: { source: k8s_audit, rule: "K8s Secret*" }
    outputs: [slack-secops]
  - outputs: [archive]
"#;

    #[test]
    fn parses_the_issue_example_with_env_interpolation() {
        let e = env(&[
            ("SLACK_URL", "https://hooks.slack.com/services/T/B/x"),
            ("PAGERDUTY_ROUTING_KEY", "R0UTINGKEY"),
        ]);
        let c = Config::parse("router.yaml", ISSUE_EXAMPLE, &e).unwrap();
        assert_eq!(c.outputs.len(), 3);
        assert_eq!(c.outputs[0].kind.as_str(), "slack");
        assert_eq!(c.outputs[0].min_priority, Priority::Warning);
        assert_eq!(c.outputs[0].rate_limit.as_ref().unwrap().burst, 10);
        let Kind::PagerDuty(pd) = &c.outputs[1].kind else {
            panic!("{:?}", c.outputs[1].kind)
        };
        assert_eq!(pd.routing_key.expose(), "R0UTINGKEY");
        assert_eq!(pd.url.expose(), PAGERDUTY_US_URL);
        assert_eq!(c.routes.len(), 3);
        assert_eq!(c.routes[0].outputs, vec![1, 0]);
        assert!(c.routes[0].cont);
        assert!(c.routes[2].matcher.is_none());
        assert_eq!(c.dedup.window, Duration::from_secs(600));
        // Secrets never reach Debug output.
        let dump = format!("{c:?}");
        assert!(
            !dump.contains("R0UTINGKEY") && !dump.contains("hooks.slack.com"),
            "{dump}"
        );
    }

    #[test]
    fn missing_env_var_names_it_and_the_line() {
        let e = env(&[("SLACK_URL", "https://x")]);
        let err = Config::parse("router.yaml", ISSUE_EXAMPLE, &e).unwrap_err();
        assert!(err.to_string().contains("PAGERDUTY_ROUTING_KEY"), "{err}");
        assert_eq!(err.line, Some(13));
        assert_eq!(interpolate("a ${X:-d} $$ b", &env(&[])).unwrap(), "a d $ b");
    }

    #[test]
    fn secret_files_are_read_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("aerie-router-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("slack");
        std::fs::write(&secret, "https://hooks.example/abc\n").unwrap();
        let text = format!(
            "outputs:\n  - name: s\n    type: slack\n    webhook_url_file: {}\n",
            secret.display()
        );
        let c = Config::parse("f.yaml", &text, &env(&[])).unwrap();
        let Kind::Slack(slack) = &c.outputs[0].kind else {
            panic!("{:?}", c.outputs[0].kind)
        };
        assert_eq!(slack.url.expose(), "https://hooks.example/abc");
        // No routes: every alert goes to every output.
        assert_eq!(c.default_outputs, vec![0]);

        let text = "outputs:\n  - name: s\n    type: slack\n    webhook_url_file: /nonexistent/x\n";
        let err = Config::parse("f.yaml", text, &env(&[])).unwrap_err();
        assert_eq!(err.field, "outputs[0].webhook_url_file");
        assert_eq!(err.line, Some(4));
    }

    #[test]
    fn falcosidekick_env_names_configure_outputs() {
        let e = env(&[
            ("SLACK_WEBHOOKURL", "https://hooks.slack.com/services/X"),
            ("PAGERDUTY_ROUTINGKEY", "abc"),
            ("PAGERDUTY_REGION", "eu"),
            ("WEBHOOK_ADDRESS", "http://127.0.0.1:9/hook"),
            ("WEBHOOK_CUSTOMHEADERS", "X-A:1,X-B:2"),
            ("LISTENPORT", "2999"),
        ]);
        let text = "outputs:\n  - {name: a, type: stdout}\nroutes:\n  - outputs: [a]\n";
        let c = Config::parse("f.yaml", text, &e).unwrap();
        assert_eq!(c.listen, "0.0.0.0:2999");
        let names: Vec<_> = c.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a", "slack", "pagerduty", "webhook"]);
        let (Kind::PagerDuty(pd), Kind::Webhook(hook)) = (&c.outputs[2].kind, &c.outputs[3].kind)
        else {
            panic!("{:?}", c.outputs)
        };
        assert_eq!(pd.url.expose(), PAGERDUTY_EU_URL);
        assert_eq!(hook.headers.len(), 2);
        // Created outputs get every alert.
        assert_eq!(c.routes[0].outputs, vec![0, 1, 2, 3]);
    }

    #[test]
    fn validation_errors_name_field_and_line() {
        let text = "outputs:\n  - name: a\n    type: telegram\n";
        let err = Config::parse("f.yaml", text, &env(&[])).unwrap_err();
        assert_eq!(err.field, "outputs[0].type");
        assert_eq!(err.line, Some(3));
        assert!(
            err.to_string().starts_with("f.yaml:3: outputs[0].type"),
            "{err}"
        );

        let text = "outputs:\n  - {name: a, type: stdout}\nroutes:\n  - outputs: [b]\n";
        let err = Config::parse("f.yaml", text, &env(&[])).unwrap_err();
        assert_eq!(err.field, "routes[0].outputs[0]");
        assert_eq!(err.line, Some(4));

        let text = "outputs:\n  - {name: a, type: stdout, min_priority: urgent}\n";
        let err = Config::parse("f.yaml", text, &env(&[])).unwrap_err();
        assert_eq!(err.field, "outputs[0].min_priority");

        let text = "listen: 1.2.3.4:1\nbogus: 3\n";
        let err = Config::parse("f.yaml", text, &env(&[])).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        assert_eq!(err.line, Some(2));

        let text = "routes:\n  - match: { rule: \"/(unclosed/\" }\n    outputs: [a]\noutputs:\n  - {name: a, type: stdout}\n";
        let err = Config::parse("f.yaml", text, &env(&[])).unwrap_err();
        assert_eq!(err.field, "routes[0].match.rule");
        assert_eq!(err.line, Some(2));

        let text = "outputs: [\n";
        let err = Config::parse("f.yaml", text, &env(&[])).unwrap_err();
        assert!(err.line.is_some(), "{err}");
    }
}
