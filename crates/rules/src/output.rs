//! Rule output formats: `%field`, `%field[arg]`, `%evt.arg.name` and transformer fields
//! (`%tolower(proc.name)`), rendered to text (`<NA>` when missing) and typed JSON fields
//! (`null` when missing).

use serde_json::{Map, Value as Json};

use crate::condition::ast::Transformer;
use crate::condition::program::{CField, Operand, OwnedArg, transform_text};
use crate::event::Event;
use crate::fields::{ArgKind, FieldRegistry, FieldType};
use crate::value::Value;

#[derive(Debug, Clone)]
enum Segment {
    Text(String),
    /// `width` is the `%12proc.name` length: the text is cut or space-padded to it (0: as is).
    Field {
        key: String,
        operand: Operand,
        width: usize,
    },
}

/// A compiled output format.
#[derive(Debug, Clone, Default)]
pub struct OutputFormat {
    segments: Vec<Segment>,
}

/// The format names something the source cannot extract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("invalid formatting token %{0}: nonexistent field")]
    UnknownField(String),
    #[error("invalid formatting token %{0}: {1}")]
    Invalid(String, String),
    /// libsinsp's formatter errors, word for word; the offset is the `%`'s in the format.
    #[error("invalid formatting syntax: formatting cannot end with a %")]
    EndsWithPercent(usize),
    #[error("invalid formatting syntax: formatting cannot end with a number")]
    EndsWithNumber(usize),
    /// A `%` not followed by a field: libsinsp says `unknown filter: unexpected token after '`.
    #[error(
        "unknown filter: unexpected token after ' (every '%' must start a field such as \
         %proc.name; there is no escape for a literal '%')"
    )]
    NotAField(usize),
}

impl OutputError {
    /// What `skip-if-unknown-filter: true` turns into a warning (Falco's
    /// `err_is_unknown_type_or_field`: "invalid formatting token", "unknown filter:").
    pub fn is_unknown_type_or_field(&self) -> bool {
        matches!(
            self,
            OutputError::UnknownField(_) | OutputError::Invalid(..) | OutputError::NotAField(_)
        )
    }

    /// The byte offset in the format of the `%` in error, when known.
    pub fn offset(&self) -> Option<usize> {
        match self {
            OutputError::EndsWithPercent(o)
            | OutputError::EndsWithNumber(o)
            | OutputError::NotAField(o) => Some(*o),
            OutputError::UnknownField(_) | OutputError::Invalid(..) => None,
        }
    }
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.'
}

impl OutputFormat {
    /// Compile `fmt` against a source's fields.
    pub fn compile(fmt: &str, registry: &'static FieldRegistry) -> Result<Self, OutputError> {
        let b = fmt.as_bytes();
        let mut segments = Vec::new();
        let mut text = String::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'%' {
                let next = memchr::memchr(b'%', &b[i..]).map_or(b.len(), |n| i + n);
                text.push_str(&fmt[i..next]);
                i = next;
                continue;
            }
            // As in libsinsp's formatter, every `%` starts a field, optionally after a width
            // (`%12proc.name`); there is no escape for a literal `%`.
            let mut start = i + 1;
            if start == b.len() {
                return Err(OutputError::EndsWithPercent(i));
            }
            let digits = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
            let width = fmt[start..start + digits].parse::<usize>().unwrap_or(0);
            start += digits;
            if start == b.len() {
                return Err(OutputError::EndsWithNumber(i));
            }
            let Some((operand, key, end)) = parse_token(fmt, start, registry)? else {
                return Err(OutputError::NotAField(i));
            };
            if !text.is_empty() {
                segments.push(Segment::Text(std::mem::take(&mut text)));
            }
            segments.push(Segment::Field {
                key,
                operand,
                width,
            });
            i = end;
        }
        if !text.is_empty() {
            segments.push(Segment::Text(text));
        }
        Ok(OutputFormat { segments })
    }

    /// The fields the format names (keys of `output_fields`), in order.
    pub fn field_keys(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Field { key, .. } => Some(key.as_str()),
            Segment::Text(_) => None,
        })
    }

    /// Render the text and the typed `output_fields`.
    pub fn render(&self, ev: &(impl Event + ?Sized)) -> (String, Map<String, Json>) {
        let mut out = String::new();
        let mut fields = Map::new();
        for s in &self.segments {
            match s {
                Segment::Text(t) => out.push_str(t),
                Segment::Field {
                    key,
                    operand,
                    width,
                } => {
                    let (text, json) = render_operand(operand, ev);
                    let text = text.as_deref().unwrap_or("<NA>");
                    if *width == 0 {
                        out.push_str(text);
                    } else {
                        let cut = text.chars().take(*width);
                        let n = cut.clone().count();
                        out.extend(cut);
                        out.extend(std::iter::repeat_n(' ', width - n));
                    }
                    fields.insert(key.clone(), json);
                }
            }
        }
        (out, fields)
    }
}

