//! The outbound HTTP client aerie-router (Slack, PagerDuty, webhooks) and aerie-detector
//! (`http_output`) share, so that TLS, proxy, timeout, `Retry-After` and backoff behaviour is
//! written once:
//! - [`build`]: a reqwest client on rustls with extra CAs, a client certificate (mTLS) or an
//!   explicit `insecure`, a proxy, timeouts and pool settings, with errors naming the file;
//! - [`retry_after`] and [`Class::of`]: what a response means for a retry loop;
//! - [`Backoff`]: exponential backoff with jitter.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Outbound TLS: extra trusted CAs, a client certificate for mTLS, or no verification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM bundle of CAs trusted besides the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain); needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Skip certificate verification (logged as a warning).
    pub insecure: bool,
}

/// How to build a client.
#[derive(Debug, Clone)]
pub struct ClientOptions<'a> {
    /// Names the client in errors and logs (`output slack-secops`, `http_output`).
    pub owner: &'a str,
    pub user_agent: &'a str,
    /// Whole-request timeout.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Close idle keep-alive connections after this (`None`: reqwest's default).
    pub pool_idle_timeout: Option<Duration>,
    /// Idle connections kept per host (`None`: reqwest's default).
    pub pool_max_idle_per_host: Option<usize>,
    /// Send every request through this proxy (`http://`, `https://`). Without it, the
    /// `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` environment applies.
    pub proxy: Option<&'a str>,
    pub tls: &'a TlsOptions,
}

/// A client could not be built: which setting, and why.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{owner}: {what} {}: {source}", path.display())]
    Read {
        owner: String,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{owner}: {what}: {reason}")]
    Invalid {
        owner: String,
        what: &'static str,
        reason: String,
    },
}

/// Build a client per `opts`.
pub fn build(opts: &ClientOptions<'_>) -> Result<reqwest::Client, ClientError> {
    let invalid = |what: &'static str, reason: String| ClientError::Invalid {
        owner: opts.owner.to_owned(),
        what,
        reason,
    };
    let read = |what: &'static str, path: &PathBuf| {
        std::fs::read(path).map_err(|source| ClientError::Read {
            owner: opts.owner.to_owned(),
            what,
            path: path.clone(),
            source,
        })
    };
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(opts.timeout)
        .connect_timeout(opts.connect_timeout)
        .user_agent(opts.user_agent);
    if let Some(t) = opts.pool_idle_timeout {
        b = b.pool_idle_timeout(t);
    }
    if let Some(n) = opts.pool_max_idle_per_host {
        b = b.pool_max_idle_per_host(n);
    }
    if let Some(p) = opts.proxy {
        let proxy = reqwest::Proxy::all(p).map_err(|e| invalid("proxy", e.to_string()))?;
        b = b.proxy(proxy);
    }
    let tls = opts.tls;
    if let Some(ca) = &tls.ca_file {
        let pem = read("tls.ca_file", ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            invalid(
                "tls.ca_file",
                format!("{}: not a PEM bundle: {e}", ca.display()),
            )
        })?;
        for cert in certs {
            b = b.add_root_certificate(cert);
        }
    }
    match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert), Some(key)) => {
            let mut pem = read("tls.client_cert_file", cert)?;
            pem.push(b'\n');
            pem.extend(read("tls.client_key_file", key)?);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                invalid(
                    "tls",
                    format!("client certificate and key do not form an identity: {e}"),
                )
            })?;
            b = b.identity(id);
        }
        (None, None) => {}
        _ => {
            return Err(invalid(
                "tls",
                "client_cert_file and client_key_file go together (mTLS)".into(),
            ));
        }
    }
    if tls.insecure {
        tracing::warn!(owner = %opts.owner, "TLS certificate verification is OFF (tls.insecure: true)");
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| invalid("HTTP client", e.to_string()))
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3); a date in the past is
/// no wait.
pub fn retry_after(h: &HeaderMap) -> Option<Duration> {
    aerie_alert::retry_after(h.get(RETRY_AFTER)?.to_str().ok()?, SystemTime::now())
}

/// What a response status means for a retry loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Delivered,
    /// 5xx, 408, 429: try again (after `Retry-After` when given).
    Retryable,
    /// Any other 4xx (and 1xx/3xx left unfollowed): sending the same request again cannot
    /// succeed. Callers may treat some as retryable (the detector keeps 401/403 alerts: a
    /// token is fixed by the operator, not by changing the alert).
    Refused,
}

impl Class {
    pub fn of(status: StatusCode) -> Class {
        if status.is_success() {
            Class::Delivered
        } else if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            Class::Retryable
        } else {
            Class::Refused
        }
    }
}

/// Exponential backoff with jitter in [base/2, base], base doubling from `initial` to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
            rng: seed | 1,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn next_delay(&mut self) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64: jitter needs no cryptographic randomness.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng % 1000) as f64 / 1000.0;
        base.mul_f64(0.5 + frac / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_doubles_with_jitter_up_to_max() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let bases = [100, 200, 400, 400, 400];
        for base in bases {
            let d = b.next_delay();
            let base = Duration::from_millis(base);
            assert!(
                d >= base / 2 && d <= base,
                "{d:?} outside [{:?}, {base:?}]",
                base / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn classes_of_statuses() {
        assert_eq!(Class::of(StatusCode::OK), Class::Delivered);
        assert_eq!(Class::of(StatusCode::ACCEPTED), Class::Delivered);
        assert_eq!(Class::of(StatusCode::SERVICE_UNAVAILABLE), Class::Retryable);
        assert_eq!(Class::of(StatusCode::REQUEST_TIMEOUT), Class::Retryable);
        assert_eq!(Class::of(StatusCode::TOO_MANY_REQUESTS), Class::Retryable);
        assert_eq!(Class::of(StatusCode::BAD_REQUEST), Class::Refused);
        assert_eq!(Class::of(StatusCode::UNAUTHORIZED), Class::Refused);
    }

    #[test]
    fn parses_retry_after_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date in the past");
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn bad_settings_name_the_setting_and_file() {
        let tls = TlsOptions {
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..TlsOptions::default()
        };
        let opts = ClientOptions {
            owner: "output hook",
            user_agent: "t",
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            pool_idle_timeout: None,
            pool_max_idle_per_host: None,
            proxy: None,
            tls: &tls,
        };
        let e = build(&opts).unwrap_err().to_string();
        assert!(
            e.starts_with("output hook: tls.ca_file /nonexistent/ca.pem"),
            "{e}"
        );
        let plain = TlsOptions::default();
        let e = build(&ClientOptions {
            proxy: Some("not a url"),
            tls: &plain,
            ..opts.clone()
        })
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("output hook: proxy:"), "{e}");
        assert!(
            build(&ClientOptions {
                proxy: Some("http://127.0.0.1:3128"),
                tls: &plain,
                ..opts
            })
            .is_ok()
        );
    }
}
