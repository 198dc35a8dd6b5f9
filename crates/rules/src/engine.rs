//! The engine: load rule files, compile them for the registered sources, evaluate events.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use aerie_alert::{Alert, AlertParts, Priority, Timestamp};
use serde_json::Value as Json;

use crate::condition::ast::Expr;
use crate::condition::compile::{self, CompileError, Compiler, Scope};
use crate::condition::matchers::FxHashMap;
use crate::condition::parser;
use crate::condition::program::{Node, Program, Scratch};
use crate::diag::{Context, ErrorCode, FileResult, LoadError, LoadWarning, WarningCode};
use crate::event::Event;
use crate::exceptions::build_exception_condition;
use crate::extras::{OutputExtras, RuleExtras};
use crate::fields::{FieldRegistry, builtin_registries};
use crate::loader::Collection;
use crate::output::OutputFormat;

/// Whether evaluation stops at the first matching rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuleMatching {
    /// Stop at the first matching rule, in load order (Falco's default).
    #[default]
    First,
    /// Report every matching rule.
    All,
}

/// One entry of Falco's `rules:` selection, applied in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Enable rules whose name matches the glob.
    EnableRule(String),
    /// Disable rules whose name matches the glob.
    DisableRule(String),
    /// Enable rules with this tag.
    EnableTag(String),
    /// Disable rules with this tag.
    DisableTag(String),
}

/// How to build an engine from the loaded rules.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Rules below this priority are not evaluated.
    pub min_priority: Priority,
    pub rule_matching: RuleMatching,
    pub selection: Vec<Selection>,
    /// Static fields and `append_output` entries from the operator's configuration.
    pub extras: OutputExtras,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            min_priority: Priority::Debug,
            rule_matching: RuleMatching::First,
            selection: Vec::new(),
            extras: OutputExtras::default(),
        }
    }
}

/// Index of a compiled rule in [`Engine::rules`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u32);

/// A compiled rule and what `describe-rule` shows about it.
#[derive(Debug)]
pub struct CompiledRule {
    pub name: String,
    pub desc: String,
    pub source: String,
    pub priority: Priority,
    pub tags: Vec<String>,
    /// Whether the rule is evaluated (after `enabled:`, selection and minimum priority).
    pub enabled: bool,
    /// The condition as written, with exceptions appended.
    pub condition: String,
    /// The condition with macros and lists expanded.
    pub expanded_condition: String,
    /// Event types the rule can match; `None` means every type.
    pub event_types: Option<BTreeSet<String>>,
    pub output: String,
    format: OutputFormat,
    /// Static `output_fields` from the configuration.
    statics: Vec<(String, Json)>,
    /// Extra fields `append_output` adds to `output_fields`.
    extra_fields: Option<OutputFormat>,
    node: Node,
}

impl CompiledRule {
    /// The compiled condition.
    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    /// One JSON object describing the rule (`list-rules --json`).
    pub fn summary_json(&self) -> String {
        serde_json::json!({
            "name": self.name,
            "priority": self.priority.as_str(),
            "source": self.source,
            "enabled": self.enabled,
            "tags": self.tags,
            "desc": self.desc.trim(),
        })
        .to_string()
    }
}

/// The fields of one source and the rules indexed by event type.
#[derive(Debug)]
struct SourceIndex {
    name: String,
    registry: &'static FieldRegistry,
    /// Rules for each named event type, merged with the untyped rules, in load order.
    by_type: FxHashMap<Box<str>, Box<[u32]>>,
    /// Rules without an event-type constraint.
    untyped: Box<[u32]>,
}

/// Rule matches of one evaluation, plus reusable scratch space. Keep one per thread.
#[derive(Debug, Default)]
pub struct Matches {
    hits: Vec<RuleId>,
    scratch: Scratch,
}

impl Matches {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn len(&self) -> usize {
        self.hits.len()
    }
    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = RuleId> + '_ {
        self.hits.iter().copied()
    }
}

/// Reads rule files in order and compiles them into an [`Engine`].
#[derive(Debug)]
pub struct RuleLoader {
    coll: Collection,
    registries: Vec<&'static FieldRegistry>,
    /// Each file's text, to place errors at the token inside a condition or output.
    texts: HashMap<String, String>,
}

impl Default for RuleLoader {
    fn default() -> Self {
        Self::new()
    }
}

