//! Route matchers: the `match:` block as written, and compiled (exact text, globs, regexes,
//! priority comparisons, tags and output fields), evaluated against one alert.

use std::collections::BTreeMap;

use aerie_alert::{Alert, Priority};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

/// Route matcher as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub priority: Option<String>,
    pub source: Option<String>,
    pub rule: Option<String>,
    pub hostname: Option<String>,
    #[serde(default)]
    pub tags_any: Vec<String>,
    #[serde(default)]
    pub tags_all: Vec<String>,
    #[serde(default)]
    pub tags_none: Vec<String>,
    #[serde(default)]
    pub output_fields: BTreeMap<String, RawFieldCond>,
}

/// An `output_fields` condition: a bare string (exact, glob with `*?`, or `/regex/`) or a map.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawFieldCond {
    Pattern(String),
    Spec(RawFieldSpec),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFieldSpec {
    pub equals: Option<String>,
    pub glob: Option<String>,
    pub regex: Option<String>,
    pub exists: Option<bool>,
}

/// Exact text, a glob (`*`, `?`), or a `/regex/`.
#[derive(Debug, Clone)]
pub enum TextPattern {
    Exact(String),
    Regex(Regex),
}

impl TextPattern {
    /// `/.../` is a regex, unanchored (write `^...$` to anchor); text with `*` or `?` is a glob
    /// over the whole string; anything else must match exactly.
    pub fn parse(p: &str) -> Result<TextPattern, String> {
        if p.len() >= 2 && p.starts_with('/') && p.ends_with('/') {
            return Regex::new(&p[1..p.len() - 1])
                .map(TextPattern::Regex)
                .map_err(|e| format!("invalid regex {p}: {e}"));
        }
        if p.contains(['*', '?']) {
            return Self::glob(p);
        }
        Ok(TextPattern::Exact(p.to_owned()))
    }

    pub fn glob(p: &str) -> Result<TextPattern, String> {
        let mut re = String::with_capacity(p.len() + 8);
        re.push_str("^(?s:");
        for c in p.chars() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
            }
        }
        re.push_str(")$");
        Regex::new(&re)
            .map(TextPattern::Regex)
            .map_err(|e| format!("invalid glob {p}: {e}"))
    }

    pub fn matches(&self, s: &str) -> bool {
        match self {
            TextPattern::Exact(e) => e == s,
            TextPattern::Regex(r) => r.is_match(s),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

#[derive(Debug, Clone)]
enum FieldCond {
    Exists(bool),
    Text(TextPattern),
}

/// One compiled route matcher: every condition present must hold.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    priority: Option<(Cmp, Priority)>,
    source: Option<TextPattern>,
    rule: Option<TextPattern>,
    hostname: Option<TextPattern>,
    tags_any: Vec<String>,
    tags_all: Vec<String>,
    tags_none: Vec<String>,
    fields: Vec<(String, Vec<FieldCond>)>,
}

/// (field, reason, text to locate in the file)
pub type MatchError = (String, String, String);

impl Matcher {
    pub fn compile(m: &RawMatch) -> Result<Matcher, MatchError> {
        let text = |field: &str, v: &Option<String>| -> Result<Option<TextPattern>, MatchError> {
            v.as_deref()
                .map(|p| TextPattern::parse(p).map_err(|r| (field.to_owned(), r, p.to_owned())))
                .transpose()
        };
        let priority = match &m.priority {
            None => None,
            Some(p) => {
                Some(parse_priority_cmp(p).map_err(|r| ("priority".to_owned(), r, p.clone()))?)
            }
        };
        let mut fields = Vec::new();
        for (name, cond) in &m.output_fields {
            let field = format!("output_fields.{name}");
            let conds = match cond {
                RawFieldCond::Pattern(p) => vec![FieldCond::Text(
                    TextPattern::parse(p).map_err(|r| (field.clone(), r, p.clone()))?,
                )],
                RawFieldCond::Spec(s) => {
                    let mut v = Vec::new();
                    if let Some(e) = s.exists {
                        v.push(FieldCond::Exists(e));
                    }
                    if let Some(e) = &s.equals {
                        v.push(FieldCond::Text(TextPattern::Exact(e.clone())));
                    }
                    if let Some(g) = &s.glob {
                        v.push(FieldCond::Text(
                            TextPattern::glob(g).map_err(|r| (field.clone(), r, g.clone()))?,
                        ));
                    }
                    if let Some(r) = &s.regex {
                        v.push(FieldCond::Text(TextPattern::Regex(Regex::new(r).map_err(
                            |e| (field.clone(), format!("invalid regex: {e}"), r.clone()),
                        )?)));
                    }
                    if v.is_empty() {
                        return Err((
                            field,
                            "needs equals, glob, regex or exists".into(),
                            name.clone(),
                        ));
                    }
                    v
                }
            };
            fields.push((name.clone(), conds));
        }
        Ok(Matcher {
            priority,
            source: text("source", &m.source)?,
            rule: text("rule", &m.rule)?,
            hostname: text("hostname", &m.hostname)?,
            tags_any: m.tags_any.clone(),
            tags_all: m.tags_all.clone(),
            tags_none: m.tags_none.clone(),
            fields,
        })
    }

    pub fn matches(&self, a: &Alert) -> bool {
        if let Some((cmp, p)) = self.priority {
            let ok = match cmp {
                Cmp::Ge => a.priority >= p,
                Cmp::Gt => a.priority > p,
                Cmp::Le => a.priority <= p,
                Cmp::Lt => a.priority < p,
                Cmp::Eq => a.priority == p,
            };
            if !ok {
                return false;
            }
        }
        if self.source.as_ref().is_some_and(|s| !s.matches(&a.source))
            || self.rule.as_ref().is_some_and(|r| !r.matches(&a.rule))
            || self
                .hostname
                .as_ref()
                .is_some_and(|h| !h.matches(&a.hostname))
        {
            return false;
        }
        let has = |t: &String| a.tags.iter().any(|x| x == t);
        if !self.tags_any.is_empty() && !self.tags_any.iter().any(has) {
            return false;
        }
        if !self.tags_all.iter().all(has) || self.tags_none.iter().any(has) {
            return false;
        }
        self.fields.iter().all(|(name, conds)| {
            let v = a.output_fields.get(name).filter(|v| !v.is_null());
            conds.iter().all(|c| match c {
                FieldCond::Exists(want) => v.is_some() == *want,
                FieldCond::Text(p) => v.is_some_and(|v| match v {
                    Value::String(s) => p.matches(s),
                    other => p.matches(&other.to_string()),
                }),
            })
        })
    }
}

/// `>= critical`, `<=warning`, `= error`, `> notice`, `< error`, or a bare name (equality).
pub fn parse_priority_cmp(text: &str) -> Result<(Cmp, Priority), String> {
    let t = text.trim();
    let (cmp, rest) = if let Some(r) = t.strip_prefix(">=") {
        (Cmp::Ge, r)
    } else if let Some(r) = t.strip_prefix("<=") {
        (Cmp::Le, r)
    } else if let Some(r) = t.strip_prefix("==") {
        (Cmp::Eq, r)
    } else if let Some(r) = t.strip_prefix('=') {
        (Cmp::Eq, r)
    } else if let Some(r) = t.strip_prefix('>') {
        (Cmp::Gt, r)
    } else if let Some(r) = t.strip_prefix('<') {
        (Cmp::Lt, r)
    } else {
        (Cmp::Eq, t)
    };
    let p = rest.trim().parse::<Priority>().map_err(|e| e.to_string())?;
    Ok((cmp, p))
}
