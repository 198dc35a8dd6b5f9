//! Handlebars templates: loaded from `templates_dir` at start (and on SIGHUP), one registry per
//! output so each gets the escaping its target needs:
//! - JSON targets (PagerDuty, webhook, file, stdout): `{{value}}` is escaped for a JSON string;
//! - Slack: additionally mrkdwn-escaped (`&`, `<`, `>`), so alert text can never form
//!   `<!channel>`, `<@U123>` or `<http://…|link>`.
//!
//! `{{{value}}}` (triple braces) writes raw text: use it only with the `json` helper.

use std::path::Path;

use aerie_alert::{Alert, Priority, Timestamp};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, RenderErrorReason,
    ScopedJson, handlebars_helper,
};
use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::delivery::Escape;
pub use crate::envelope::sample_alert;
pub use crate::text::{
    json_escape, mrkdwn_escape, pagerduty_severity, slack_escape, truncate_chars,
};

pub use crate::outputs::EMBEDDED;

/// A template that failed to load: file, line, column and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {reason}", match (line, column) { (Some(l), Some(c)) => format!(":{l}:{c}"), (Some(l), None) => format!(":{l}"), _ => String::new() })]
pub struct TemplateLoadError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub reason: String,
}

/// What a template sees.
#[derive(Debug, Serialize)]
pub struct TemplateContext<'a> {
    pub alert: &'a Alert,
    pub route: &'a str,
    pub output: OutputInfo<'a>,
    pub dedup: DedupInfo,
    /// Set on a rate-limit digest.
    pub digest: Option<&'a DigestInfo>,
    /// True for a dedup window-end summary.
    pub summary: bool,
    /// True for `POST /test` alerts.
    pub test: bool,
}

#[derive(Debug, Serialize)]
pub struct OutputInfo<'a> {
    pub name: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
}

#[derive(Debug, Serialize, Default)]
pub struct DedupInfo {
    /// Repeats suppressed since the last delivery of this key.
    pub count: u64,
    /// The window, e.g. `10m`.
    pub window: String,
    /// "repeated 37 times in 10m" (empty when `count` is 0).
    pub text: String,
    /// Hex of the dedup key hash (PagerDuty's `dedup_key`).
    pub key: String,
}

/// A rate-limit digest: alerts held while the output was over its limit.
#[derive(Debug, Clone, Serialize, Default)]
pub struct DigestInfo {
    pub count: u64,
    pub rules: Vec<DigestRule>,
    /// Rules beyond the listed ones.
    pub other_rules: u64,
    pub first_time: String,
    pub last_time: String,
    /// "12 alerts held by the rate limit: Rule A ×7, Rule B ×5"
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DigestRule {
    pub rule: String,
    pub count: u64,
}

/// Loaded templates, indexed like `Config::outputs` (`None`: the output writes JSON lines).
pub struct Templates {
    per_output: Vec<Option<(String, Handlebars<'static>)>>,
}

impl Templates {
    /// Load every output's template and try it on a sample alert, so a template that compiles
    /// but cannot render (or renders invalid JSON) also fails at start.
    pub fn load(cfg: &Config) -> Result<Templates, TemplateLoadError> {
        let mut per_output = Vec::with_capacity(cfg.outputs.len());
        for o in &cfg.outputs {
            let Some(name) = &o.template else {
                per_output.push(None);
                continue;
            };
            let (file, text) = read_template(&cfg.templates_dir, name)?;
            let mut hb = Handlebars::new();
            register_helpers(&mut hb);
            match o.kind.escape() {
                Escape::Slack => hb.register_escape_fn(slack_escape),
                Escape::Json => hb.register_escape_fn(json_escape),
            }
            hb.register_template_string(name, &text)
                .map_err(|e| TemplateLoadError {
                    file: file.clone(),
                    line: e.pos().map(|p| p.0),
                    column: e.pos().map(|p| p.1),
                    reason: e.reason().to_string(),
                })?;
            let t = Templates {
                per_output: vec![Some((name.clone(), hb))],
            };
            let sample = sample_alert();
            let ctx = TemplateContext {
                alert: &sample,
                route: "check",
                output: OutputInfo {
                    name: &o.name,
                    kind: o.kind.as_str(),
                },
                dedup: DedupInfo {
                    count: 3,
                    window: "10m".into(),
                    text: "repeated 3 times in 10m".into(),
                    key: "0123456789abcdef".into(),
                },
                digest: None,
                summary: false,
                test: true,
            };
            let rendered = t.render(0, &ctx).map_err(|e| TemplateLoadError {
                file: file.clone(),
                line: e.line,
                column: e.column,
                reason: e.reason,
            })?;
            // Every output type sends JSON (file and stdout write JSON lines).
            if let Err(e) = serde_json::from_str::<Value>(&rendered) {
                return Err(TemplateLoadError {
                    file,
                    line: None,
                    column: None,
                    reason: format!(
                        "renders invalid JSON for a {} output: {e} (line {} of the rendered text)",
                        o.kind.as_str(),
                        e.line()
                    ),
                });
            }
            per_output.push(t.per_output.into_iter().next().flatten());
        }
        Ok(Templates { per_output })
    }

