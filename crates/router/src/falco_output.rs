//! The `output` text of alerts that arrive without one (Falco with
//! `json_include_output_property: false`): built from the time, priority, rule and
//! `output_fields` in Falco's shape, `HH:MM:SS.nnnnnnnnn: Priority rule (name=value ...)`.
//!
//! falcosidekick accepts such alerts and forwards an empty `output`; the router builds one so
//! that Slack, PagerDuty and the archive show what happened.

use std::fmt::Write as _;

use aerie_alert::Alert;
use serde_json::Value;

/// Output fields left out of the built text: the event time is already its prefix.
const SKIPPED: &[&str] = &["evt.time"];

/// Fill in `alert.output` when it is empty (absent or blank); `true` when it did. An alert
/// that carries an output is left as it is.
pub fn fill_missing(alert: &mut Alert) -> bool {
    if !alert.output.trim().is_empty() {
        return false;
    }
    alert.output = build(alert);
    true
}

/// `HH:MM:SS.nnnnnnnnn: Priority rule (name=value ...)`, fields in key order; a `null` value
/// prints as Falco's `<NA>`. Without fields: no parenthesis.
pub fn build(alert: &Alert) -> String {
    let mut out = String::with_capacity(64 + alert.rule.len() + 32 * alert.output_fields.len());
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{}: {} {}",
        alert.time.clock_prefix(),
        alert.priority,
        alert.rule
    );
    let mut first = true;
    for (name, value) in &alert.output_fields {
        if SKIPPED.contains(&name.as_str()) {
            continue;
        }
        out.push_str(if first { " (" } else { " " });
        first = false;
        out.push_str(name);
        out.push('=');
        match value {
            Value::Null => out.push_str("<NA>"),
            Value::String(s) => out.push_str(s),
            other => {
                let _ = write!(out, "{other}");
            }
        }
    }
    if !first {
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(json: &str) -> Alert {
        aerie_alert::decode_alert(json.as_bytes()).expect("test alert decodes")
    }

    #[test]
    fn builds_falco_shaped_text_from_rule_priority_and_fields() {
        let mut a = alert(
            r#"{"priority":"Critical","rule":"Terminal shell in container","time":"2023-05-25T13:44:05.478445995Z","output_fields":{"proc.name":"sh","evt.time":1685022245478445995,"proc.tty":34816,"fd.name":null,"k8s.ns.name":"default"}}"#,
        );
        assert!(fill_missing(&mut a));
        assert_eq!(
            a.output,
            "13:44:05.478445995: Critical Terminal shell in container (fd.name=<NA> k8s.ns.name=default proc.name=sh proc.tty=34816)"
        );
    }

    #[test]
    fn no_fields_no_parenthesis_and_blank_counts_as_missing() {
        let mut a =
            alert(r#"{"output":"  ","priority":"info","rule":"r","time":"2023-05-25T13:44:05Z"}"#);
        assert!(fill_missing(&mut a));
        assert_eq!(a.output, "13:44:05.000000000: Informational r");
    }

    #[test]
    fn a_present_output_is_kept() {
        let mut a = alert(
            r#"{"output":"as sent","priority":"info","rule":"r","time":"2023-05-25T13:44:05Z","output_fields":{"a":1}}"#,
        );
        assert!(!fill_missing(&mut a));
        assert_eq!(a.output, "as sent");
    }
}
