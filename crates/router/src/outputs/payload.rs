//! Turning a rendered template into the body each API accepts, enforcing the API's limits
//! whatever the template did, and fallback bodies for when a template fails at run time.

use aerie_alert::Alert;
use serde_json::{Map, Value, json};

use crate::render::{mrkdwn_escape, pagerduty_severity, truncate_chars};

/// Slack: characters in a section's text.
pub const SLACK_SECTION_TEXT: usize = 3000;
/// Slack: characters in a header's text.
pub const SLACK_HEADER_TEXT: usize = 150;
/// Slack: characters in one section field.
pub const SLACK_FIELD_TEXT: usize = 2000;
/// Slack: fields per section.
pub const SLACK_FIELDS: usize = 10;
/// Slack: blocks per message.
pub const SLACK_BLOCKS: usize = 50;
/// Slack: characters in the top-level `text` (Slack truncates beyond 40 000; stay well below).
pub const SLACK_TEXT: usize = 3000;
/// PagerDuty: characters in `payload.summary`.
pub const PAGERDUTY_SUMMARY: usize = 1024;

/// Parse a rendered Slack message and bring it within Slack's limits.
pub fn slack(rendered: &str) -> Result<Vec<u8>, String> {
    let mut v: Value = serde_json::from_str(rendered)
        .map_err(|e| format!("template rendered invalid JSON: {e}"))?;
    let obj = v
        .as_object_mut()
        .ok_or("template must render a JSON object")?;
    if let Some(Value::String(t)) = obj.get_mut("text") {
        *t = truncate_chars(t, SLACK_TEXT);
    }
    let mut budget = SLACK_BLOCKS;
    if let Some(Value::Array(blocks)) = obj.get_mut("blocks") {
        limit_blocks(blocks, &mut budget);
    }
    if let Some(Value::Array(atts)) = obj.get_mut("attachments") {
        for a in atts {
            if let Some(Value::Array(blocks)) = a.get_mut("blocks") {
                limit_blocks(blocks, &mut budget);
            }
        }
    }
    serde_json::to_vec(&v).map_err(|e| e.to_string())
}

fn limit_blocks(blocks: &mut Vec<Value>, budget: &mut usize) {
    blocks.truncate(*budget);
    *budget -= blocks.len();
    for b in blocks {
        let kind = b
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let max = if kind == "header" {
            SLACK_HEADER_TEXT
        } else {
            SLACK_SECTION_TEXT
        };
        if let Some(Value::String(t)) = b.pointer_mut("/text/text") {
            *t = truncate_chars(t, max);
        }
        if let Some(Value::Array(fields)) = b.get_mut("fields") {
            fields.truncate(SLACK_FIELDS);
            for f in fields {
                if let Some(Value::String(t)) = f.get_mut("text") {
                    *t = truncate_chars(t, SLACK_FIELD_TEXT);
                }
            }
        }
        if let Some(Value::Array(elems)) = b.get_mut("elements") {
            for e in elems {
                if let Some(Value::String(t)) = e.get_mut("text") {
                    *t = truncate_chars(t, SLACK_SECTION_TEXT);
                }
            }
        }
    }
}