    /// Compile every `*.hbs` file in `dir` (also those no output uses yet); returns how many.
    pub fn check_dir(dir: &Path) -> Result<usize, TemplateLoadError> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(0);
        };
        let mut n = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("hbs") {
                continue;
            }
            let file = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| TemplateLoadError {
                file: file.clone(),
                line: None,
                column: None,
                reason: format!("cannot read: {e}"),
            })?;
            let mut hb = Handlebars::new();
            register_helpers(&mut hb);
            hb.register_template_string("t", &text)
                .map_err(|e| TemplateLoadError {
                    file,
                    line: e.pos().map(|p| p.0),
                    column: e.pos().map(|p| p.1),
                    reason: e.reason().to_string(),
                })?;
            n += 1;
        }
        Ok(n)
    }

    pub fn has_template(&self, output: usize) -> bool {
        matches!(self.per_output.get(output), Some(Some(_)))
    }

    pub fn render(
        &self,
        output: usize,
        ctx: &TemplateContext<'_>,
    ) -> Result<String, RenderFailure> {
        let Some(Some((name, hb))) = self.per_output.get(output) else {
            return Err(RenderFailure {
                line: None,
                column: None,
                reason: "output has no template".into(),
            });
        };
        hb.render(name, ctx).map_err(|e| RenderFailure {
            line: e.line_no,
            column: e.column_no,
            reason: e.reason().to_string(),
        })
    }
}

#[derive(Debug)]
pub struct RenderFailure {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub reason: String,
}

