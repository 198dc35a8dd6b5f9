//! Webhooks: the Falco JSON (or a template's JSON) to any URL, with custom headers and an
//! optional HMAC-SHA256 signature. falcosidekick's `WEBHOOK_ADDRESS`, `WEBHOOK_METHOD`,
//! `WEBHOOK_CUSTOMHEADERS`, `WEBHOOK_CHECKCERT` and `WEBHOOK_MINIMUMPRIORITY` configure it.

use std::collections::BTreeMap;

use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::delivery::{BodyContext, DeliveryError, Escape, Message, Output};
use crate::outputs::common::{EnvShared, FieldError, OpenContext, Secret, http_url, secret};
use crate::outputs::http;

pub const NAME: &str = "webhook";
/// None: the Falco JSON as received, plus an `aerie` object when there is something to report.
pub const DEFAULT_TEMPLATE: Option<&str> = None;
pub const TEMPLATE: (&str, &str) = (
    "webhook.hbs",
    include_str!("../../../../../templates/webhook.hbs"),
);
pub const ESCAPE: Escape = Escape::Json;
pub const ENV_PREFIX: Option<&str> = Some("WEBHOOK");

/// The keys of a webhook output, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    url: Option<String>,
    url_file: Option<String>,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    hmac_secret: Option<String>,
    hmac_secret_file: Option<String>,
    signature_header: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub url: Secret,
    pub method: Method,
    pub headers: Vec<(String, Secret)>,
    pub hmac_secret: Option<Secret>,
    pub signature_header: String,
}

impl Raw {
    /// falcosidekick's environment names; `None` when they do not ask for this output.
    pub fn apply_env(&mut self, get: &dyn Fn(&str) -> Option<String>) -> Option<EnvShared> {
        let addr = get("WEBHOOK_ADDRESS")?;
        self.url = Some(addr);
        self.url_file = None;
        if let Some(m) = get("WEBHOOK_METHOD") {
            self.method = Some(m);
        }
        if let Some(h) = get("WEBHOOK_CUSTOMHEADERS") {
            // falcosidekick: "key1:value1,key2:value2"
            for pair in h.split(',') {
                if let Some((k, v)) = pair.split_once(':') {
                    self.headers.insert(k.trim().into(), v.trim().into());
                }
            }
        }
        Some(EnvShared {
            tls_insecure: get("WEBHOOK_CHECKCERT").is_some_and(|v| v.eq_ignore_ascii_case("false")),
        })
    }

    pub fn build(&self) -> Result<Settings, FieldError> {
        let url = secret("url", &self.url, &self.url_file)?.unwrap_or_default();
        if url.is_empty() {
            return Err(FieldError::new(
                "url",
                "a webhook output needs url (or WEBHOOK_ADDRESS)",
            ));
        }
        let method = self
            .method
            .as_deref()
            .unwrap_or("POST")
            .to_ascii_uppercase();
        let method = match method.as_str() {
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            _ => return Err(FieldError::new("method", "expected POST, PUT or PATCH")),
        };
        let mut headers = Vec::with_capacity(self.headers.len());
        for (k, v) in &self.headers {
            HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| FieldError::new("headers", format!("header {k:?}: {e}")))?;
            HeaderValue::from_str(v)
                .map_err(|e| FieldError::new("headers", format!("header {k:?} value: {e}")))?;
            headers.push((k.clone(), Secret::new(v.clone())));
        }
        let signature_header = self
            .signature_header
            .clone()
            .unwrap_or_else(|| "X-Aerie-Signature".into());
        HeaderName::from_bytes(signature_header.as_bytes())
            .map_err(|e| FieldError::new("signature_header", e.to_string()))?;
        Ok(Settings {
            url: http_url("url", url)?,
            method,
            headers,
            hmac_secret: secret("hmac_secret", &self.hmac_secret, &self.hmac_secret_file)?,
            signature_header,
        })
    }
}

pub struct Sink {
    client: reqwest::Client,
    url: Secret,
    method: Method,
    headers: HeaderMap,
    hmac: Option<(HeaderName, Secret)>,
}

impl Settings {
    pub fn open(&self, ctx: &OpenContext<'_>) -> anyhow::Result<Sink> {
        let what = |w: &str| format!("output {}: {w}", ctx.name);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in &self.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| anyhow::anyhow!("{}: {e}", what(&format!("header {k:?}"))))?;
            let mut value = HeaderValue::from_str(v.expose())
                .map_err(|e| anyhow::anyhow!("{}: {e}", what(&format!("header {k:?} value"))))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let hmac = match &self.hmac_secret {
            None => None,
            Some(s) => Some((
                HeaderName::from_bytes(self.signature_header.as_bytes())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", what("signature_header")))?,
                s.clone(),
            )),
        };
        Ok(Sink {
            client: http::client(ctx)?,
            url: self.url.clone(),
            method: self.method.clone(),
            headers,
            hmac,
        })
    }
}

impl Output for Sink {
    fn body(&self, rendered: &str, _ctx: &BodyContext<'_>) -> Result<Vec<u8>, String> {
        crate::text::json_body(rendered)
    }

    fn fallback(&self, ctx: &BodyContext<'_>) -> Vec<u8> {
        (ctx.falco_json)()
    }

    async fn deliver(&mut self, batch: &[Message]) -> Result<(), DeliveryError> {
        for m in batch {
            let mut headers = self.headers.clone();
            if let Some((name, secret)) = &self.hmac
                && let Ok(v) = HeaderValue::from_str(&http::sign(secret.expose().as_bytes(), &m.body))
            {
                headers.insert(name.clone(), v);
            }
            http::send(&self.client, &self.method, &self.url, headers, &m.body).await?;
        }
        Ok(())
    }
}
