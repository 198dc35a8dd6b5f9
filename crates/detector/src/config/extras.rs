//! The alert additions of `config/detector.yaml`: `rule_matching`, `static_fields` and
//! `append_output` (Falco's falco.yaml keys), with `${VAR}` taken from the environment, and
//! the rules engine settings built from them.

use aerie_rules::{AppendOutput, EngineConfig, ExtraField, OutputExtras, RuleMatching};
use serde::Deserialize;

use super::DetectorConfig;

/// Falco's `rule_matching`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleMatchingConfig {
    First,
    All,
}

/// One `append_output` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppendOutputConfig {
    /// Which rules it applies to; empty: every rule.
    #[serde(rename = "match")]
    pub matching: MatchConfig,
    /// Appended to the output text; `%field` of the rule's source or of a static field.
    pub extra_output: String,
    /// Added to `output_fields`: `- name: value` (fixed) or `- field.name` (extracted).
    pub extra_fields: Vec<ExtraFieldConfig>,
}

/// `append_output[].match`: every given condition must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchConfig {
    pub source: Option<String>,
    /// The rule carries every one of these tags.
    pub tags: Vec<String>,
    /// The rule's name.
    pub rule: Option<String>,
}

/// An `extra_fields` item.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ExtraFieldConfig {
    /// A field of the rule's source.
    Field(String),
    /// `name: value` pairs.
    Static(std::collections::BTreeMap<String, String>),
}

/// Replace every `${VAR}` in `text` from `env`; an unset variable is an error naming `key`.
fn expand(text: &str, key: &str, env: &[(String, String)]) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(p) = rest.find("${") {
        out.push_str(&rest[..p]);
        let after = &rest[p + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("{key}: unclosed ${{ in {text:?}"));
        };
        let var = &after[..end];
        match env.iter().find(|(k, _)| k == var) {
            Some((_, v)) => out.push_str(v),
            None => {
                return Err(format!(
                    "{key}: environment variable {var} is not set (used as ${{{var}}})"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl DetectorConfig {
    /// Resolve `${VAR}` in static fields and `append_output`.
    pub(super) fn expand_env(&mut self, env: &[(String, String)]) -> Result<(), String> {
        for (k, v) in self.static_fields.iter_mut() {
            *v = expand(v, &format!("static_fields.{k}"), env)?;
        }
        for (i, a) in self.append_output.iter_mut().enumerate() {
            a.extra_output = expand(
                &a.extra_output,
                &format!("append_output[{i}].extra_output"),
                env,
            )?;
            for f in &mut a.extra_fields {
                match f {
                    ExtraFieldConfig::Field(name) if name.trim().is_empty() => {
                        return Err(format!(
                            "append_output[{i}].extra_fields: an empty field name"
                        ));
                    }
                    ExtraFieldConfig::Field(_) => {}
                    ExtraFieldConfig::Static(map) => {
                        for (k, v) in map.iter_mut() {
                            *v = expand(v, &format!("append_output[{i}].extra_fields.{k}"), env)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The rules engine settings: minimum priority, rule matching, static fields and
    /// `append_output`.
    pub fn engine_config(&self) -> EngineConfig {
        let append_output = self
            .append_output
            .iter()
            .map(|a| AppendOutput {
                source: a.matching.source.clone(),
                tags: a.matching.tags.clone(),
                rule: a.matching.rule.clone(),
                extra_output: a.extra_output.clone(),
                extra_fields: a
                    .extra_fields
                    .iter()
                    .flat_map(|f| match f {
                        ExtraFieldConfig::Field(name) => {
                            vec![ExtraField::Field(name.trim().to_owned())]
                        }
                        ExtraFieldConfig::Static(map) => map
                            .iter()
                            .map(|(name, value)| ExtraField::Static {
                                name: name.clone(),
                                value: value.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        EngineConfig {
            min_priority: self.min_priority,
            rule_matching: match self.rule_matching {
                RuleMatchingConfig::First => RuleMatching::First,
                RuleMatchingConfig::All => RuleMatching::All,
            },
            extras: OutputExtras {
                static_fields: self
                    .static_fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                append_output,
            },
            ..EngineConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<DetectorConfig, String> {
        let d = std::env::temp_dir().join(format!("aerie-cfg-extras-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p: PathBuf = d.join(format!("{}.yaml", text.len()));
        std::fs::write(&p, text).unwrap();
        DetectorConfig::load_with_env(
            &p,
            true,
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn static_fields_and_append_output_from_file_and_env() {
        let cfg = load(
            "static_fields:\n  k8s.cluster.name: ${CLUSTER}\n  environment: prod\n\
             append_output:\n  - match: {source: syscall, tags: [container]}\n    extra_output: \"cluster=%k8s.cluster.name\"\n    extra_fields:\n      - proc.ppid\n      - team: ${TEAM}\n",
            &[("CLUSTER", "eu-1"), ("TEAM", "infra")],
        )
        .unwrap();
        let e = cfg.engine_config();
        assert_eq!(e.rule_matching, RuleMatching::All);
        assert_eq!(
            e.extras.static_fields,
            [
                ("environment".to_owned(), "prod".to_owned()),
                ("k8s.cluster.name".to_owned(), "eu-1".to_owned())
            ]
        );
        let a = &e.extras.append_output[0];
        assert_eq!(a.source.as_deref(), Some("syscall"));
        assert_eq!(a.tags, ["container"]);
        assert_eq!(
            a.extra_fields,
            [
                ExtraField::Field("proc.ppid".into()),
                ExtraField::Static {
                    name: "team".into(),
                    value: "infra".into()
                }
            ]
        );
        // The environment override of a plain key works too.
        let cfg = load(
            "static_fields:\n  environment: prod\n",
            &[("AERIE_DETECTOR__STATIC_FIELDS__ENVIRONMENT", "staging")],
        )
        .unwrap();
        assert_eq!(cfg.static_fields["environment"], "staging");
    }

    #[test]
    fn unset_variables_and_bad_keys_are_named() {
        let err = load("static_fields:\n  k8s.cluster.name: ${NOPE}\n", &[]).unwrap_err();
        assert!(
            err.contains("static_fields.k8s.cluster.name") && err.contains("NOPE"),
            "{err}"
        );
        let err = load("append_output:\n  - match: {sourc: syscall}\n", &[]).unwrap_err();
        assert!(err.contains("sourc"), "{err}");
        let err = load("rule_matching: some\n", &[]).unwrap_err();
        assert!(err.contains("some"), "{err}");
        let cfg = DetectorConfig::load_with_env(Path::new("/nonexistent.yaml"), false, []).unwrap();
        assert!(cfg.engine_config().extras.is_empty());
    }
}