fn read_template(dir: &Path, name: &str) -> Result<(String, String), TemplateLoadError> {
    let path = dir.join(name);
    let file = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((file, text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => EMBEDDED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, t)| (format!("(embedded) {n}"), (*t).to_owned()))
            .ok_or_else(|| TemplateLoadError {
                file,
                line: None,
                column: None,
                reason: "template file not found".into(),
            }),
        Err(e) => Err(TemplateLoadError {
            file,
            line: None,
            column: None,
            reason: format!("cannot read: {e}"),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Slack attachment colour per priority.
pub fn priority_color(p: Priority) -> &'static str {
    match p {
        Priority::Emergency | Priority::Alert | Priority::Critical => "#d0021b",
        Priority::Error => "#f5a623",
        Priority::Warning => "#f8e71c",
        Priority::Notice => "#4a90e2",
        Priority::Informational => "#7ed321",
        Priority::Debug => "#9b9b9b",
    }
}

pub fn priority_emoji(p: Priority) -> &'static str {
    match p {
        Priority::Emergency | Priority::Alert => ":rotating_light:",
        Priority::Critical => ":red_circle:",
        Priority::Error => ":large_orange_circle:",
        Priority::Warning => ":warning:",
        Priority::Notice => ":large_blue_circle:",
        Priority::Informational => ":information_source:",
        Priority::Debug => ":mag:",
    }
}

fn value_priority(v: &Value) -> Priority {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(Priority::Informational)
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

handlebars_helper!(priority_color_helper: |p: Value| priority_color(value_priority(&p)));
handlebars_helper!(priority_emoji_helper: |p: Value| priority_emoji(value_priority(&p)));
handlebars_helper!(pd_severity_helper: |p: Value| pagerduty_severity(value_priority(&p)));
handlebars_helper!(truncate_helper: |s: Value, n: u64| truncate_chars(&value_text(&s), n as usize));
handlebars_helper!(join_helper: |v: Value, sep: str| match &v {
    Value::Array(items) => items.iter().map(value_text).collect::<Vec<_>>().join(sep),
    other => value_text(other),
});
/// `{{{json v}}}`: serialises the parameter in place (the helper macro would clone the whole
/// value first, i.e. the alert's field map, on every render). The result is escaped like any
/// other helper's in double braces.
struct JsonHelper;

impl HelperDef for JsonHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let v = h
            .param(0)
            .ok_or(RenderErrorReason::ParamNotFoundForIndex("json_helper", 0))?;
        Ok(ScopedJson::Derived(Value::String(
            serde_json::to_string(v.value()).unwrap_or_default(),
        )))
    }
}
handlebars_helper!(format_time_helper: |t: Value, {format: str = "[year]-[month]-[day] [hour]:[minute]:[second] UTC"}|
    format_time(&value_text(&t), format));

/// Format an RFC 3339 alert time with a `time` format description; the input on error.
pub fn format_time(t: &str, format: &str) -> String {
    let Ok(ts) = Timestamp::parse(t) else {
        return t.to_owned();
    };
    let Ok(fd) = time::format_description::parse_borrowed::<1>(format) else {
        return t.to_owned();
    };
    time::OffsetDateTime::from_unix_timestamp_nanos(ts.unix_nanos())
        .ok()
        .and_then(|d| d.format(&fd).ok())
        .unwrap_or_else(|| t.to_owned())
}

/// `{{default a b "fallback"}}`: the first parameter that is neither missing, null nor "".
struct DefaultHelper;

impl HelperDef for DefaultHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        if h.params().is_empty() {
            return Err(RenderErrorReason::ParamNotFoundForIndex("default", 0).into());
        }
        let pick = h
            .params()
            .iter()
            .map(|p| p.value())
            .find(|v| !matches!(v, Value::Null) && v.as_str() != Some(""))
            .cloned()
            .unwrap_or(Value::String(String::new()));
        Ok(ScopedJson::Derived(pick))
    }
}

fn register_helpers(hb: &mut Handlebars<'static>) {
    hb.register_helper("priority_color", Box::new(priority_color_helper));
    hb.register_helper("priority_emoji", Box::new(priority_emoji_helper));
    hb.register_helper("pd_severity", Box::new(pd_severity_helper));
    hb.register_helper("truncate", Box::new(truncate_helper));
    hb.register_helper("join", Box::new(join_helper));
    hb.register_helper("json", Box::new(JsonHelper));
    hb.register_helper("format_time", Box::new(format_time_helper));
    hb.register_helper("default", Box::new(DefaultHelper));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_time_and_maps_severity() {
        assert_eq!(
            format_time("2023-05-25T13:44:05.478445995Z", "[hour]:[minute]"),
            "13:44"
        );
        assert_eq!(format_time("garbage", "[hour]"), "garbage");
        assert_eq!(pagerduty_severity(Priority::Alert), "critical");
        assert_eq!(pagerduty_severity(Priority::Error), "error");
        assert_eq!(pagerduty_severity(Priority::Warning), "warning");
        assert_eq!(pagerduty_severity(Priority::Notice), "info");
    }
}
