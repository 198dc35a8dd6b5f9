//! `test-rules`: run events through the rules and check which rules fire.
//!
//! ```yaml
//! - name: cat reads /etc/shadow
//!   event: {source: syscall, fields: {evt.type: openat, fd.name: /etc/shadow, proc.name: cat}}
//!   expect: [Read sensitive file untrusted]
//!   expect_not: [Run shell untrusted]
//! ```
//! A mapping with a `cases:` list is accepted too.
//!
//! A case file cannot pass vacuously: an unknown case or event key, an unknown source, a
//! field the source does not have, or a file with no cases is an error with its position.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use aerie_rules::yaml::{self, Kind, Node};
use aerie_rules::{Engine, EngineConfig, FieldRegistry, JsonEvent, Matches, RuleMatching};
use anyhow::{Context as _, bail};

use super::{TestRulesArgs, load_engine, split_last};

/// One test case.
#[derive(Debug)]
pub(crate) struct Case {
    pub name: String,
    pub line: usize,
    pub event: JsonEvent,
    pub expect: Vec<String>,
    pub expect_not: Vec<String>,
}

fn names(node: Option<&Node>, what: &str, file: &Path) -> anyhow::Result<Vec<String>> {
    let Some(node) = node else {
        return Ok(Vec::new());
    };
    match &node.kind {
        Kind::Null => Ok(Vec::new()),
        Kind::Scalar { text, .. } => Ok(vec![text.clone()]),
        Kind::Seq(items) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_owned).with_context(|| {
                    format!(
                        "{}:{}:{}: `{what}` must list rule names",
                        file.display(),
                        i.mark.line,
                        i.mark.column
                    )
                })
            })
            .collect(),
        Kind::Map(_) => bail!(
            "{}:{}:{}: `{what}` must list rule names",
            file.display(),
            node.mark.line,
            node.mark.column
        ),
    }
}

const CASE_KEYS: &[&str] = &["name", "event", "expect", "expect_not"];
const EVENT_KEYS: &[&str] = &["source", "fields", "time"];

/// The first key of mapping `node` that is not in `known`, with its position.
fn unknown_key<'n>(node: &'n Node, known: &[&str]) -> Option<(&'n str, usize, usize)> {
    let Kind::Map(entries) = &node.kind else {
        return None;
    };
    entries.iter().find_map(|(k, _)| {
        let name = k.as_str().unwrap_or("");
        (!known.contains(&name)).then_some((name, k.mark.line, k.mark.column))
    })
}

/// Whether `key` (`fd.name`, `proc.aname[2]`, `evt.arg.flags`, `ka.uri.param[command]`)
/// names a field of `registry`.
fn is_field(registry: &FieldRegistry, key: &str) -> bool {
    let base = match key.find('[') {
        Some(i) if key.ends_with(']') => &key[..i],
        _ => key,
    };
    registry.resolve(base).is_some()
}

