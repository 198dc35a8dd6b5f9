//! PagerDuty Events API v2: completing a rendered event (routing key, `trigger`, dedup key,
//! severity, source, summary limit), and the event sent when the template fails.

use aerie_alert::Alert;
use serde_json::{Map, Value, json};

use crate::text::{pagerduty_severity, truncate_chars};

/// PagerDuty: characters in `payload.summary`.
pub const PAGERDUTY_SUMMARY: usize = 1024;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagerduty_event_is_completed() {
        let a = crate::envelope::sample_alert();
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
}
