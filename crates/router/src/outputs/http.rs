//! What every HTTP output shares: the client (built by `aerie-http-client`, as the detector's:
//! rustls with the output's CA, client certificate or `insecure`, proxy, timeouts), one attempt per call classified into a [`DeliveryError`]
//! (`429` + `Retry-After`, `5xx`/`408` retryable; any other `4xx` permanent), HMAC signing,
//! and error texts that never print the URL (for Slack, the URL is the secret).

use std::time::Duration;

use aerie_http_client::{Class, ClientOptions};
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use sha2::Sha256;

use crate::delivery::{DeliveryError, Message};
use crate::outputs::common::{OpenContext, Secret};
use crate::text::truncate_chars;

/// A client with the output's timeout, TLS and proxy settings.
pub fn client(ctx: &OpenContext<'_>) -> anyhow::Result<reqwest::Client> {
    let owner = format!("output {}", ctx.name);
    Ok(aerie_http_client::build(&ClientOptions {
        owner: &owner,
        user_agent: concat!("aerie-router/", env!("CARGO_PKG_VERSION")),
        timeout: ctx.timeout,
        connect_timeout: ctx.timeout.min(Duration::from_secs(10)),
        pool_idle_timeout: None,
        pool_max_idle_per_host: None,
        proxy: ctx.proxy,
        tls: ctx.tls,
    })?)
}

/// `Content-Type: application/json`, the headers of the JSON APIs (Slack, PagerDuty).
pub fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static("application/json"),
    );
    headers
}

/// POST each message's body in turn: outputs that take one alert per request (Slack,
/// PagerDuty). The first failure ends the batch; the worker retries from there.
pub async fn post_each(
    client: &reqwest::Client,
    url: &Secret,
    headers: &HeaderMap,
    batch: &[Message],
) -> Result<(), DeliveryError> {
    for m in batch {
        send(client, &Method::POST, url, headers.clone(), &m.body).await?;
    }
    Ok(())
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
            match Class::of(status) {
                Class::Retryable if status == StatusCode::TOO_MANY_REQUESTS => {
                    Err(DeliveryError::Retryable { after, reason })
                }
                Class::Retryable | Class::Delivered => Err(DeliveryError::retryable(reason)),
                // 4xx other than 408/429: the payload or credentials are wrong; sending the
                // same thing again cannot succeed.
                Class::Refused => Err(DeliveryError::permanent(reason)),
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

pub use aerie_http_client::retry_after;

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
}
