//! The stdout output: one JSON line per message on the router's standard output (the Falco
//! JSON unless a template is set).

use std::io::Write;

use serde::Deserialize;

use crate::delivery::{BodyContext, DeliveryError, Escape, Message, Output};
use crate::outputs::common::{EnvShared, FieldError, OpenContext};

pub const NAME: &str = "stdout";
pub const DEFAULT_TEMPLATE: Option<&str> = None;
pub const TEMPLATE: (&str, &str) = (
    "stdout.hbs",
    include_str!("../../../../../templates/stdout.hbs"),
);
pub const ESCAPE: Escape = Escape::Json;
pub const ENV_PREFIX: Option<&str> = None;

/// A stdout output has no keys of its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {}

#[derive(Debug, Clone)]
pub struct Settings;

impl Raw {
    /// falcosidekick has no environment names for stdout.
    pub fn apply_env(&mut self, _get: &dyn Fn(&str) -> Option<String>) -> Option<EnvShared> {
        None
    }

    pub fn build(&self) -> Result<Settings, FieldError> {
        Ok(Settings)
    }
}

pub struct Sink;

impl Settings {
    pub fn open(&self, _ctx: &OpenContext<'_>) -> anyhow::Result<Sink> {
        Ok(Sink)
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
        let mut out = std::io::stdout().lock();
        for m in batch {
            out.write_all(&m.body)
                .and_then(|_| out.write_all(b"\n"))
                .map_err(|e| DeliveryError::retryable(format!("stdout: {e}")))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DeliveryError> {
        std::io::stdout()
            .flush()
            .map_err(|e| DeliveryError::retryable(format!("stdout: {e}")))
    }
}
