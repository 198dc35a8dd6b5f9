//! The file output: one JSON line per message (the Falco JSON unless a template is set),
//! appended with an fsync policy, rotated by size, torn tails repaired.

pub mod sink;

use std::path::PathBuf;

use serde::Deserialize;

use crate::delivery::{BodyContext, DeliveryError, Escape, Message, Output};
use crate::duration::parse_size;
use crate::outputs::common::{EnvShared, FieldError, OpenContext};
pub use sink::{FileSink, FsyncPolicy};

pub const NAME: &str = "file";
pub const DEFAULT_TEMPLATE: Option<&str> = None;
pub const TEMPLATE: (&str, &str) = ("file.hbs", include_str!("../../../../../templates/file.hbs"));
pub const ESCAPE: Escape = Escape::Json;
pub const ENV_PREFIX: Option<&str> = None;

/// The keys of a file output, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    path: Option<String>,
    fsync: Option<String>,
    max_size: Option<String>,
    max_files: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub path: PathBuf,
    pub fsync: FsyncPolicy,
    pub max_size: u64,
    pub max_files: usize,
}

impl Raw {
    /// falcosidekick has no environment names for a file output.
    pub fn apply_env(&mut self, _get: &dyn Fn(&str) -> Option<String>) -> Option<EnvShared> {
        None
    }

    pub fn build(&self) -> Result<Settings, FieldError> {
        let path = match &self.path {
            Some(p) if !p.trim().is_empty() => PathBuf::from(p),
            _ => return Err(FieldError::new("path", "a file output needs path")),
        };
        let fsync = match self.fsync.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("interval") => FsyncPolicy::Interval,
            Some("always") => FsyncPolicy::Always,
            Some("never") => FsyncPolicy::Never,
            Some(other) => {
                return Err(FieldError::new(
                    "fsync",
                    format!("unknown fsync policy {other:?} (expected always, interval or never)"),
                ));
            }
        };
        let max_size = match &self.max_size {
            None => 100 << 20,
            Some(s) => parse_size(s).map_err(|r| FieldError::new("max_size", r))?,
        };
        Ok(Settings {
            path,
            fsync,
            max_size,
            max_files: self.max_files.unwrap_or(5),
        })
    }
}

pub struct Sink(FileSink);

impl Settings {
    pub fn open(&self, _ctx: &OpenContext<'_>) -> anyhow::Result<Sink> {
        FileSink::open_path(self.path.clone(), self.max_size, self.max_files, self.fsync).map(Sink)
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
            self.0
                .write_line(&m.body)
                .map_err(|e| DeliveryError::retryable(format!("{}: {e}", self.0.path_display())))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DeliveryError> {
        self.0
            .flush()
            .map_err(|e| DeliveryError::retryable(format!("{}: {e}", self.0.path_display())))
    }

    fn take_repairs(&mut self) -> u64 {
        self.0.take_torn()
    }
}