/// Parse a case file, checking its events against the sources and fields `engine` knows.
pub(crate) fn parse_cases(text: &str, file: &Path, engine: &Engine) -> anyhow::Result<Vec<Case>> {
    let docs = yaml::parse_documents(text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: {}",
            file.display(),
            e.mark.line,
            e.mark.column,
            e.message
        )
    })?;
    let mut cases = Vec::new();
    for doc in &docs {
        let list = match &doc.kind {
            Kind::Seq(items) => items,
            Kind::Map(_) => match doc.get("cases").map(|c| &c.kind) {
                Some(Kind::Seq(items)) => items,
                _ => bail!("{}: expected a list of cases or `cases:`", file.display()),
            },
            Kind::Null => continue,
            Kind::Scalar { .. } => bail!("{}: expected a list of cases", file.display()),
        };
        for (i, c) in list.iter().enumerate() {
            let at = format!("{}:{}:{}", file.display(), c.mark.line, c.mark.column);
            if !matches!(c.kind, Kind::Map(_)) {
                bail!("{at}: a case must be a mapping");
            }
            let name = c
                .get("name")
                .and_then(Node::as_str)
                .map_or_else(|| format!("case {}", i + 1), str::to_owned);
            let f = file.display();
            if let Some((key, line, col)) = unknown_key(c, CASE_KEYS) {
                bail!(
                    "{f}:{line}:{col}: case {name:?}: unknown key {key:?} (expected one of: {})",
                    CASE_KEYS.join(", ")
                );
            }
            let Some(ev) = c.get("event") else {
                bail!("{at}: case {name:?} has no `event`");
            };
            if let Some((key, line, col)) = unknown_key(ev, EVENT_KEYS) {
                bail!(
                    "{f}:{line}:{col}: case {name:?}: unknown event key {key:?} (expected one of: {})",
                    EVENT_KEYS.join(", ")
                );
            }
            let event = JsonEvent::from_json(ev.to_json())
                .map_err(|e| anyhow::anyhow!("{at}: case {name:?}: invalid event: {e}"))?;
            let Some(registry) = engine.registry(&event.source) else {
                bail!(
                    "{at}: case {name:?}: unknown source {:?} (known: syscall, k8s_audit)",
                    event.source
                );
            };
            if let Some(Kind::Map(fields)) = ev.get("fields").map(|n| &n.kind) {
                for (k, _) in fields {
                    let key = k.as_str().unwrap_or("");
                    if !is_field(registry, key) {
                        bail!(
                            "{f}:{}:{}: case {name:?}: {key:?} is not a field of source {}",
                            k.mark.line,
                            k.mark.column,
                            event.source
                        );
                    }
                }
            }
            let expect = names(c.get("expect"), "expect", file)?;
            let expect_not = names(c.get("expect_not"), "expect_not", file)?;
            if expect.is_empty() && expect_not.is_empty() {
                bail!("{at}: case {name:?} has neither `expect` nor `expect_not`");
            }
            cases.push(Case {
                name,
                line: c.mark.line,
                event,
                expect,
                expect_not,
            });
        }
    }
    if cases.is_empty() {
        bail!(
            "{}: no test cases (a case file must hold at least one)",
            file.display()
        );
    }
    Ok(cases)
}

pub fn run_test_rules(args: TestRulesArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let (files, cases_path) = split_last(&args.files, args.cases.clone(), "test cases file")?;
    let engine = load_engine(
        &files,
        &EngineConfig {
            rule_matching: RuleMatching::All,
            ..EngineConfig::default()
        },
    )?;
    let text = std::fs::read_to_string(&cases_path)
        .with_context(|| format!("cannot read test cases {}", cases_path.display()))?;
    let cases = parse_cases(&text, &cases_path, &engine)?;
    let mut failed = 0;
    let mut matches = Matches::new();
    for case in &cases {
        for name in case.expect.iter().chain(&case.expect_not) {
            if engine.rule_by_name(name).is_none() {
                bail!(
                    "{}:{}: case {:?} names unknown rule {name:?}",
                    cases_path.display(),
                    case.line,
                    case.name
                );
            }
        }
        engine.evaluate(&case.event, &mut matches);
        let fired: Vec<&str> = matches
            .iter()
            .map(|id| engine.rule(id).name.as_str())
            .collect();
        let missing: Vec<&String> = case
            .expect
            .iter()
            .filter(|e| !fired.contains(&e.as_str()))
            .collect();
        let unwanted: Vec<&String> = case
            .expect_not
            .iter()
            .filter(|e| fired.contains(&e.as_str()))
            .collect();
        if missing.is_empty() && unwanted.is_empty() {
            writeln!(out, "PASS {}", case.name)?;
        } else {
            failed += 1;
            writeln!(
                out,
                "FAIL {} ({}:{})",
                case.name,
                cases_path.display(),
                case.line
            )?;
            for m in missing {
                writeln!(out, "  expected to fire, did not: {m}")?;
            }
            for u in unwanted {
                writeln!(out, "  expected not to fire, fired: {u}")?;
            }
            writeln!(out, "  fired: [{}]", fired.join(", "))?;
        }
    }
    writeln!(
        out,
        "{} cases, {} passed, {} failed",
        cases.len(),
        cases.len() - failed,
        failed
    )?;
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
