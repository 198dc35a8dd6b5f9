//! The event interface the engine evaluates against, and a map-backed event for replay and tests.

use aerie_alert::Timestamp;
use serde_json::{Map, Value as Json};

use crate::fields::{FieldArg, FieldRef};
use crate::value::Value;

/// An event the engine can judge. See the crate documentation for an example implementation.
pub trait Event {
    /// The event source (`syscall`, `k8s_audit`); only rules of this source are evaluated.
    fn source(&self) -> &str;

    /// The event type (`openat`, `execve`, ...), used to pick the rules that can match.
    /// `None` means unknown: only rules without an `evt.type` constraint are evaluated.
    /// When `Some`, it must be the value `extract` gives for `evt.type`: the engine
    /// evaluates `evt.type` comparisons from it directly.
    fn event_type(&self) -> Option<&str>;

    /// Extract `field`: call `out` once per value (several times for a multi-valued field,
    /// zero times for an empty list) and return `true`; or return `false` when the field
    /// cannot be extracted from this event (a comparison with it is then false).
    ///
    /// Values are borrowed only for the call, so an implementation can format into a stack
    /// buffer or hand out views of its own state without allocating.
    fn extract(&self, field: &FieldRef<'_>, out: &mut dyn FnMut(Value<'_>)) -> bool;

    /// When the event happened; the alert's `time`. `None` means now.
    fn timestamp(&self) -> Option<Timestamp> {
        None
    }
}

/// An event read from JSON: `{"source": "syscall", "fields": {"evt.type": "openat", ...}}`,
/// optionally with `"time": "2024-01-01T00:00:00.000000000Z"` (or `evt.rawtime` in the
/// fields, in ns).
///
/// - An absent key (or `null`) cannot be extracted.
/// - An array is a multi-valued field; `proc.aname[N]` reads element N counting from 1
///   (`proc.aname[0]` reads `proc.name`, as in Falco), and `evt.arg[key]` / `k8s.pod.label.key`
///   read keys of an object.
/// - An explicit key such as `"proc.aname[2]"` or `"evt.arg.flags"` wins over the above.
/// - `jevt.value[/a/b]` is a JSON pointer into the `jevt.obj` field.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonEvent {
    pub source: String,
    pub fields: Map<String, Json>,
    pub time: Option<Timestamp>,
}

/// A JSON event line was not of the expected shape.
#[derive(Debug, thiserror::Error)]
pub enum JsonEventError {
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Shape(String),
}

impl JsonEvent {
    /// Parse one event line.
    pub fn parse(text: &str) -> Result<Self, JsonEventError> {
        let v: Json = serde_json::from_str(text)?;
        Self::from_json(v)
    }

    /// Build from an already parsed JSON value.
    pub fn from_json(v: Json) -> Result<Self, JsonEventError> {
        let Json::Object(mut obj) = v else {
            return Err(JsonEventError::Shape("event must be a JSON object".into()));
        };
        let source = match obj.remove("source") {
            None | Some(Json::Null) => aerie_alert::DEFAULT_SOURCE.to_owned(),
            Some(Json::String(s)) => s,
            Some(_) => return Err(JsonEventError::Shape("\"source\" must be a string".into())),
        };
        let fields = match obj.remove("fields") {
            Some(Json::Object(m)) => m,
            None => Map::new(),
            Some(_) => return Err(JsonEventError::Shape("\"fields\" must be an object".into())),
        };
        let mut time = match obj.remove("time") {
            Some(Json::String(s)) => Some(
                Timestamp::parse(&s)
                    .map_err(|e| JsonEventError::Shape(format!("\"time\": {e}")))?,
            ),
            None | Some(Json::Null) => None,
            Some(_) => return Err(JsonEventError::Shape("\"time\" must be a string".into())),
        };
        if time.is_none()
            && let Some(ns) = fields.get("evt.rawtime").and_then(Json::as_u64)
        {
            time = Some(Timestamp::from_unix_nanos(ns as i128));
        }
        Ok(JsonEvent {
            source,
            fields,
            time,
        })
    }

    /// `evt.time`, `evt.rawtime` and `evt.time.iso8601` from the event time, when the
    /// fields do not give them.
    fn time_field(&self, name: &str, out: &mut dyn FnMut(Value<'_>)) -> bool {
        let Some(t) = self.time else {
            return false;
        };
        match name {
            "evt.time" => out(Value::Str(&t.clock_prefix())),
            "evt.rawtime" => out(Value::Uint(t.unix_nanos().max(0) as u64)),
            "evt.time.iso8601" | "evt.datetime" => {
                let iso = serde_json::to_value(t)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                out(Value::Str(&iso))
            }
            _ => return false,
        }
        true
    }

    fn emit(v: &Json, out: &mut dyn FnMut(Value<'_>)) -> bool {
        match v {
            Json::Null => false,
            Json::Array(items) => {
                for item in items {
                    emit_scalar(item, out);
                }
                true
            }
            other => {
                emit_scalar(other, out);
                true
            }
        }
    }
}

fn emit_scalar(v: &Json, out: &mut dyn FnMut(Value<'_>)) {
    match v {
        Json::String(s) => out(Value::Str(s)),
        Json::Bool(b) => out(Value::Bool(*b)),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                out(Value::Uint(u))
            } else if let Some(i) = n.as_i64() {
                out(Value::Int(i))
            } else {
                out(Value::Double(n.as_f64().unwrap_or(0.0)))
            }
        }
        Json::Null => {}
        other => out(Value::Str(&other.to_string())),
    }
}

impl Event for JsonEvent {
    fn source(&self) -> &str {
        &self.source
    }

