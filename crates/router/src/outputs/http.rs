//! The HTTP client every HTTP output shares: rustls with the output's CA, client certificate
//! or `insecure`, timeouts, one attempt per call classified into a [`DeliveryError`]
//! (`429` + `Retry-After`, `5xx`/`408` retryable; any other `4xx` permanent), HMAC signing,
//! and error texts that never print the URL (for Slack, the URL is the secret).

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use sha2::Sha256;

use crate::delivery::DeliveryError;
use crate::outputs::common::{OpenContext, Secret};
use crate::text::truncate_chars;

/// A client with the output's timeout and TLS settings.
pub fn client(ctx: &OpenContext<'_>) -> anyhow::Result<reqwest::Client> {
    let what = |w: &str| format!("output {}: {w}", ctx.name);
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(ctx.timeout)
        .connect_timeout(ctx.timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("aerie-router/", env!("CARGO_PKG_VERSION")));
    let tls = ctx.tls;
    if let Some(ca) = &tls.ca_file {
        let pem = std::fs::read(ca).map_err(|e| {
            anyhow::anyhow!("{}: {e}", what(&format!("tls.ca_file {}", ca.display())))
        })?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| anyhow::anyhow!("{}: {e}", what("tls.ca_file")))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert_file, &tls.client_key_file) {
        let mut pem = std::fs::read(cert)
            .map_err(|e| anyhow::anyhow!("{}: {e}", what("tls.client_cert_file")))?;
        pem.push(b'\n');
        pem.extend(
            std::fs::read(key)
                .map_err(|e| anyhow::anyhow!("{}: {e}", what("tls.client_key_file")))?,
        );
        b = b.identity(
            reqwest::Identity::from_pem(&pem)
                .map_err(|e| anyhow::anyhow!("{}: {e}", what("tls client certificate")))?,
        );
    }
    if tls.insecure {
        tracing::warn!(output = %ctx.name, "TLS certificate verification is OFF (tls.insecure: true)");
        b = b.danger_accept_invalid_certs(true);
    }
    b.build()
        .map_err(|e| anyhow::anyhow!("{}: {e}", what("HTTP client")))
}

/// One request; the answer classified for the worker's retry loop.
pub async fn send(
    client: &reqwest::Client,
    method: &Method,
    url: &Secret,
    headers: HeaderMap,
    body: &[u8],
) -> Result<(), DeliveryError> {
    let res = client
        .request(method.clone(), url.expose())
        .headers(headers)
        .body(body.to_vec())
        .send()
        .await;
    match res {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => {
            let status = resp.status();
            let after = retry_after(resp.headers());
            let text = resp.text().await.unwrap_or_default();
            let reason = format!("HTTP {status}: {}", truncate_chars(text.trim(), 200));
            if status == StatusCode::TOO_MANY_REQUESTS {
                Err(DeliveryError::Retryable { after, reason })
            } else if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
                Err(DeliveryError::retryable(reason))
            } else {
                // 4xx other than 408/429: the payload or credentials are wrong; sending the
                // same thing again cannot succeed.
                Err(DeliveryError::permanent(reason))
            }
        }
        Err(e) => Err(DeliveryError::retryable(format!(
            "request failed: {}",
            without_url(&e)
        ))),
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
    use reqwest::header::HeaderValue;

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