/// Parse the token after `%` at `start`: returns the operand, its key and the end offset.
fn parse_token(
    fmt: &str,
    start: usize,
    registry: &'static FieldRegistry,
) -> Result<Option<(Operand, String, usize)>, OutputError> {
    let b = fmt.as_bytes();
    // Transformer: `%tolower(proc.name)`.
    for t in Transformer::ALL {
        let open = format!("{}(", t.name());
        if t != Transformer::Val && fmt[start..].starts_with(&open) {
            let inner_start = start + open.len();
            let Some(close) = fmt[inner_start..].find(')') else {
                return Err(OutputError::Invalid(
                    fmt[start..].to_owned(),
                    "missing ')'".into(),
                ));
            };
            let inner = fmt[inner_start..inner_start + close].trim();
            let Some((mut op, _, used)) = parse_token(inner, 0, registry)? else {
                return Err(OutputError::UnknownField(inner.to_owned()));
            };
            if used != inner.len() {
                return Err(OutputError::Invalid(
                    inner.to_owned(),
                    "unexpected text in transformer".into(),
                ));
            }
            op.transforms.push(t);
            let end = inner_start + close + 1;
            return Ok(Some((op, fmt[start..end].to_owned(), end)));
        }
    }
    let mut end = start;
    while end < b.len() && is_name_char(b[end]) {
        end += 1;
    }
    while end > start && b[end - 1] == b'.' {
        end -= 1;
    }
    if end == start || !fmt[start..end].contains('.') {
        return Ok(None);
    }
    let name = &fmt[start..end];
    let Some((id, info, dotted)) = registry.resolve(name) else {
        return Err(OutputError::UnknownField(name.to_owned()));
    };
    let mut arg = dotted.map(str::to_owned);
    let mut stop = end;
    if arg.is_none() && b.get(end) == Some(&b'[') {
        let Some(close) = fmt[end..].find(']') else {
            return Err(OutputError::Invalid(name.to_owned(), "missing ']'".into()));
        };
        arg = Some(fmt[end + 1..end + close].to_owned());
        stop = end + close + 1;
    }
    if let Some(a) = &arg {
        crate::evttypes::check_event_arg(info.name, a, dotted.is_some())
            .map_err(|m| OutputError::Invalid(fmt[start..stop].to_owned(), m))?;
    }
    let owned = match (&arg, info.arg) {
        (Some(_), ArgKind::None) => {
            return Err(OutputError::Invalid(
                name.to_owned(),
                "field does not take an argument".into(),
            ));
        }
        (None, ArgKind::Required) => {
            return Err(OutputError::Invalid(
                name.to_owned(),
                "field requires an argument".into(),
            ));
        }
        (None, _) => OwnedArg::None,
        (Some(a), _) => match a.parse::<u64>() {
            Ok(i) => OwnedArg::Index(i),
            Err(_) => OwnedArg::Key(a.clone().into_boxed_str()),
        },
    };
    Ok(Some((
        Operand {
            field: CField {
                id,
                info,
                arg: owned,
            },
            transforms: Vec::new(),
        },
        fmt[start..stop].to_owned(),
        stop,
    )))
}

/// Extract and render one operand: text (None when missing) and its JSON value.
pub(crate) fn render_operand(op: &Operand, ev: &(impl Event + ?Sized)) -> (Option<String>, Json) {
    let r = op.field.as_ref();
    let mut texts: Vec<String> = Vec::new();
    let mut single: Option<Json> = None;
    let mut buf = Vec::new();
    let mut tmp = Vec::new();
    let extracted = ev.extract(&r, &mut |v| {
        if op.transforms.is_empty() {
            if texts.is_empty() {
                single = Some(typed(op.field.info.ty, &v));
            }
            texts.push(v.to_string());
        } else {
            buf.clear();
            buf.extend_from_slice(v.to_string().as_bytes());
            for t in &op.transforms {
                transform_text(*t, &buf, &mut tmp);
                std::mem::swap(&mut buf, &mut tmp);
            }
            let s = String::from_utf8_lossy(&buf).into_owned();
            if texts.is_empty() {
                single = Some(if op.transforms.last() == Some(&Transformer::Len) {
                    s.parse::<u64>().map(Json::from).unwrap_or(Json::Null)
                } else {
                    Json::String(s.clone())
                });
            }
            texts.push(s);
        }
    });
    if !extracted {
        return (None, Json::Null);
    }
    if op.field.info.is_list && op.transforms.is_empty() {
        let text = format!("({})", texts.join(","));
        return (Some(text.clone()), Json::String(text));
    }
    match texts.len() {
        0 => (Some(String::new()), Json::String(String::new())),
        1 => (texts.pop(), single.unwrap_or(Json::Null)),
        _ => {
            let t = texts.join(" ");
            (Some(t.clone()), Json::String(t))
        }
    }
}

/// The JSON value Falco writes for a field of type `ty`.
fn typed(ty: FieldType, v: &Value<'_>) -> Json {
    match v {
        Value::Int(i) => Json::from(*i),
        Value::Uint(u) => Json::from(*u),
        Value::Double(d) => serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number),
        Value::Bool(b) => Json::Bool(*b),
        Value::Str(s) if ty.is_numeric() => match s.trim().parse::<i64>() {
            Ok(n) => Json::from(n),
            Err(_) => Json::String((*s).to_owned()),
        },
        other => Json::String(other.to_string()),
    }
}