/// A compiled, ready-to-evaluate rule set.
#[derive(Debug)]
pub struct Engine {
    prog: Program,
    rules: Vec<CompiledRule>,
    sources: Vec<SourceIndex>,
    rule_matching: RuleMatching,
}

impl RuleLoader {
    /// A loader for the built-in sources (`syscall`, `k8s_audit`).
    pub fn new() -> Self {
        Self::with_registries(builtin_registries().to_vec())
    }

    pub fn with_registries(registries: Vec<&'static FieldRegistry>) -> Self {
        RuleLoader {
            coll: Collection::new(),
            registries,
            texts: HashMap::new(),
        }
    }

    fn source_names(&self) -> Vec<&'static str> {
        self.registries.iter().map(|r| r.source()).collect()
    }

    /// Read a rule file from disk.
    pub fn load_file(&mut self, path: &Path) -> &FileResult {
        let name = path.display().to_string();
        let idx = match std::fs::read_to_string(path) {
            Ok(text) => {
                let sources = self.source_names();
                let idx = self.coll.read(&name, &text, &sources);
                self.texts.insert(name, text);
                idx
            }
            Err(e) => self
                .coll
                .read_failed(&name, format!("Could not read file {name}: {e}")),
        };
        &self.coll.files[idx]
    }

    /// Read rules from text; `name` is used in diagnostics.
    pub fn load_str(&mut self, name: &str, text: &str) -> &FileResult {
        let sources = self.source_names();
        let idx = self.coll.read(name, text, &sources);
        self.texts.insert(name.to_owned(), text.to_owned());
        &self.coll.files[idx]
    }

    /// Per-file results, including compile diagnostics after [`RuleLoader::compile`].
    pub fn results(&self) -> &[FileResult] {
        &self.coll.files
    }

    /// Whether any file has an error.
    pub fn has_errors(&self) -> bool {
        self.coll.files.iter().any(|f| !f.errors.is_empty())
    }

    /// The collected items (after overrides and appends), for listing.
    pub fn collection(&self) -> &Collection {
        &self.coll
    }

    fn push_error(&mut self, code: ErrorCode, message: String, context: Context) {
        let f = self.file_for(&context.file);
        let r = &mut self.coll.files[f];
        r.errors.push(LoadError {
            code,
            message,
            context,
        });
        r.successful = false;
    }

    fn push_warning(&mut self, code: WarningCode, message: String, context: Context) {
        let f = self.file_for(&context.file);
        self.coll.files[f].warnings.push(LoadWarning {
            code,
            message,
            context,
        });
    }

    fn file_for(&mut self, name: &str) -> usize {
        match self.coll.files.iter().rposition(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.coll.files.push(FileResult {
                    name: name.to_owned(),
                    successful: true,
                    ..FileResult::default()
                });
                self.coll.files.len() - 1
            }
        }
    }

    /// Compile everything read so far. Diagnostics go to [`RuleLoader::results`]; rules
    /// that fail to compile are left out of the engine.
    pub fn compile(&mut self, cfg: &EngineConfig) -> Engine {
        let texts = &self.texts;
        let mut diags: Vec<(bool, ErrorCode, WarningCode, String, Context)> = Vec::new();
        let mut err = |code: ErrorCode, msg: String, ctx: &Context| {
            diags.push((true, code, WarningCode::UnknownKey, msg, ctx.clone()))
        };

        // Lists: expand nested lists (only those defined before, as Falco's visibility rule says).
        let lists = expand_lists(&self.coll);

        // Macros: parse every one; references must name a macro defined before.
        let mut macros: HashMap<String, Expr> = HashMap::new();
        let mut macro_refs_used: BTreeSet<String> = BTreeSet::new();
        for m in &self.coll.macros {
            match parser::parse(&m.condition) {
                Ok(e) => {
                    let mut refs = Vec::new();
                    collect_macro_refs(&e, &mut refs);
                    for (r, offset) in refs {
                        match self.coll.macro_info(&r) {
                            Some(ri) if ri.index < m.visibility => {
                                macro_refs_used.insert(r);
                            }
                            _ => {
                                let near = crate::suggest::closest(
                                    &r,
                                    self.coll
                                        .macros
                                        .iter()
                                        .filter(|d| d.index < m.visibility)
                                        .map(|d| d.name.as_str()),
                                );
                                err(
                                    ErrorCode::CompileCondition,
                                    CompileError::UndefinedMacro(r, near.map(str::to_owned))
                                        .to_string(),
                                    &locate(texts, &m.cond_ctx, &m.condition, offset),
                                )
                            }
                        }
                    }
                    macros.insert(m.name.clone(), e);
                }
                Err(e) => err(
                    ErrorCode::CompileCondition,
                    e.to_string(),
                    &locate(texts, &m.cond_ctx, &m.condition, e.offset),
                ),
            }
        }

        let mut prog = Program::default();
        let mut rules = Vec::new();
        let mut used_lists: BTreeSet<String> = BTreeSet::new();
        let mut used_macros = macro_refs_used;
        let mut warnings: Vec<(WarningCode, String, Context)> = Vec::new();
        let mut compilers: HashMap<String, Compiler<'_>> = HashMap::new();
        let mut macro_types = HashMap::new();
        for r in &self.coll.rules {
            if r.unknown_source {
                continue;
            }
            let Some(registry) = self
                .registries
                .iter()
                .find(|reg| reg.source() == r.source)
                .copied()
            else {
                continue;
            };
            let condition = match build_exception_condition(&r.condition, &r.exceptions, registry) {
                Ok(c) => c,
                Err((msg, ctx)) => {
                    err(ErrorCode::Validate, msg, &ctx);
                    continue;
                }
            };
            let ast = match parser::parse(&condition) {
                Ok(a) => a,
                Err(e) => {
                    err(
                        ErrorCode::CompileCondition,
                        e.to_string(),
                        &locate(texts, &r.cond_ctx, &condition, e.offset),
                    );
                    continue;
                }
            };
            // Output first, as Falco does: an unknown output field skips the rule too.
            let mut output = r.output.clone();
            if output.contains("%container.info") {
                warnings.push((
                    WarningCode::DeprecatedItem,
                    "%container.info is deprecated and no more useful, and will be dropped by Falco 1.0.0. The container plugin will automatically add required fields to the output message.".into(),
                    r.ctx.clone(),
                ));
                output = output.replace("%container.info", "").trim().to_owned();
            }
            let tags: Vec<String> = r.tags.iter().cloned().collect();
            let extras = if cfg.extras.is_empty() {
                RuleExtras {
                    output,
                    ..RuleExtras::default()
                }
            } else {
                match cfg
                    .extras
                    .for_rule(&r.name, &r.source, &tags, &output, registry)
                {
                    Ok(x) => x,
                    Err(msg) => {
                        err(ErrorCode::CompileOutput, msg, &r.output_ctx);
                        continue;
                    }
                }
            };
            let output = extras.output;
            let format = match OutputFormat::compile(&output, registry) {
                Ok(f) => f,
                Err(e) => {
                    if r.skip_if_unknown_filter && e.is_unknown_type_or_field() {
                        warnings.push((
                            WarningCode::UnknownFilter,
                            e.to_string(),
                            r.output_ctx.clone(),
                        ));
                    } else {
                        let ctx = match e.offset() {
                            Some(o) if output == r.output => {
                                locate(texts, &r.output_ctx, &output, o)
                            }
                            _ => r.output_ctx.clone(),
                        };
                        err(ErrorCode::CompileOutput, e.to_string(), &ctx);
                    }
                    continue;
                }
            };
            let compiler = compilers.entry(r.source.clone()).or_insert_with(|| {
                Compiler::new(
                    registry,
                    Scope {
                        lists: &lists,
                        macros: &macros,
                    },
                )
            });
            let node = match compiler.compile(&ast, &mut prog) {
                Ok(n) => n,
                Err(e) if r.skip_if_unknown_filter && e.error.is_unknown_type_or_field() => {
                    warnings.push((
                        WarningCode::UnknownFilter,
                        e.to_string(),
                        r.cond_ctx.clone(),
                    ));
                    continue;
                }
                Err(e) => {
                    // Point at the token: in the macro it was written in, or in the rule's
                    // own condition (not in the text its exceptions appended).
                    let ctx = match e.in_macro.as_deref().and_then(|m| self.coll.macro_info(m)) {
                        Some(m) => locate(texts, &m.cond_ctx, &m.condition, e.offset),
                        None if !r.exceptions.is_empty() => match e.offset.checked_sub(1) {
                            Some(o) if o < r.condition.len() => {
                                locate(texts, &r.cond_ctx, &r.condition, o)
                            }
                            _ => r.cond_ctx.clone(),
                        },
                        None => locate(texts, &r.cond_ctx, &condition, e.offset),
                    };
                    err(ErrorCode::CompileCondition, e.to_string(), &ctx);
                    continue;
                }
            };
            let event_types = compile::event_types(&node, &prog, &mut macro_types);
            if event_types.is_none() && r.warn_evttypes && r.source == aerie_alert::DEFAULT_SOURCE {
                warnings.push((
                    WarningCode::NoEvttype,
                    "Rule matches too many evt.type values. This has a significant performance penalty.".into(),
                    r.ctx.clone(),
                ));
            }
            let scope = Scope {
                lists: &lists,
                macros: &macros,
            };
            let expanded =
                compile::expand(&ast, &scope, 0, &mut compile::EXPAND_BUDGET.clone()).to_string();
            rules.push(CompiledRule {
                name: r.name.clone(),
                desc: r.desc.clone(),
                source: r.source.clone(),
                priority: r.priority,
                tags,
                enabled: r.enabled,
                condition,
                expanded_condition: expanded,
                event_types,
                output,
                format,
                statics: extras.statics,
                extra_fields: extras.fields,
                node,
            });
        }
        for c in compilers.values() {
            used_lists.extend(c.used_lists.iter().cloned());
            used_macros.extend(c.used_macros.iter().cloned());
        }
        // Lists referenced inside other lists count as used.
        for l in &self.coll.lists {
            for item in &l.items {
                if self.coll.list(item).is_some() {
                    used_lists.insert(item.clone());
                }
            }
        }
        for m in &self.coll.macros {
            if !used_macros.contains(&m.name) {
                warnings.push((
                    WarningCode::UnusedMacro,
                    "Macro not referred to by any other rule/macro".into(),
                    m.ctx.clone(),
                ));
            }
        }
        for l in &self.coll.lists {
            if !used_lists.contains(&l.name) {
                warnings.push((
                    WarningCode::UnusedList,
                    "List not referred to by any other rule/macro".into(),
                    l.ctx.clone(),
                ));
            }
        }
        drop(compilers);
        // A bad macro fails every rule that uses it: report each error once.
        let mut seen = std::collections::HashSet::new();
        for (is_err, code, _, msg, ctx) in diags {
            if is_err && seen.insert((msg.clone(), ctx.file.clone(), ctx.line, ctx.column)) {
                self.push_error(code, msg, ctx);
            }
        }
        for (code, msg, ctx) in warnings {
            self.push_warning(code, msg, ctx);
        }

        Engine::build(prog, rules, &self.registries, cfg)
    }
}

