//! Strict decoding of untrusted alert JSON, with errors that name the offending field.

use serde::Serialize;

use crate::Alert;

/// Why an alert body was refused: `field` is a JSON path (`priority`, `tags[2]`, `.` for the
/// whole document) and `reason` a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct DecodeError {
    pub field: String,
    pub reason: String,
    /// Position of the alert in a batch, when decoding one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

impl DecodeError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DecodeError {
            field: field.into(),
            reason: reason.into(),
            index: None,
        }
    }
}

/// Decode one Falco JSON alert.
pub fn decode_alert(body: &[u8]) -> Result<Alert, DecodeError> {
    // Fast path: plain serde_json. Only a body that fails is decoded again with path
    // tracking, to name the field (path tracking costs ~5% of router CPU on every alert).
    match serde_json::from_slice::<Alert>(body) {
        Ok(alert) => {
            validate(&alert)?;
            Ok(alert)
        }
        Err(_) => Err(explain_failure(body)),
    }
}

/// Decode again with path tracking to say which field made `body` fail.
fn explain_failure(body: &[u8]) -> DecodeError {
    let mut de = serde_json::Deserializer::from_slice(body);
    let alert: Result<Alert, DecodeError> =
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let mut path = e.path().to_string();
            if path.is_empty() || path == "?" {
                // A syntax error before any field was read: it concerns the whole document.
                path = ".".to_owned();
            }
            let inner = e.into_inner();
            DecodeError::new(field_name(&path, &inner), clean_reason(&inner))
        });
    match alert {
        Err(e) => e,
        Ok(_) => match de.end() {
            Err(e) => DecodeError::new(".", format!("trailing data after the alert: {e}")),
            // Unreachable in practice: serde_json and the path-tracking decoder agree.
            Ok(()) => DecodeError::new(".", "invalid alert"),
        },
    }
}

/// Decode a batch: a JSON array of alerts, or NDJSON (one alert per line, blank lines ignored).
/// Each element decodes independently, so one bad alert does not hide the good ones.
pub fn decode_batch(body: &[u8]) -> Result<Vec<Result<Alert, DecodeError>>, DecodeError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body)
            .map_err(|e| DecodeError::new(".", format!("invalid JSON array: {e}")))?;
        return Ok(items
            .iter()
            .enumerate()
            .map(|(i, raw)| decode_alert(raw.get().as_bytes()).map_err(|e| e.at(i)))
            .collect());
    }
    Ok(body
        .split(|&b| b == b'\n')
        .filter(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
        .enumerate()
        .map(|(i, line)| decode_alert(line).map_err(|e| e.at(i)))
        .collect())
}

impl DecodeError {
    fn at(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }
}

fn validate(alert: &Alert) -> Result<(), DecodeError> {
    if alert.rule.trim().is_empty() {
        return Err(DecodeError::new("rule", "must not be empty"));
    }
    Ok(())
}

/// serde reports a missing field at the parent path; name the field itself instead.
fn field_name(path: &str, err: &serde_json::Error) -> String {
    let msg = err.to_string();
    if let Some(name) = msg
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        return if path == "." {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
    }
    path.to_owned()
}

