//! Slack's Block Kit limits, enforced on whatever the template rendered, and the message sent
//! when the template fails.

use aerie_alert::Alert;
use serde_json::{Value, json};

use crate::text::{mrkdwn_escape, truncate_chars};

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
}