/// Point a context at the token at `offset` of `text`, a scalar that starts at `ctx`: found
/// in the file's text when it can be followed there, else estimated from `text` alone.
fn locate(texts: &HashMap<String, String>, ctx: &Context, text: &str, offset: usize) -> Context {
    let found = texts
        .get(&ctx.file)
        .and_then(|src| crate::position::locate(src, ctx.line, ctx.column, text, offset));
    match found {
        Some((line, column)) => Context {
            line,
            column,
            ..ctx.clone()
        },
        None => with_offset(ctx, text, offset),
    }
}

/// Point a context at `offset` within a condition that starts at `ctx`.
fn with_offset(ctx: &Context, text: &str, offset: usize) -> Context {
    let mut cut = offset.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let before = &text[..cut];
    let lines = before.matches('\n').count();
    let mut c = ctx.clone();
    if lines == 0 {
        c.column += before.chars().count();
    } else {
        c.line += lines;
        c.column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    }
    c
}

fn collect_macro_refs(e: &Expr, out: &mut Vec<(String, usize)>) {
    match e {
        Expr::And(items) | Expr::Or(items) => items.iter().for_each(|i| collect_macro_refs(i, out)),
        Expr::Not(i) => collect_macro_refs(i, out),
        Expr::Macro { name, offset } => out.push((name.clone(), *offset)),
        Expr::Check { .. } | Expr::Const(_) => {}
    }
}

