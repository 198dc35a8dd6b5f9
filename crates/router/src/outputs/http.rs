//! HTTP outputs (Slack, PagerDuty, webhook): TLS options, timeouts, HMAC signatures, and retries
//! with exponential backoff and jitter that honour `429` + `Retry-After`.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use sha2::Sha256;

use crate::config::{OutputConfig, RetryConfig, Secret};
use crate::metrics::OutputMetrics;

pub struct HttpSink {
    name: String,
    client: reqwest::Client,
    url: Secret,
    method: Method,
    headers: HeaderMap,
    hmac: Option<(HeaderName, Secret)>,
    retry: RetryConfig,
    rng: u64,
}

impl HttpSink {
    pub fn new(cfg: &OutputConfig) -> anyhow::Result<HttpSink> {
        let ctx = |what: &str| format!("output {}: {what}", cfg.name);
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("aerie-router/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.tls.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                anyhow::anyhow!("{}: {e}", ctx(&format!("tls.ca_file {}", ca.display())))
            })?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("{}: {e}", ctx("tls.ca_file")))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&cfg.tls.client_cert_file, &cfg.tls.client_key_file) {
            let mut pem = std::fs::read(cert)
                .map_err(|e| anyhow::anyhow!("{}: {e}", ctx("tls.client_cert_file")))?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(key)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", ctx("tls.client_key_file")))?,
            );
            b = b.identity(
                reqwest::Identity::from_pem(&pem)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", ctx("tls client certificate")))?,
            );
        }
        if cfg.tls.insecure {
            tracing::warn!(output = %cfg.name, "TLS certificate verification is OFF (tls.insecure: true)");
            b = b.danger_accept_invalid_certs(true);
        }
        let client = b
            .build()
            .map_err(|e| anyhow::anyhow!("{}: {e}", ctx("HTTP client")))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| anyhow::anyhow!("{}: {e}", ctx(&format!("header {k:?}"))))?;
            let mut value = HeaderValue::from_str(v.expose())
                .map_err(|e| anyhow::anyhow!("{}: {e}", ctx(&format!("header {k:?} value"))))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let hmac = match &cfg.hmac_secret {
            None => None,
            Some(s) => Some((
                HeaderName::from_bytes(cfg.signature_header.as_bytes())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", ctx("signature_header")))?,
                s.clone(),
            )),
        };
        let method = Method::from_bytes(cfg.method.as_bytes()).unwrap_or(Method::POST);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Ok(HttpSink {
            name: cfg.name.clone(),
            client,
            url: cfg.url.clone(),
            method,
            headers,
            hmac,
            retry: cfg.retry.clone(),
            rng: seed | 1,
        })
    }

    /// POST (or PUT/PATCH) the body, retrying per policy.
    pub async fn send(&mut self, body: &[u8], metrics: &OutputMetrics) -> Result<(), String> {
        let mut headers = self.headers.clone();
        if let Some((name, secret)) = &self.hmac
            && let Ok(v) = HeaderValue::from_str(&sign(secret.expose().as_bytes(), body))
        {
            headers.insert(name.clone(), v);
        }
        let mut last_err = String::new();
        for attempt in 1..=self.retry.max_attempts {
            let res = self
                .client
                .request(self.method.clone(), self.url.expose())
                .headers(headers.clone())
                .body(body.to_vec())
                .send()
                .await;
            let wait = match res {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = retry_after(resp.headers());
                    let text = resp.text().await.unwrap_or_default();
                    last_err = format!(
                        "HTTP {status}: {}",
                        crate::render::truncate_chars(text.trim(), 200)
                    );
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        retry_after
                            .map(|d| d.min(self.retry.max_retry_after))
                            .unwrap_or_else(|| self.backoff(attempt))
                    } else if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
                        self.backoff(attempt)
                    } else {
                        // 4xx other than 408/429: the payload or credentials are wrong; retrying
                        // would send the same thing again.
                        return Err(last_err);
                    }
                }
                Err(e) => {
                    last_err = format!("request failed: {}", without_url(&e));
                    self.backoff(attempt)
                }
            };
            if attempt == self.retry.max_attempts {
                break;
            }
            metrics.retries.fetch_add(1, Relaxed);
            tracing::debug!(output = %self.name, attempt, ?wait, error = %last_err, "retrying delivery");
            tokio::time::sleep(wait).await;
        }
        Err(format!(
            "gave up after {} attempts: {last_err}",
            self.retry.max_attempts
        ))
    }

    /// Exponential backoff with full jitter in [base/2, base].
    fn backoff(&mut self, attempt: u32) -> Duration {
        let base = self
            .retry
            .initial_backoff
            .saturating_mul(1u32 << (attempt - 1).min(20))
            .min(self.retry.max_backoff);
        // xorshift64: jitter needs no cryptographic randomness.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng % 1000) as f64 / 1000.0;
        base.mul_f64(0.5 + frac / 2.0)
    }
}

/// reqwest errors print the URL, which for Slack is the secret.
fn without_url(e: &reqwest::Error) -> String {
    let mut e2 = String::new();
    if e.is_timeout() {
        e2.push_str("timeout");
    } else if e.is_connect() {
        e2.push_str("connect error");
    } else {
        e2.push_str("error");
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        e2.push_str(": ");
        e2.push_str(&s.to_string());
        src = s.source();
    }
    e2
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3); a date in the past is
/// no wait.
pub fn retry_after(h: &HeaderMap) -> Option<Duration> {
    aerie_alert::retry_after(h.get(RETRY_AFTER)?.to_str().ok()?, SystemTime::now())
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`, as GitHub signs webhooks.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
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
}