    fn event_type(&self) -> Option<&str> {
        self.fields.get("evt.type").and_then(Json::as_str)
    }

    fn extract(&self, field: &FieldRef<'_>, out: &mut dyn FnMut(Value<'_>)) -> bool {
        let name = field.info.name;
        match field.arg {
            FieldArg::None => match self.fields.get(name) {
                Some(v) => Self::emit(v, out),
                None => self.time_field(name, out),
            },
            FieldArg::Index(n) => {
                if let Some(v) = self.fields.get(&format!("{name}[{n}]")) {
                    return Self::emit(v, out);
                }
                if n == 0
                    && let Some(base) = ancestor_base(name)
                    && let Some(v) = self.fields.get(&base)
                {
                    return Self::emit(v, out);
                }
                match self.fields.get(name) {
                    Some(Json::Array(items)) if n >= 1 => match items.get(n as usize - 1) {
                        Some(v) => Self::emit(v, out),
                        None => false,
                    },
                    Some(Json::Object(m)) => match m.get(&n.to_string()) {
                        Some(v) => Self::emit(v, out),
                        None => false,
                    },
                    _ => false,
                }
            }
            FieldArg::Key(k) => {
                for key in [format!("{name}[{k}]"), format!("{name}.{k}")] {
                    if let Some(v) = self.fields.get(&key) {
                        return Self::emit(v, out);
                    }
                }
                if name == "jevt.value"
                    && let Some(obj) = self.fields.get("jevt.obj")
                {
                    let parsed;
                    let root = match obj {
                        Json::String(s) => match serde_json::from_str::<Json>(s) {
                            Ok(v) => {
                                parsed = v;
                                &parsed
                            }
                            Err(_) => return false,
                        },
                        v => v,
                    };
                    return match root.pointer(k) {
                        Some(v) => Self::emit(v, out),
                        None => false,
                    };
                }
                match self.fields.get(name) {
                    Some(Json::Object(m)) => match m.get(k) {
                        Some(v) => Self::emit(v, out),
                        None => false,
                    },
                    _ => false,
                }
            }
        }
    }

    fn timestamp(&self) -> Option<Timestamp> {
        self.time
    }
}

/// `proc.aname` → `proc.name`: index 0 of an ancestor field is the process itself.
fn ancestor_base(name: &str) -> Option<String> {
    let rest = name.strip_prefix("proc.a")?;
    Some(format!("proc.{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::syscall_fields;

    fn values(ev: &JsonEvent, name: &str, arg: FieldArg<'_>) -> Option<Vec<String>> {
        let (id, info) = syscall_fields().get(name).unwrap();
        let r = FieldRef { id, info, arg };
        let mut got = Vec::new();
        ev.extract(&r, &mut |v| got.push(v.to_string()))
            .then_some(got)
    }

    #[test]
    fn json_events_extract_arrays_indexes_and_keys() {
        let ev = JsonEvent::parse(
            r#"{"source":"syscall","fields":{"evt.type":"openat","proc.name":"cat",
            "proc.aname":["bash","sshd"],"proc.aname[3]":"init","evt.arg.flags":"O_RDONLY",
            "proc.pid":42}}"#,
        )
        .unwrap();
        assert_eq!(ev.event_type(), Some("openat"));
        assert_eq!(
            values(&ev, "proc.aname", FieldArg::None).unwrap(),
            ["bash", "sshd"]
        );
        assert_eq!(
            values(&ev, "proc.aname", FieldArg::Index(2)).unwrap(),
            ["sshd"]
        );
        assert_eq!(
            values(&ev, "proc.aname", FieldArg::Index(3)).unwrap(),
            ["init"]
        );
        assert_eq!(
            values(&ev, "proc.aname", FieldArg::Index(0)).unwrap(),
            ["cat"]
        );
        assert!(values(&ev, "proc.aname", FieldArg::Index(4)).is_none());
        assert_eq!(
            values(&ev, "evt.arg", FieldArg::Key("flags")).unwrap(),
            ["O_RDONLY"]
        );
        assert_eq!(values(&ev, "proc.pid", FieldArg::None).unwrap(), ["42"]);
        assert!(values(&ev, "fd.name", FieldArg::None).is_none());
        // Without a time, time fields cannot be extracted.
        assert!(values(&ev, "evt.time", FieldArg::None).is_none());
    }

    #[test]
    fn time_fields_come_from_the_event_time() {
        let ev =
            JsonEvent::parse(r#"{"time":"2024-05-01T10:20:30.000000042Z","fields":{}}"#).unwrap();
        assert_eq!(
            values(&ev, "evt.time", FieldArg::None).unwrap(),
            ["10:20:30.000000042"]
        );
        assert_eq!(
            values(&ev, "evt.rawtime", FieldArg::None).unwrap(),
            ["1714558830000000042"]
        );
        assert_eq!(
            values(&ev, "evt.time.iso8601", FieldArg::None).unwrap(),
            ["2024-05-01T10:20:30.000000042Z"]
        );
    }

    #[test]
    fn malformed_events_are_errors() {
        assert!(JsonEvent::parse("[1]").is_err());
        assert!(JsonEvent::parse(r#"{"fields":3}"#).is_err());
        assert!(JsonEvent::parse("{").is_err());
        assert_eq!(JsonEvent::parse("{}").unwrap().source, "syscall");
    }
}
