//! What the operator adds to every alert, outside the rule files: static fields (Falco's
//! `static_fields`, e.g. `k8s.cluster.name`, `environment`) and `append_output` entries that
//! add text and fields to the rules they match (by source, tags and rule name). Resolved once
//! per rule when the engine is compiled, so an alert only copies what was prepared.

use serde_json::Value as Json;

use crate::fields::FieldRegistry;
use crate::output::{OutputError, OutputFormat};

/// One `append_output` entry: a match, and what it adds to the rules it matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOutput {
    /// Only rules of this source (`syscall`, `k8s_audit`); `None`: every source.
    pub source: Option<String>,
    /// Only rules that carry every one of these tags.
    pub tags: Vec<String>,
    /// Only the rule with this name.
    pub rule: Option<String>,
    /// Appended to the output text after a space. `%field` names a field of the rule's
    /// source, or a static field (replaced by its value).
    pub extra_output: String,
    /// Added to `output_fields` (not to the text).
    pub extra_fields: Vec<ExtraField>,
}

/// A field `append_output` adds to `output_fields`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraField {
    /// A fixed value under a name of your choice.
    Static { name: String, value: String },
    /// A field of the rule's source, extracted from the event (`evt.hostname`).
    Field(String),
}

/// Everything added to alerts from configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputExtras {
    /// Added to the `output_fields` of every alert, of every source.
    pub static_fields: Vec<(String, String)>,
    /// Applied in order to the rules each entry matches.
    pub append_output: Vec<AppendOutput>,
}

/// What one rule gets from [`OutputExtras`], prepared at compile time.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleExtras {
    /// The rule's output text with every matching `extra_output` appended.
    pub output: String,
    /// Static name/value pairs for `output_fields`.
    pub statics: Vec<(String, Json)>,
    /// Extracted extra fields, rendered for their values only.
    pub fields: Option<OutputFormat>,
}

impl AppendOutput {
    fn matches(&self, rule: &str, source: &str, tags: &[String]) -> bool {
        self.source.as_deref().is_none_or(|s| s == source)
            && self.rule.as_deref().is_none_or(|r| r == rule)
            && self.tags.iter().all(|t| tags.contains(t))
    }
}

impl OutputExtras {
    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.static_fields.is_empty() && self.append_output.is_empty()
    }

    /// The extras of one rule. Errors name the `append_output` entry and the field.
    pub(crate) fn for_rule(
        &self,
        rule: &str,
        source: &str,
        tags: &[String],
        output: &str,
        registry: &'static FieldRegistry,
    ) -> Result<RuleExtras, String> {
        let mut out = RuleExtras {
            output: output.to_owned(),
            statics: self
                .static_fields
                .iter()
                .map(|(k, v)| (k.clone(), Json::from(v.as_str())))
                .collect(),
            fields: None,
        };
        let mut field_fmt = String::new();
        for (i, a) in self.append_output.iter().enumerate() {
            if !a.matches(rule, source, tags) {
                continue;
            }
            for f in &a.extra_fields {
                match f {
                    ExtraField::Static { name, value } => {
                        out.statics.retain(|(k, _)| k != name);
                        out.statics.push((name.clone(), Json::from(value.as_str())));
                    }
                    ExtraField::Field(name) => {
                        field_fmt.push('%');
                        field_fmt.push_str(name);
                        field_fmt.push(' ');
                    }
                }
            }
            let extra = a.extra_output.trim();
            if !extra.is_empty() {
                let text = self.substitute_statics(extra, &out.statics, registry);
                OutputFormat::compile(&text, registry).map_err(|e| {
                    format!("append_output[{i}].extra_output for a {source} rule: {e}")
                })?;
                out.output.push(' ');
                out.output.push_str(&text);
            }
        }
        if !field_fmt.is_empty() {
            let fmt = OutputFormat::compile(&field_fmt, registry).map_err(|e: OutputError| {
                format!("append_output extra_fields for a {source} rule: {e}")
            })?;
            out.fields = Some(fmt);
        }
        Ok(out)
    }

    /// Replace `%name` of a static field (that is not a field of the source) by its value.
    fn substitute_statics(
        &self,
        text: &str,
        statics: &[(String, Json)],
        registry: &'static FieldRegistry,
    ) -> String {
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(p) = rest.find('%') {
            out.push_str(&rest[..p]);
            let after = &rest[p + 1..];
            let len = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
            let name = after[..len].trim_end_matches('.');
            let value = statics
                .iter()
                .find(|(k, _)| k == name)
                .filter(|_| registry.get(name).is_none())
                .and_then(|(_, v)| v.as_str());
            match value {
                Some(v) => {
                    out.push_str(v);
                    rest = &after[name.len()..];
                }
                None => {
                    out.push('%');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{k8s_audit_fields, syscall_fields};

    fn extras() -> OutputExtras {
        OutputExtras {
            static_fields: vec![
                ("k8s.cluster.name".into(), "prod-eu".into()),
                ("environment".into(), "production".into()),
            ],
            append_output: vec![
                AppendOutput {
                    extra_output: "cluster=%k8s.cluster.name".into(),
                    ..Default::default()
                },
                AppendOutput {
                    source: Some("syscall".into()),
                    tags: vec!["container".into()],
                    extra_output: "pid=%proc.pid".into(),
                    extra_fields: vec![
                        ExtraField::Field("proc.ppid".into()),
                        ExtraField::Static {
                            name: "environment".into(),
                            value: "staging".into(),
                        },
                    ],
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn entries_apply_by_source_and_tags() {
        let e = extras();
        let tags = vec!["container".to_owned(), "shell".to_owned()];
        let r = e
            .for_rule("R", "syscall", &tags, "shell %proc.name", syscall_fields())
            .unwrap();
        assert_eq!(r.output, "shell %proc.name cluster=prod-eu pid=%proc.pid");
        assert_eq!(
            r.statics,
            [
                ("k8s.cluster.name".to_owned(), Json::from("prod-eu")),
                ("environment".to_owned(), Json::from("staging")),
            ]
        );
        assert_eq!(
            r.fields.unwrap().field_keys().collect::<Vec<_>>(),
            ["proc.ppid"]
        );
        // No `container` tag: only the first entry.
        let r = e
            .for_rule("R", "syscall", &[], "x", syscall_fields())
            .unwrap();
        assert_eq!(r.output, "x cluster=prod-eu");
        assert!(r.fields.is_none());
        assert_eq!(r.statics[1].1, Json::from("production"));
        // Another source: the syscall-only entry does not apply.
        let r = e
            .for_rule("R", "k8s_audit", &tags, "y", k8s_audit_fields())
            .unwrap();
        assert_eq!(r.output, "y cluster=prod-eu");
    }

    #[test]
    fn unknown_fields_are_errors_naming_the_entry() {
        let e = OutputExtras {
            append_output: vec![AppendOutput {
                extra_output: "cpu=%evt.nosuch".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let err = e
            .for_rule("R", "syscall", &[], "x", syscall_fields())
            .unwrap_err();
        assert!(
            err.contains("append_output[0]") && err.contains("evt.nosuch"),
            "{err}"
        );
    }
}
