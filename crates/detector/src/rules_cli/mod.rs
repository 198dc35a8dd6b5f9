//! Rule-file subcommands that need no kernel: `validate`, `list-rules`, `list-fields`,
//! `describe-rule`, `replay` and `test-rules`.
//!
//! Wiring (in `main.rs`): add `#[command(flatten)] Rules(rules_cli::RulesCommand)` to the
//! subcommand enum and dispatch with `rules_cli::run(cmd)`.

mod test_rules;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aerie_alert::Priority;
use aerie_rules::{
    Engine, EngineConfig, FileResult, JsonEvent, Matches, OpenPathFilter, OpenPathNeed, RuleLoader,
    RuleMatching, builtin_registries,
};
use anyhow::{Context as _, bail};

/// The rule subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Load rule files in order and report errors and warnings per file.
    Validate(ValidateArgs),
    /// List the rules of the given files.
    ListRules(ListRulesArgs),
    /// List the fields conditions and outputs can use.
    ListFields(ListFieldsArgs),
    /// Show one rule: its condition after macro and list expansion, and its event types.
    DescribeRule(DescribeRuleArgs),
    /// Evaluate JSON-lines events against the rules; alerts go to stdout as Falco JSON.
    Replay(ReplayArgs),
    /// Run rule test cases (events with expected and unexpected rules).
    TestRules(TestRulesArgs),
}

