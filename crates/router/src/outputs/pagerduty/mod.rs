//! PagerDuty Events API v2: `trigger` events from `pagerduty.hbs`, with the routing key, the
//! dedup identity as `dedup_key`, and the summary limit. falcosidekick's
//! `PAGERDUTY_ROUTINGKEY`, `PAGERDUTY_REGION` and `PAGERDUTY_MINIMUMPRIORITY` configure it.

pub mod payload;

use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::delivery::{BodyContext, DeliveryError, Escape, Message, Output};
use crate::outputs::common::{EnvShared, FieldError, OpenContext, Secret, http_url, secret};
use crate::outputs::http;

pub const NAME: &str = "pagerduty";
pub const DEFAULT_TEMPLATE: Option<&str> = Some("pagerduty.hbs");
pub const TEMPLATE: (&str, &str) = (
    "pagerduty.hbs",
    include_str!("../../../../../templates/pagerduty.hbs"),
);
pub const ESCAPE: Escape = Escape::Json;
pub const ENV_PREFIX: Option<&str> = Some("PAGERDUTY");

/// PagerDuty Events API v2 (US region); `PAGERDUTY_REGION=eu` selects the EU endpoint.
pub const US_URL: &str = "https://events.pagerduty.com/v2/enqueue";
pub const EU_URL: &str = "https://events.eu.pagerduty.com/v2/enqueue";

/// The keys of a pagerduty output, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    routing_key: Option<String>,
    routing_key_file: Option<String>,
    url: Option<String>,
    url_file: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub url: Secret,
    pub routing_key: Secret,
}

impl Raw {
    /// falcosidekick's environment names; `None` when they do not ask for this output.
    pub fn apply_env(&mut self, get: &dyn Fn(&str) -> Option<String>) -> Option<EnvShared> {
        let key = get("PAGERDUTY_ROUTINGKEY")?;
        self.routing_key = Some(key);
        self.routing_key_file = None;
        if get("PAGERDUTY_REGION").is_some_and(|r| r.eq_ignore_ascii_case("eu")) {
            self.url = Some(EU_URL.into());
            self.url_file = None;
        }
        Some(EnvShared::default())
    }

    pub fn build(&self) -> Result<Settings, FieldError> {
        let routing_key = secret("routing_key", &self.routing_key, &self.routing_key_file)?;
        let Some(routing_key) = routing_key.filter(|k| !k.is_empty()) else {
            return Err(FieldError::new(
                "routing_key",
                "a pagerduty output needs routing_key or routing_key_file (or PAGERDUTY_ROUTINGKEY)",
            ));
        };
        let url = secret("url", &self.url, &self.url_file)?
            .unwrap_or_else(|| Secret::new(US_URL));
        Ok(Settings {
            url: http_url("url", url)?,
            routing_key,
        })
    }
}

pub struct Sink {
    client: reqwest::Client,
    url: Secret,
    routing_key: Secret,
    headers: HeaderMap,
}

impl Settings {
    pub fn open(&self, ctx: &OpenContext<'_>) -> anyhow::Result<Sink> {
        Ok(Sink {
            client: http::client(ctx)?,
            url: self.url.clone(),
            routing_key: self.routing_key.clone(),
            headers: http::json_headers(),
        })
    }
}

impl Output for Sink {
    fn body(&self, rendered: &str, ctx: &BodyContext<'_>) -> Result<Vec<u8>, String> {
        payload::pagerduty(
            rendered,
            self.routing_key.expose(),
            ctx.identity_hex,
            ctx.alert,
        )
    }

    fn fallback(&self, ctx: &BodyContext<'_>) -> Vec<u8> {
        payload::pagerduty_fallback(self.routing_key.expose(), ctx.identity_hex, ctx.alert)
    }

    async fn deliver(&mut self, batch: &[Message]) -> Result<(), DeliveryError> {
        http::post_each(&self.client, &self.url, &self.headers, batch).await
    }
}