/// Drop serde's " at line 1 column 57" suffix: the field path already says where.
fn clean_reason(err: &serde_json::Error) -> String {
    let msg = err.to_string();
    match msg.rfind(" at line ") {
        Some(i) if err.line() > 0 => msg[..i].to_owned(),
        _ => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Priority;

    const FALCO_DOC_ALERT: &str = r#"{"hostname":"falco-xczjd","output":"13:44:05.478445995: Critical A shell was spawned in a container with an attached terminal (user=root user_loginuid=-1 k8s.ns=default k8s.pod=kubecon container=ee97d9c4186f shell=sh parent=runc cmdline=sh -c clear; (bash || ash || sh) terminal=34816 container_id=ee97d9c4186f image=docker.io/library/alpine)","priority":"Critical","rule":"Terminal shell in container","source":"syscall","tags":["container","mitre_execution","shell"],"time":"2023-05-25T13:44:05.478445995Z","output_fields":{"container.id":"ee97d9c4186f","container.image.repository":"docker.io/library/alpine","evt.time":1685022245478445995,"k8s.ns.name":"default","k8s.pod.name":"kubecon","proc.cmdline":"sh -c clear; (bash || ash || sh)","proc.name":"sh","proc.pname":"runc","proc.tty":34816,"user.loginuid":-1,"user.name":"root"}}"#;

    #[test]
    fn decodes_falco_documentation_alert_with_every_field_intact() {
        let a = decode_alert(FALCO_DOC_ALERT.as_bytes()).unwrap();
        assert_eq!(a.priority, Priority::Critical);
        assert_eq!(a.rule, "Terminal shell in container");
        assert_eq!(a.tags, ["container", "mitre_execution", "shell"]);
        assert_eq!(a.output_fields["evt.time"], 1685022245478445995u64);
        assert_eq!(a.output_fields["user.loginuid"], -1);
        let original: serde_json::Value = serde_json::from_str(FALCO_DOC_ALERT).unwrap();
        let round: serde_json::Value = serde_json::from_str(&a.to_json()).unwrap();
        assert_eq!(original, round);
    }

    #[test]
    fn names_the_bad_field() {
        let e = decode_alert(
            br#"{"output":"x","priority":"urgent","rule":"r","time":"2023-05-25T13:44:05Z"}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "priority");
        assert!(e.reason.contains("urgent"), "{e}");

        let e = decode_alert(br#"{"output":"x","priority":"info","time":"2023-05-25T13:44:05Z"}"#)
            .unwrap_err();
        assert_eq!(e.field, "rule");

        let e = decode_alert(br#"{"output":"x","priority":"info","rule":"r","tags":["a",3],"time":"2023-05-25T13:44:05Z"}"#)
            .unwrap_err();
        assert_eq!(e.field, "tags[1]");

        let e = decode_alert(br#"{"output":"x","priority":"info","rule":"r","time":"noon"}"#)
            .unwrap_err();
        assert_eq!(e.field, "time");

        let e = decode_alert(b"{not json").unwrap_err();
        assert_eq!(e.field, ".");

        let good = r#"{"output":"x","priority":"info","rule":"r","time":"2023-05-25T13:44:05Z"}"#;
        let e = decode_alert(format!("{good} trailing").as_bytes()).unwrap_err();
        assert_eq!(e.field, ".");
        assert!(e.reason.contains("trailing"), "{e}");
    }

    #[test]
    fn defaults_optional_fields_like_old_falco() {
        let a = decode_alert(
            br#"{"output":"x","priority":"INFO","rule":"r","time":"2023-05-25T13:44:05Z"}"#,
        )
        .unwrap();
        assert_eq!(a.source, "syscall");
        assert!(a.tags.is_empty());
        assert_eq!(a.hostname, "");
        assert_eq!(a.priority, Priority::Informational);

        // Falco with `json_include_output_property: false` leaves `output` out.
        let a = decode_alert(br#"{"priority":"info","rule":"r","time":"2023-05-25T13:44:05Z"}"#)
            .unwrap();
        assert_eq!(a.output, "");
    }

    #[test]
    fn batch_accepts_array_and_ndjson_and_isolates_bad_items() {
        let good = r#"{"output":"x","priority":"info","rule":"r","time":"2023-05-25T13:44:05Z"}"#;
        let arr = format!("[{good},{{\"rule\":1}},{good}]");
        let out = decode_batch(arr.as_bytes()).unwrap();
        assert_eq!(out.len(), 3);
        assert!(out[0].is_ok() && out[2].is_ok());
        assert_eq!(out[1].as_ref().unwrap_err().index, Some(1));

        let nd = format!("{good}\n\n{good}\n");
        let out = decode_batch(nd.as_bytes()).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(Result::is_ok));
    }
}
