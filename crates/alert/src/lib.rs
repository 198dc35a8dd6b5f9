//! The alert wire format: Falco's JSON alert, as written by Falco's `json_output` and
//! `http_output`, emitted by aerie-detector and accepted by aerie-router.
//!
//! ```json
//! {"hostname":"node-1","output":"13:44:05.478445995: Critical ...","output_fields":{...},
//!  "priority":"Critical","rule":"Terminal shell in container","source":"syscall",
//!  "tags":["container"],"time":"2023-05-25T13:44:05.478445995Z"}
//! ```

mod decode;
mod priority;
mod retry_after;
mod secret;
mod time;

pub use decode::{DecodeError, decode_alert, decode_batch};
pub use priority::{Priority, UnknownPriority};
pub use retry_after::retry_after;
pub use secret::Secret;
pub use time::{InvalidTime, Timestamp};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The source Falco assigns when a rule names none.
pub const DEFAULT_SOURCE: &str = "syscall";

/// One Falco alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Node that raised the alert. Falco before 0.31 did not send it.
    #[serde(default)]
    pub hostname: String,
    /// Rendered output text, prefixed with the clock time and priority. Empty when the sender
    /// left it out (Falco with `json_include_output_property: false`); the router builds it.
    #[serde(default)]
    pub output: String,
    /// Typed values of every field the output names; `null` where a value could not be extracted.
    #[serde(default)]
    pub output_fields: Map<String, Value>,
    pub priority: Priority,
    pub rule: String,
    #[serde(default = "default_source")]
    pub source: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub time: Timestamp,
}

fn default_source() -> String {
    DEFAULT_SOURCE.to_owned()
}

/// The parts of an alert that a rule match supplies; [`AlertParts::into_alert`] adds what
/// Falco derives from them.
#[derive(Debug, Clone)]
pub struct AlertParts<'a> {
    pub hostname: &'a str,
    pub time: Timestamp,
    pub priority: Priority,
    pub rule: &'a str,
    pub source: &'a str,
    /// The rendered rule output, without the time and priority prefix.
    pub message: &'a str,
    pub output_fields: Map<String, Value>,
    pub tags: Vec<String>,
}

impl AlertParts<'_> {
    /// Build the alert the way Falco does: the output text gets the
    /// `HH:MM:SS.nnnnnnnnn: Priority ` prefix, and `evt.time` (ns) joins the output fields.
    pub fn into_alert(self) -> Alert {
        let AlertParts {
            hostname,
            time,
            priority,
            rule,
            source,
            message,
            mut output_fields,
            tags,
        } = self;
        let output = format!("{}: {} {}", time.clock_prefix(), priority, message);
        output_fields
            .entry("evt.time")
            .or_insert_with(|| Value::from(time.unix_nanos() as u64));
        Alert {
            hostname: hostname.to_owned(),
            output,
            output_fields,
            priority,
            rule: rule.to_owned(),
            source: source.to_owned(),
            tags,
            time,
        }
    }
}

impl Alert {
    /// One JSON line, without the trailing newline.
    pub fn to_json(&self) -> String {
        // Serializing a tree of strings, numbers and maps cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A string-valued output field, if present.
    pub fn field_str(&self, name: &str) -> Option<&str> {
        self.output_fields.get(name).and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_alert_has_falco_prefix_and_evt_time() {
        let t = Timestamp::parse("2023-05-25T13:44:05.478445995Z").unwrap();
        let mut fields = Map::new();
        fields.insert("proc.name".into(), "sh".into());
        let a = AlertParts {
            hostname: "node-1",
            time: t,
            priority: Priority::Critical,
            rule: "Terminal shell in container",
            source: "syscall",
            message: "A shell was spawned",
            output_fields: fields,
            tags: vec!["container".into()],
        }
        .into_alert();
        assert_eq!(a.output, "13:44:05.478445995: Critical A shell was spawned");
        assert_eq!(
            a.output_fields["evt.time"],
            Value::from(1_685_022_245_478_445_995u64)
        );
        let back: Alert = serde_json::from_str(&a.to_json()).unwrap();
        assert_eq!(back, a);
    }
}
