//! Slack incoming webhooks: Block Kit messages from `slack.hbs`, mrkdwn-escaped, within
//! Slack's limits. falcosidekick's `SLACK_WEBHOOKURL` (and `SLACK_MINIMUMPRIORITY`) configure it.

pub mod payload;

use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::delivery::{BodyContext, DeliveryError, Escape, Message, Output};
use crate::outputs::common::{EnvShared, FieldError, OpenContext, Secret, http_url, secret};
use crate::outputs::http;

pub const NAME: &str = "slack";
pub const DEFAULT_TEMPLATE: Option<&str> = Some("slack.hbs");
pub const TEMPLATE: (&str, &str) = ("slack.hbs", include_str!("../../../../../templates/slack.hbs"));
pub const ESCAPE: Escape = Escape::Slack;
/// falcosidekick's environment prefix (`SLACK_WEBHOOKURL`, `SLACK_MINIMUMPRIORITY`).
pub const ENV_PREFIX: Option<&str> = Some("SLACK");

/// The keys of a slack output, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    webhook_url: Option<String>,
    webhook_url_file: Option<String>,
    url: Option<String>,
    url_file: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub url: Secret,
}

impl Raw {
    /// falcosidekick's environment names; `None` when they do not ask for this output.
    pub fn apply_env(&mut self, get: &dyn Fn(&str) -> Option<String>) -> Option<EnvShared> {
        let url = get("SLACK_WEBHOOKURL")?;
        self.webhook_url = Some(url);
        self.webhook_url_file = None;
        Some(EnvShared::default())
    }

    pub fn build(&self) -> Result<Settings, FieldError> {
        let webhook = secret("webhook_url", &self.webhook_url, &self.webhook_url_file)?;
        let url = secret("url", &self.url, &self.url_file)?;
        let u = webhook.or(url).unwrap_or_default();
        if u.is_empty() {
            return Err(FieldError::new(
                "webhook_url",
                "a slack output needs webhook_url or webhook_url_file (or SLACK_WEBHOOKURL)",
            ));
        }
        Ok(Settings {
            url: http_url("webhook_url", u)?,
        })
    }
}

pub struct Sink {
    client: reqwest::Client,
    url: Secret,
    headers: HeaderMap,
}

impl Settings {
    pub fn open(&self, ctx: &OpenContext<'_>) -> anyhow::Result<Sink> {
        Ok(Sink {
            client: http::client(ctx)?,
            url: self.url.clone(),
            headers: http::json_headers(),
        })
    }
}

impl Output for Sink {
    fn body(&self, rendered: &str, _ctx: &BodyContext<'_>) -> Result<Vec<u8>, String> {
        payload::slack(rendered)
    }

    fn fallback(&self, ctx: &BodyContext<'_>) -> Vec<u8> {
        payload::slack_fallback(ctx.alert)
    }

    async fn deliver(&mut self, batch: &[Message]) -> Result<(), DeliveryError> {
        http::post_each(&self.client, &self.url, &self.headers, batch).await
    }
}