/// Strip one level of matching quotes from a list item, as Falco's textual substitution
/// followed by parsing does.
fn unquote(item: &str) -> String {
    let b = item.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        item[1..item.len() - 1].to_owned()
    } else {
        item.to_owned()
    }
}

/// Expand every list, with nested lists resolved (only lists defined before a list are
/// visible to it). Each list is expanded once and items are de-duplicated, so nesting
/// cannot blow up time or size.
fn expand_lists(coll: &Collection) -> HashMap<String, Vec<String>> {
    fn expand(
        coll: &Collection,
        name: &str,
        depth: usize,
        memo: &mut HashMap<String, Vec<String>>,
    ) -> Vec<String> {
        if let Some(v) = memo.get(name) {
            return v.clone();
        }
        let Some(l) = coll.list(name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for item in &l.items {
            let nested = coll
                .list(item)
                .filter(|n| n.index < l.visibility && depth < 32 && n.name != l.name);
            if nested.is_some() {
                for v in expand(coll, item, depth + 1, memo) {
                    if seen.insert(v.clone()) {
                        out.push(v);
                    }
                }
            } else {
                let v = unquote(item);
                if seen.insert(v.clone()) {
                    out.push(v);
                }
            }
        }
        memo.insert(name.to_owned(), out.clone());
        out
    }
    let mut memo = HashMap::new();
    for l in &coll.lists {
        expand(coll, &l.name, 0, &mut memo);
    }
    memo
}

/// Does `name` match a glob (`*` and `?`)?
fn name_glob(pat: &str, name: &str) -> bool {
    crate::condition::matchers::glob_match(pat.as_bytes(), name.as_bytes(), false)
}

impl Engine {
    fn build(
        prog: Program,
        mut rules: Vec<CompiledRule>,
        registries: &[&'static FieldRegistry],
        cfg: &EngineConfig,
    ) -> Engine {
        for r in &mut rules {
            for s in &cfg.selection {
                match s {
                    Selection::EnableRule(g) if name_glob(g, &r.name) => r.enabled = true,
                    Selection::DisableRule(g) if name_glob(g, &r.name) => r.enabled = false,
                    Selection::EnableTag(t) if r.tags.contains(t) => r.enabled = true,
                    Selection::DisableTag(t) if r.tags.contains(t) => r.enabled = false,
                    _ => {}
                }
            }
            if r.priority < cfg.min_priority {
                r.enabled = false;
            }
        }
        let sources = registries
            .iter()
            .map(|reg| {
                let ids: Vec<u32> = rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.enabled && r.source == reg.source())
                    .map(|(i, _)| i as u32)
                    .collect();
                let untyped: Vec<u32> = ids
                    .iter()
                    .copied()
                    .filter(|i| rules[*i as usize].event_types.is_none())
                    .collect();
                let mut typed: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
                for &i in &ids {
                    if let Some(ts) = &rules[i as usize].event_types {
                        for t in ts {
                            typed.entry(t.as_str()).or_default().push(i);
                        }
                    }
                }
                let by_type = typed
                    .into_iter()
                    .map(|(t, mut v)| {
                        v.extend(&untyped);
                        v.sort_unstable();
                        v.dedup();
                        (Box::<str>::from(t), v.into_boxed_slice())
                    })
                    .collect();
                SourceIndex {
                    name: reg.source().to_owned(),
                    registry: reg,
                    by_type,
                    untyped: untyped.into_boxed_slice(),
                }
            })
            .collect();
        Engine {
            prog,
            rules,
            sources,
            rule_matching: cfg.rule_matching,
        }
    }

    /// The macros the rules' conditions refer to.
    pub(crate) fn program(&self) -> &Program {
        &self.prog
    }

    /// Every compiled rule, enabled or not, in load order.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    pub fn rule(&self, id: RuleId) -> &CompiledRule {
        &self.rules[id.0 as usize]
    }

    /// The compiled rule with this name.
    pub fn rule_by_name(&self, name: &str) -> Option<(RuleId, &CompiledRule)> {
        self.rules
            .iter()
            .position(|r| r.name == name)
            .map(|i| (RuleId(i as u32), &self.rules[i]))
    }

    /// The field registry of a source.
    pub fn registry(&self, source: &str) -> Option<&'static FieldRegistry> {
        self.sources
            .iter()
            .find(|s| s.name == source)
            .map(|s| s.registry)
    }

    /// Number of rules that are evaluated.
    pub fn enabled_rules(&self) -> usize {
        self.rules.iter().filter(|r| r.enabled).count()
    }

    /// Whether an enabled rule's condition (macros and lists expanded) or output names
    /// `field` (`proc.env`, with or without an argument), so that a capture can skip work no
    /// rule needs. Textual: the name inside a quoted string counts too, which only turns on
    /// work that was not needed.
    pub fn mentions_field(&self, field: &str) -> bool {
        self.rules
            .iter()
            .filter(|r| r.enabled)
            .any(|r| names_field(&r.expanded_condition, field) || names_field(&r.output, field))
    }

    /// The event types the enabled rules of `source` need; `None` when some enabled rule
    /// has no event-type constraint (every type is needed). For in-kernel filtering.
    pub fn event_types(&self, source: &str) -> Option<BTreeSet<String>> {
        let s = self.sources.iter().find(|s| s.name == source)?;
        if !s.untyped.is_empty() {
            return None;
        }
        Some(s.by_type.keys().map(|k| k.to_string()).collect())
    }

    /// Evaluate `ev` against the rules of its source and event type. Returns the number of
    /// matches (also in `m`). Allocates nothing when no rule matches (after warm-up).
    pub fn evaluate<E: Event + ?Sized>(&self, ev: &E, m: &mut Matches) -> usize {
        m.hits.clear();
        let src = ev.source();
        let Some(index) = self.sources.iter().find(|s| s.name == src) else {
            return 0;
        };
        let candidates: &[u32] = match ev.event_type() {
            Some(t) => index.by_type.get(t).unwrap_or(&index.untyped),
            None => &index.untyped,
        };
        m.scratch.next_event(self.prog.macros.len());
        for &i in candidates {
            let rule = &self.rules[i as usize];
            if self.prog.eval(&rule.node, ev, &mut m.scratch) {
                m.hits.push(RuleId(i));
                if self.rule_matching == RuleMatching::First {
                    break;
                }
            }
        }
        m.hits.len()
    }

    /// Render a matched rule's output: the text (`<NA>` for missing values) and the typed
    /// output fields (`null` for missing values).
    pub fn format_output<E: Event + ?Sized>(
        &self,
        id: RuleId,
        ev: &E,
    ) -> (String, serde_json::Map<String, Json>) {
        self.rule(id).format.render(ev)
    }

    /// Build Falco's JSON alert for a matched rule.
    pub fn alert<E: Event + ?Sized>(&self, id: RuleId, ev: &E, hostname: &str) -> Alert {
        let rule = self.rule(id);
        let (message, mut fields) = rule.format.render(ev);
        if let Some(extra) = &rule.extra_fields {
            for (k, v) in extra.render(ev).1 {
                fields.entry(k).or_insert(v);
            }
        }
        for (k, v) in &rule.statics {
            fields.entry(k.as_str()).or_insert_with(|| v.clone());
        }
        // Falco writes evt.time in output_fields as nanoseconds.
        fields.remove("evt.time");
        AlertParts {
            hostname,
            time: ev.timestamp().unwrap_or_else(Timestamp::now),
            priority: rule.priority,
            rule: &rule.name,
            source: &rule.source,
            message: &message,
            output_fields: fields,
            tags: rule.tags.clone(),
        }
        .into_alert()
    }
}

/// Whether `text` holds `field` as a whole field name (not `xproc.env` or `proc.envx`).
fn names_field(text: &str, field: &str) -> bool {
    let part_of_name = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    text.match_indices(field).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(part_of_name)
            && !text[i + field.len()..]
                .chars()
                .next()
                .is_some_and(part_of_name)
    })
}

#[cfg(test)]
mod mentions_tests {
    use super::names_field;

    #[test]
    fn whole_field_names_only() {
        assert!(names_field("proc.env icontains X", "proc.env"));
        assert!(names_field("(proc.env[HOME] = /root)", "proc.env"));
        assert!(names_field("env=%proc.env evt=%evt.type", "proc.env"));
        assert!(!names_field("proc.envx = 1", "proc.env"));
        assert!(!names_field("myproc.env = 1", "proc.env"));
        assert!(!names_field("proc.env.x = 1", "proc.env"));
        assert!(!names_field("proc.name = bash", "proc.env"));
    }
}