/// Rule files, loaded in order (later files change earlier ones).
#[derive(Debug, Clone, clap::Args)]
pub struct RulesFiles {
    /// Rule file(s), in load order; repeat the flag or list several.
    #[arg(long = "rules", value_name = "PATH", num_args = 1.., required = true)]
    pub rules: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub files: RulesFiles,
    /// Print Falco-style JSON results.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListRulesArgs {
    #[command(flatten)]
    pub files: RulesFiles,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListFieldsArgs {
    /// Only this event source (`syscall`, `k8s_audit`).
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct DescribeRuleArgs {
    #[command(flatten)]
    pub files: RulesFiles,
    /// The rule's name (when omitted, the last value given to --rules).
    pub name: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub files: RulesFiles,
    /// JSON-lines events (when omitted, the last value given to --rules); `-` is stdin.
    pub events: Option<PathBuf>,
    /// Hostname written in the alerts (default: this host's name).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Report every matching rule, not only the first.
    #[arg(long)]
    pub all: bool,
    /// Ignore rules below this priority.
    #[arg(long, value_name = "PRIORITY", default_value = "debug")]
    pub min_priority: Priority,
}

#[derive(Debug, clap::Args)]
pub struct TestRulesArgs {
    #[command(flatten)]
    pub files: RulesFiles,
    /// YAML test cases (when omitted, the last value given to --rules).
    pub cases: Option<PathBuf>,
}

/// Run a rule subcommand, writing to stdout.
pub fn run(cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    run_to(cmd, &mut out)
}

/// Run a rule subcommand, writing its output to `out`.
pub fn run_to(cmd: RulesCommand, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match cmd {
        RulesCommand::Validate(a) => run_validate(a, out),
        RulesCommand::ListRules(a) => run_list_rules(a, out),
        RulesCommand::ListFields(a) => run_list_fields(a, out),
        RulesCommand::DescribeRule(a) => run_describe_rule(a, out),
        RulesCommand::Replay(a) => run_replay(a, out),
        RulesCommand::TestRules(a) => test_rules::run_test_rules(a, out),
    }
}

/// Split "the last --rules value is really the positional" (`replay --rules a.yaml ev.jsonl`).
fn split_last(
    files: &RulesFiles,
    positional: Option<PathBuf>,
    what: &str,
) -> anyhow::Result<(Vec<PathBuf>, PathBuf)> {
    let mut rules = files.rules.clone();
    let last = match positional {
        Some(p) => p,
        None => {
            if rules.len() < 2 {
                bail!("missing {what}: give it after the rule files");
            }
            rules.pop().unwrap_or_default()
        }
    };
    Ok((rules, last))
}

/// Load and compile rule files; errors are printed to stderr and end the command.
pub(crate) fn load_engine(files: &[PathBuf], cfg: &EngineConfig) -> anyhow::Result<Engine> {
    let mut loader = RuleLoader::new();
    for f in files {
        loader.load_file(f);
    }
    let engine = loader.compile(cfg);
    if loader.has_errors() {
        for r in loader.results() {
            for e in &r.errors {
                eprintln!("error: {e}");
            }
        }
        bail!("the rule files have errors (run `validate` for details)");
    }
    Ok(engine)
}

pub fn run_validate(args: ValidateArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut loader = RuleLoader::new();
    for f in &args.files.rules {
        loader.load_file(f);
    }
    // Compile only when every file was read: as in Falco, a file that fails to read stops.
    let engine = loader.compile(&EngineConfig::default());
    let results = loader.results();
    if args.json {
        writeln!(out, "{}", aerie_rules::load_results_json(results))?;
    } else {
        for r in results {
            write_file_summary(out, r)?;
        }
        if !loader.has_errors() {
            write_open_path_need(out, &engine.open_path_need())?;
        }
    }
    Ok(if loader.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What `run` would do with opens under these rules (see `capture.path_filter`).
fn write_open_path_need(out: &mut dyn Write, need: &OpenPathNeed) -> anyhow::Result<()> {
    match need {
        OpenPathNeed::All { rule, why } => writeln!(
            out,
            "open path filter: off, every open is sent: rule {rule:?} {why}"
        )?,
        OpenPathNeed::Paths(f) => writeln!(
            out,
            "open path filter: on, {} prefixes [{}] and {} suffixes [{}]",
            f.prefixes.len(),
            OpenPathFilter::atoms_text(&f.prefixes),
            f.suffixes.len(),
            OpenPathFilter::atoms_text(&f.suffixes)
        )?,
    }
    Ok(())
}

fn write_file_summary(out: &mut dyn Write, r: &FileResult) -> anyhow::Result<()> {
    let c = r.counts;
    writeln!(
        out,
        "{}: {} ({} rules, {} macros, {} lists, {} disabled; {} errors, {} warnings)",
        r.name,
        if r.successful { "Ok" } else { "Invalid" },
        c.rules,
        c.macros,
        c.lists,
        c.disabled_rules,
        r.errors.len(),
        r.warnings.len()
    )?;
    for e in &r.errors {
        writeln!(out, "  error: {e}")?;
    }
    for w in &r.warnings {
        writeln!(out, "  warning: {w}")?;
    }
    Ok(())
}

pub fn run_list_rules(args: ListRulesArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let engine = load_engine(&args.files.rules, &EngineConfig::default())?;
    for r in engine.rules() {
        if args.json {
            writeln!(out, "{}", r.summary_json())?;
        } else {
            writeln!(
                out,
                "{:<13} {:<9} {:<8} {}  [{}]",
                r.priority.as_str(),
                r.source,
                if r.enabled { "enabled" } else { "disabled" },
                r.name,
                r.tags.join(",")
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_list_fields(args: ListFieldsArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let regs: Vec<_> = builtin_registries()
        .into_iter()
        .filter(|r| args.source.as_deref().is_none_or(|s| s == r.source()))
        .collect();
    if regs.is_empty() {
        bail!(
            "unknown source {:?} (known: syscall, k8s_audit)",
            args.source.unwrap_or_default()
        );
    }
    for reg in regs {
        writeln!(out, "# source: {}", reg.source())?;
        for f in reg.fields() {
            let arg = match f.arg {
                aerie_rules::ArgKind::None => "",
                aerie_rules::ArgKind::Optional => "[ARG]",
                aerie_rules::ArgKind::Required => "[ARG required]",
            };
            let list = if f.is_list { " (list)" } else { "" };
            let runtime =
                if reg.source() == "syscall" && aerie_detector::fields::needs_runtime(f.name) {
                    " [needs a container runtime: CRI or Docker API; <NA> until it answers]"
                } else {
                    ""
                };
            writeln!(out, "{}{arg}\t{}{list}\t{}{runtime}", f.name, f.ty, f.desc)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_describe_rule(args: DescribeRuleArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let (files, name) = match args.name {
        Some(n) => (args.files.rules.clone(), n),
        None => {
            let (f, n) = split_last(&args.files, None, "rule name")?;
            (f, n.display().to_string())
        }
    };
    let engine = load_engine(&files, &EngineConfig::default())?;
    let Some((_, r)) = engine.rule_by_name(&name) else {
        bail!("no rule named {name:?}");
    };
    writeln!(out, "rule: {}", r.name)?;
    writeln!(out, "source: {}", r.source)?;
    writeln!(out, "priority: {}", r.priority.as_str())?;
    writeln!(out, "enabled: {}", r.enabled)?;
    writeln!(out, "tags: [{}]", r.tags.join(", "))?;
    writeln!(out, "desc: {}", r.desc.trim())?;
    writeln!(out, "condition: {}", r.condition.trim())?;
    writeln!(out, "expanded condition: {}", r.expanded_condition)?;
    match &r.event_types {
        Some(t) => writeln!(
            out,
            "event types: {}",
            t.iter().cloned().collect::<Vec<_>>().join(", ")
        )?,
        None => writeln!(out, "event types: all")?,
    }
    writeln!(out, "output: {}", r.output)?;
    Ok(ExitCode::SUCCESS)
}

/// This host's name, for alerts.
pub(crate) fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

pub fn run_replay(args: ReplayArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let (files, events) = split_last(&args.files, args.events.clone(), "events file")?;
    let engine = load_engine(
        &files,
        &EngineConfig {
            min_priority: args.min_priority,
            rule_matching: if args.all {
                RuleMatching::All
            } else {
                RuleMatching::First
            },
            ..EngineConfig::default()
        },
    )?;
    let hostname = args.hostname.unwrap_or_else(local_hostname);
    let reader: Box<dyn BufRead> = if events == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&events)
                .with_context(|| format!("cannot open events file {}", events.display()))?,
        ))
    };
    let mut matches = Matches::new();
    let mut bad = 0usize;
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", events.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let ev = match JsonEvent::parse(&line) {
            Ok(ev) => ev,
            Err(e) => {
                eprintln!("{}:{}: invalid event: {e}", events.display(), n + 1);
                bad += 1;
                continue;
            }
        };
        engine.evaluate(&ev, &mut matches);
        for id in matches.iter() {
            writeln!(out, "{}", engine.alert(id, &ev, &hostname).to_json())?;
        }
    }
    Ok(if bad > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