/// A Slack message built without the template (render failure): still escaped and limited.
pub fn slack_fallback(a: &Alert) -> Vec<u8> {
    let text = format!(
        "{}: {}\n{}",
        a.priority,
        mrkdwn_escape(&a.rule),
        mrkdwn_escape(&a.output)
    );
    let v = json!({ "text": truncate_chars(&text, SLACK_TEXT) });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Complete a rendered PagerDuty event: routing key, `trigger`, dedup key, limits.
pub fn pagerduty(
    rendered: &str,
    routing_key: &str,
    dedup_key: &str,
    a: &Alert,
) -> Result<Vec<u8>, String> {
    let mut v: Value = serde_json::from_str(rendered)
        .map_err(|e| format!("template rendered invalid JSON: {e}"))?;
    let obj = v
        .as_object_mut()
        .ok_or("template must render a JSON object")?;
    complete_pagerduty(obj, routing_key, dedup_key, a);
    serde_json::to_vec(&v).map_err(|e| e.to_string())
}

fn complete_pagerduty(obj: &mut Map<String, Value>, routing_key: &str, dedup_key: &str, a: &Alert) {
    obj.insert("routing_key".into(), routing_key.into());
    obj.insert("event_action".into(), "trigger".into());
    if !obj.get("dedup_key").is_some_and(Value::is_string) {
        obj.insert("dedup_key".into(), dedup_key.into());
    }
    let payload = obj
        .entry("payload")
        .or_insert_with(|| Value::Object(Map::new()));
    if !payload.is_object() {
        *payload = Value::Object(Map::new());
    }
    let Value::Object(p) = payload else { return };
    let summary = match p.get("summary") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => format!("{}: {}", a.rule, a.output),
    };
    p.insert(
        "summary".into(),
        truncate_chars(&summary, PAGERDUTY_SUMMARY).into(),
    );
    let valid = ["critical", "error", "warning", "info"];
    if !p
        .get("severity")
        .and_then(Value::as_str)
        .is_some_and(|s| valid.contains(&s))
    {
        p.insert("severity".into(), pagerduty_severity(a.priority).into());
    }
    if p.get("source")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        let src = if a.hostname.is_empty() {
            "aerie"
        } else {
            a.hostname.as_str()
        };
        p.insert("source".into(), src.into());
    }
}

/// A PagerDuty event built without the template.
pub fn pagerduty_fallback(routing_key: &str, dedup_key: &str, a: &Alert) -> Vec<u8> {
    let mut obj = Map::new();
    obj.insert(
        "payload".into(),
        json!({
            "timestamp": a.time.to_string(),
            "class": a.rule,
            "custom_details": a.output_fields,
        }),
    );
    complete_pagerduty(&mut obj, routing_key, dedup_key, a);
    serde_json::to_vec(&Value::Object(obj)).unwrap_or_default()
}

/// A JSON body for webhook/file/stdout: must parse; file and stdout also need one line.
pub fn json_body(rendered: &str) -> Result<Vec<u8>, String> {
    let trimmed = rendered.trim();
    serde_json::from_str::<serde::de::IgnoredAny>(trimmed)
        .map_err(|e| format!("template rendered invalid JSON: {e}"))?;
    Ok(one_line(trimmed))
}

/// Raw newlines can only sit between JSON tokens (escaping covers strings), so replacing them
/// keeps the JSON valid and makes it one line.
pub fn one_line(s: &str) -> Vec<u8> {
    s.bytes()
        .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_limits_are_enforced_after_rendering() {
        let long = "é".repeat(5000);
        let blocks: Vec<Value> = (0..60)
            .map(|_| json!({"type":"section","text":{"type":"mrkdwn","text": long}}))
            .collect();
        let msg = json!({"text": long, "blocks": blocks, "attachments":[{"blocks":[{"type":"header","text":{"type":"plain_text","text": long}}]}]});
        let out: Value = serde_json::from_slice(&slack(&msg.to_string()).unwrap()).unwrap();
        assert_eq!(out["blocks"].as_array().unwrap().len(), 50);
        assert_eq!(
            out["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            3000
        );
        assert_eq!(out["text"].as_str().unwrap().chars().count(), 3000);
        // The 50-block budget is shared with the attachments.
        assert!(
            out["attachments"][0]["blocks"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn pagerduty_event_is_completed() {
        let a = crate::render::sample_alert();
        let body = pagerduty(
            r#"{"payload":{"summary":"x","severity":"bogus"}}"#,
            "RK",
            "abc",
            &a,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["routing_key"], "RK");
        assert_eq!(v["event_action"], "trigger");
        assert_eq!(v["dedup_key"], "abc");
        assert_eq!(v["payload"]["severity"], "critical");
        assert_eq!(v["payload"]["source"], "falco-xczjd");
        let fb: Value = serde_json::from_slice(&pagerduty_fallback("RK", "k", &a)).unwrap();
        assert!(fb["payload"]["summary"].as_str().unwrap().chars().count() <= PAGERDUTY_SUMMARY);
        assert_eq!(fb["payload"]["custom_details"]["proc.tty"], 34816);
    }

    #[test]
    fn json_lines_are_single_lines() {
        assert_eq!(json_body("\n{\"a\":\n 1}\n").unwrap(), b"{\"a\":  1}");
        assert!(json_body("{oops").is_err());
    }
}
