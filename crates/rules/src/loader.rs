//! Rule file reader and collector: Falco's `rule_loader_reader` / `rule_loader_collector`
//! semantics. Files are read in order into one collection; later items define, append to or
//! override earlier ones. Nothing is compiled here.

use std::collections::{BTreeSet, HashMap};

use aerie_alert::Priority;

use crate::diag::{
    Context, ErrorCode, FileResult, ItemCounts, LoadError, LoadWarning, WarningCode,
};
use crate::yaml::{self, Kind, Node};

/// An exception entry: a single string or a (nested) list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Item(String),
    List(Vec<Entry>),
}

/// One `exceptions:` item of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionInfo {
    pub name: String,
    pub fields: Option<Entry>,
    pub comps: Option<Entry>,
    pub values: Vec<Entry>,
    pub ctx: Context,
}

#[derive(Debug, Clone)]
pub struct ListInfo {
    pub name: String,
    pub items: Vec<String>,
    pub index: usize,
    pub visibility: usize,
    pub ctx: Context,
}

#[derive(Debug, Clone)]
pub struct MacroInfo {
    pub name: String,
    pub condition: String,
    pub index: usize,
    pub visibility: usize,
    pub ctx: Context,
    pub cond_ctx: Context,
}

#[derive(Debug, Clone)]
pub struct RuleInfo {
    pub name: String,
    pub condition: String,
    pub output: String,
    pub desc: String,
    pub priority: Priority,
    pub source: String,
    pub enabled: bool,
    pub tags: BTreeSet<String>,
    pub exceptions: Vec<ExceptionInfo>,
    pub warn_evttypes: bool,
    pub skip_if_unknown_filter: bool,
    pub capture: bool,
    pub capture_duration: u64,
    pub index: usize,
    pub ctx: Context,
    pub cond_ctx: Context,
    pub output_ctx: Context,
    /// The source is not one the engine knows: the rule is kept but never compiled.
    pub unknown_source: bool,
}

/// `required_plugin_versions` entry: a plugin and its accepted alternatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRequirement {
    pub name: String,
    pub version: String,
    pub alternatives: Vec<(String, String)>,
}

impl PluginRequirement {
    /// Falco's `check_plugin_requirements` for one entry: the first alternative (the plugin
    /// itself first) that names a loaded plugin decides; its version must be compatible.
    pub fn check(&self, loaded: &[(&str, Version)]) -> Result<(), String> {
        let wanted = std::iter::once((self.name.as_str(), self.version.as_str())).chain(
            self.alternatives
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        for (name, version) in wanted.clone() {
            let Some((_, have)) = loaded.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            let Some(req) = Version::parse(version) else {
                return Err(format!(
                    "Invalid required version '{version}' for plugin '{name}'"
                ));
            };
            return if have.compatible_with(req) {
                Ok(())
            } else {
                Err(format!(
                    "Plugin '{name}' version '{have}' is not compatible with required plugin version '{version}'"
                ))
            };
        }
        let list: Vec<String> = wanted.map(|(n, v)| format!("{n} (>= {v})")).collect();
        Err(format!(
            "Plugin requirement not satisfied, must load one of: {}",
            list.join(", ")
        ))
    }
}

/// A `major.minor.patch` version, as Falco's `sinsp_version` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// `x.y.z`.
    pub fn parse(s: &str) -> Option<Version> {
        let mut it = s.trim().split('.').map(|p| p.parse::<u32>().ok());
        let v = Version(it.next()??, it.next()??, it.next()??);
        it.next().is_none().then_some(v)
    }

    /// A `required_engine_version`: `x.y.z`, or a bare number N, which Falco reads as 0.N.0.
    pub fn parse_engine(s: &str) -> Option<Version> {
        match s.trim().parse::<u32>() {
            Ok(n) => Some(Version(0, n, 0)),
            Err(_) => Version::parse(s),
        }
    }

    /// `sinsp_version::compatible_with`: same major, and not older than `req`.
    pub fn compatible_with(self, req: Version) -> bool {
        self.0 == req.0 && (self.1, self.2) >= (req.1, req.2)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The rules engine version this crate implements: Falco 0.44's.
pub const ENGINE_VERSION: Version = Version(0, 62, 0);

/// What aerie has built in, named as the Falco plugins it stands in for, so that rule
/// files' `required_plugin_versions` are checked as Falco checks them: container metadata
/// (Falco's container plugin), the `k8s_audit` source (k8saudit) and the `json.*` fields.
pub const BUILTIN_PLUGINS: &[(&str, Version)] = &[
    ("container", Version(0, 6, 0)),
    ("k8saudit", Version(0, 18, 0)),
    ("json", Version(0, 7, 0)),
];

/// Every item read so far, in definition order.
#[derive(Debug, Default, Clone)]
pub struct Collection {
    pub lists: Vec<ListInfo>,
    pub macros: Vec<MacroInfo>,
    pub rules: Vec<RuleInfo>,
    pub required_engine_version: Option<String>,
    pub required_plugin_versions: Vec<PluginRequirement>,
    pub files: Vec<FileResult>,
    next_index: usize,
    /// Positions in `lists`, `macros` and `rules` by name: loading stays linear in the
    /// number of items (items are only ever added or replaced in place).
    list_pos: HashMap<String, usize>,
    macro_pos: HashMap<String, usize>,
    rule_pos: HashMap<String, usize>,
}

/// An error that stops reading the current item (or, for YAML and document-level
/// problems, the file). Later items are still read, so one load reports every error.
struct Stop(ErrorCode, String, Context);

impl Stop {
    fn into_error(self) -> LoadError {
        let Stop(code, message, context) = self;
        LoadError {
            code,
            message,
            context,
        }
    }
}

type R<T> = Result<T, Stop>;

fn validate(msg: impl Into<String>, ctx: &Context) -> Stop {
    Stop(ErrorCode::YamlValidate, msg.into(), ctx.clone())
}

impl Collection {
    pub fn new() -> Self {
        Self::default()
    }

    /// Read one file's text; `known_sources` are the sources the engine can compile.
    /// Returns the index of the file's result in [`Collection::files`].
    pub fn read(&mut self, name: &str, text: &str, known_sources: &[&str]) -> usize {
        let mut file = FileResult {
            name: name.to_owned(),
            ..FileResult::default()
        };
        let mut reader = Reader {
            coll: self,
            file: name,
            warnings: Vec::new(),
            errors: Vec::new(),
            counts: ItemCounts::default(),
            known_sources,
        };
        // yaml-cpp skips a UTF-8 byte-order mark; so do we.
        let result = reader.read_text(text.strip_prefix('\u{feff}').unwrap_or(text));
        file.warnings = std::mem::take(&mut reader.warnings);
        file.errors = std::mem::take(&mut reader.errors);
        file.counts = reader.counts;
        if let Err(stop) = result {
            file.errors.push(stop.into_error());
        }
        file.successful = file.errors.is_empty();
        self.files.push(file);
        self.files.len() - 1
    }

    /// Record a file that could not be read at all.
    pub fn read_failed(&mut self, name: &str, message: String) -> usize {
        self.files.push(FileResult {
            name: name.to_owned(),
            successful: false,
            errors: vec![LoadError {
                code: ErrorCode::FileRead,
                message,
                context: Context {
                    file: name.to_owned(),
                    ..Context::default()
                },
            }],
            ..FileResult::default()
        });
        self.files.len() - 1
    }

    pub fn list(&self, name: &str) -> Option<&ListInfo> {
        self.list_pos.get(name).map(|&i| &self.lists[i])
    }
    pub fn macro_info(&self, name: &str) -> Option<&MacroInfo> {
        self.macro_pos.get(name).map(|&i| &self.macros[i])
    }
    pub fn rule(&self, name: &str) -> Option<&RuleInfo> {
        self.rule_pos.get(name).map(|&i| &self.rules[i])
    }
    fn list_mut(&mut self, name: &str) -> Option<&mut ListInfo> {
        self.list_pos.get(name).map(|&i| &mut self.lists[i])
    }
    fn macro_mut(&mut self, name: &str) -> Option<&mut MacroInfo> {
        self.macro_pos.get(name).map(|&i| &mut self.macros[i])
    }
    fn rule_mut(&mut self, name: &str) -> Option<&mut RuleInfo> {
        self.rule_pos.get(name).map(|&i| &mut self.rules[i])
    }

    /// Define a list, replacing an earlier one of the same name in its place.
    fn define_list(&mut self, info: ListInfo) {
        define(&mut self.lists, &mut self.list_pos, info);
    }

    /// Define a macro, replacing an earlier one of the same name in its place.
    fn define_macro(&mut self, info: MacroInfo) {
        define(&mut self.macros, &mut self.macro_pos, info);
    }

    /// Define a rule, replacing an earlier one of the same name in its place.
    fn define_rule(&mut self, info: RuleInfo) {
        define(&mut self.rules, &mut self.rule_pos, info);
    }

    fn bump(&mut self) -> usize {
        let i = self.next_index;
        self.next_index += 1;
        i
    }
}

/// A list, macro or rule: named, at a definition index.
trait Item {
    fn name(&self) -> &str;
    fn index_mut(&mut self) -> &mut usize;
}

macro_rules! item {
    ($($t:ty),*) => {$(
        impl Item for $t {
            fn name(&self) -> &str {
                &self.name
            }
            fn index_mut(&mut self) -> &mut usize {
                &mut self.index
            }
        }
    )*};
}
item!(ListInfo, MacroInfo, RuleInfo);

/// Falco's redefinition: a later item of the same name replaces the earlier one but keeps
/// its place (its definition index); a new name is appended and indexed.
fn define<T: Item>(items: &mut Vec<T>, pos: &mut HashMap<String, usize>, mut info: T) {
    match pos.get(info.name()) {
        Some(&i) => {
            *info.index_mut() = *items[i].index_mut();
            items[i] = info;
        }
        None => {
            pos.insert(info.name().to_owned(), items.len());
            items.push(info);
        }
    }
}

struct Reader<'c> {
    coll: &'c mut Collection,
    file: &'c str,
    warnings: Vec<LoadWarning>,
    errors: Vec<LoadError>,
    counts: ItemCounts,
    known_sources: &'c [&'c str],
}

fn is_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn is_bare_str(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|c| {
            !matches!(c, b'(' | b')' | b'"' | b'\'' | b'=' | b',') && !c.is_ascii_whitespace()
        })
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => {
            Some(true)
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => {
            Some(false)
        }
        _ => None,
    }
}

const LIST_KEYS: &[&str] = &["list", "items", "append", "override"];
const MACRO_KEYS: &[&str] = &["macro", "condition", "append", "override"];
const RULE_KEYS: &[&str] = &[
    "rule",
    "condition",
    "output",
    "desc",
    "priority",
    "source",
    "enabled",
    "capture",
    "capture_duration",
    "warn_evttypes",
    "skip-if-unknown-filter",
    "tags",
    "exceptions",
    "override",
    "append",
];
const RULE_APPENDABLE: &[&str] = &["condition", "output", "desc", "tags", "exceptions"];
const RULE_REPLACEABLE: &[&str] = &[
    "condition",
    "output",
    "desc",
    "priority",
    "capture",
    "capture_duration",
    "tags",
    "exceptions",
    "enabled",
    "warn_evttypes",
    "skip-if-unknown-filter",
];

/// Fields of a rule update (append or replace); `None` when the key is not updated.
#[derive(Default)]
struct RuleUpdate {
    condition: Option<String>,
    output: Option<String>,
    desc: Option<String>,
    tags: Option<BTreeSet<String>>,
    exceptions: Option<Vec<ExceptionInfo>>,
    priority: Option<Priority>,
    capture: Option<bool>,
    capture_duration: Option<u64>,
    enabled: Option<bool>,
    warn_evttypes: Option<bool>,
    skip_if_unknown_filter: Option<bool>,
}

impl RuleUpdate {
    fn has_any_value(&self) -> bool {
        self.condition.is_some()
            || self.output.is_some()
            || self.desc.is_some()
            || self.tags.is_some()
            || self.exceptions.is_some()
            || self.priority.is_some()
            || self.capture.is_some()
            || self.capture_duration.is_some()
            || self.enabled.is_some()
            || self.warn_evttypes.is_some()
            || self.skip_if_unknown_filter.is_some()
    }
}

impl Reader<'_> {
    fn ctx(&self, node: &Node, item_type: &str, item: &str) -> Context {
        Context {
            file: self.file.to_owned(),
            line: node.mark.line,
            column: node.mark.column,
            item_type: item_type.to_owned(),
            item: item.to_owned(),
        }
    }

    fn warn(&mut self, code: WarningCode, message: impl Into<String>, ctx: &Context) {
        self.warnings.push(LoadWarning {
            code,
            message: message.into(),
            context: ctx.clone(),
        });
    }

    fn read_text(&mut self, text: &str) -> R<()> {
        let file_ctx = Context {
            file: self.file.to_owned(),
            line: 1,
            column: 1,
            ..Context::default()
        };
        let docs = yaml::parse_documents(text).map_err(|e| {
            Stop(
                ErrorCode::YamlParse,
                e.message,
                Context {
                    line: e.mark.line,
                    column: e.mark.column,
                    ..file_ctx.clone()
                },
            )
        })?;
        for doc in &docs {
            match &doc.kind {
                Kind::Null => continue,
                Kind::Seq(items) => {
                    for item in items {
                        if !item.is_null()
                            && let Err(stop) = self.read_item(item)
                        {
                            self.errors.push(stop.into_error());
                        }
                    }
                }
                Kind::Map(_) => {
                    return Err(validate(
                        "Rules content is not yaml array of objects",
                        &file_ctx,
                    ));
                }
                Kind::Scalar { .. } => {
                    return Err(validate("Rules content is not yaml", &file_ctx));
                }
            }
        }
        Ok(())
    }

    fn warn_unknown_keys(&mut self, item: &Node, expected: &[&str], ctx: &Context) {
        let unknown: Vec<String> = item
            .keys()
            .filter_map(|k| k.as_str())
            .filter(|k| !expected.contains(k))
            .map(str::to_owned)
            .collect();
        for k in unknown {
            self.warn(
                WarningCode::UnknownKey,
                format!("Unknown key '{k}'. The key will be ignored."),
                ctx,
            );
        }
    }

    /// A required, non-empty scalar.
    fn string(&self, item: &Node, key: &str, ctx: &Context) -> R<String> {
        match self.opt_string(item, key, ctx, false)? {
            Some(s) => Ok(s),
            None => Err(validate(
                format!("Item has no mapping for key '{key}'"),
                ctx,
            )),
        }
    }

    fn opt_string(
        &self,
        item: &Node,
        key: &str,
        ctx: &Context,
        can_be_empty: bool,
    ) -> R<Option<String>> {
        let Some(v) = item.get(key) else {
            return Ok(None);
        };
        let vctx = self.value_ctx(v, ctx);
        match &v.kind {
            Kind::Null if can_be_empty => Ok(None),
            Kind::Null => Err(validate(format!("Mapping for key '{key}' is empty"), ctx)),
            Kind::Scalar { text, .. } => {
                if text.is_empty() && !can_be_empty {
                    Err(validate("Value must be non-empty", &vctx))
                } else if text.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some(text.clone()))
                }
            }
            _ => Err(validate("Value is not a scalar value", &vctx)),
        }
    }

    fn value_ctx(&self, v: &Node, parent: &Context) -> Context {
        Context {
            line: v.mark.line,
            column: v.mark.column,
            ..parent.clone()
        }
    }

    fn opt_bool(&self, item: &Node, key: &str, ctx: &Context) -> R<Option<bool>> {
        match self.opt_string(item, key, ctx, false)? {
            None => Ok(None),
            Some(s) => match parse_bool(&s) {
                Some(b) => Ok(Some(b)),
                None => Err(validate(
                    format!("Can't decode YAML scalar value for key '{key}': {s:?} is not a bool"),
                    &self.value_ctx(item.get(key).unwrap_or(item), ctx),
                )),
            },
        }
    }

    fn opt_u64(&self, item: &Node, key: &str, ctx: &Context) -> R<Option<u64>> {
        match self.opt_string(item, key, ctx, false)? {
            None => Ok(None),
            Some(s) => match s.trim().parse::<u64>() {
                Ok(n) => Ok(Some(n)),
                Err(_) => Err(validate(
                    format!(
                        "Can't decode YAML scalar value for key '{key}': {s:?} is not a number"
                    ),
                    &self.value_ctx(item.get(key).unwrap_or(item), ctx),
                )),
            },
        }
    }

    fn seq_of_strings(&self, item: &Node, key: &str, ctx: &Context) -> R<Option<Vec<String>>> {
        let Some(v) = item.get(key) else {
            return Ok(None);
        };
        let vctx = self.value_ctx(v, ctx);
        let Kind::Seq(items) = &v.kind else {
            return Err(validate("Value is not a sequence", &vctx));
        };
        let mut out = Vec::with_capacity(items.len());
        for i in items {
            match &i.kind {
                Kind::Scalar { text, .. } => out.push(text.clone()),
                _ => {
                    return Err(validate(
                        "sequence value is not scalar",
                        &self.value_ctx(i, ctx),
                    ));
                }
            }
        }
        Ok(Some(out))
    }

    fn priority(&self, item: &Node, ctx: &Context) -> R<Priority> {
        let p = self.string(item, "priority", ctx)?;
        p.parse().map_err(|_| {
            validate(
                format!("Invalid priority {p:?}"),
                &self.value_ctx(item.get("priority").unwrap_or(item), ctx),
            )
        })
    }

    /// `override:` → (append keys, replace keys).
    fn overrides(
        &self,
        item: &Node,
        appendable: &[&str],
        replaceable: &[&str],
        ctx: &Context,
    ) -> R<(Vec<String>, Vec<String>)> {
        let mut app = Vec::new();
        let mut rep = Vec::new();
        let Some(ov) = item.get("override") else {
            return Ok((app, rep));
        };
        let Kind::Map(entries) = &ov.kind else {
            return Err(validate(
                "Value of 'override' must be a mapping",
                &self.value_ctx(ov, ctx),
            ));
        };
        for (k, v) in entries {
            let kctx = self.value_ctx(k, ctx);
            let Some(key) = k.as_str() else {
                return Err(validate("override keys must be strings", &kctx));
            };
            let op = v.as_str().unwrap_or("");
            let can_append = appendable.contains(&key);
            let can_replace = replaceable.contains(&key);
            match op {
                "append" => {
                    if !can_append {
                        return Err(validate(
                            format!("Key '{key}' cannot be appended to, use 'replace' instead"),
                            &kctx,
                        ));
                    }
                    app.push(key.to_owned());
                }
                "replace" => {
                    if !can_replace {
                        return Err(validate(format!("Key '{key}' cannot be replaced"), &kctx));
                    }
                    rep.push(key.to_owned());
                }
                other => {
                    let mut allowed = String::new();
                    if can_append {
                        allowed += "append ";
                    }
                    if can_replace {
                        allowed += "replace ";
                    }
                    return Err(validate(
                        format!(
                            "Invalid override operation for key '{key}': '{other}'. Allowed values are: {allowed}"
                        ),
                        &self.value_ctx(v, ctx),
                    ));
                }
            }
        }
        Ok((app, rep))
    }

    fn read_item(&mut self, item: &Node) -> R<()> {
        let base = self.ctx(item, "", "");
        if !matches!(item.kind, Kind::Map(_)) {
            return Err(validate(
                "Unexpected element type. Each element should be a yaml associative array.",
                &base,
            ));
        }
        if let Some(v) = item.get("required_engine_version") {
            let ctx = self.ctx(item, "required_engine_version", "");
            match v.as_str() {
                Some(s) if !s.trim().is_empty() => {
                    let s = s.trim();
                    let Some(required) = Version::parse_engine(s) else {
                        return Err(validate(
                            format!(
                                "Unable to parse engine version '{s}' as a semver string. Expected \"x.y.z\" semver format."
                            ),
                            &ctx,
                        ));
                    };
                    if required > ENGINE_VERSION {
                        return Err(Stop(
                            ErrorCode::Validate,
                            format!(
                                "Rules require engine version {s}, but engine version is {ENGINE_VERSION}"
                            ),
                            self.value_ctx(v, &ctx),
                        ));
                    }
                    self.coll.required_engine_version = Some(s.to_owned());
                }
                _ => {
                    return Err(validate(
                        "Value of required_engine_version must be a non-empty scalar",
                        &ctx,
                    ));
                }
            }
            self.warn_unknown_keys(item, &["required_engine_version"], &ctx);
        } else if let Some(v) = item.get("required_plugin_versions") {
            let ctx = self.ctx(v, "required_plugin_versions", "");
            let Kind::Seq(plugins) = &v.kind else {
                return Err(validate(
                    "Value of required_plugin_versions must be a sequence",
                    &ctx,
                ));
            };
            for p in plugins {
                let pctx = self.ctx(p, "required_plugin_versions entry", "");
                if !matches!(p.kind, Kind::Map(_)) {
                    return Err(validate("Plugin version must be a mapping", &pctx));
                }
                let name = self.string(p, "name", &pctx)?;
                let pctx = self.ctx(p, "required_plugin_versions entry", &name);
                let version = self.string(p, "version", &pctx)?;
                let mut alternatives = Vec::new();
                if let Some(alts) = p.get("alternatives") {
                    let Kind::Seq(alts) = &alts.kind else {
                        return Err(validate(
                            "Value of plugin version alternatives must be a sequence",
                            &pctx,
                        ));
                    };
                    for a in alts {
                        let actx = self.ctx(a, "required_plugin_versions alternative", "");
                        if !matches!(a.kind, Kind::Map(_)) {
                            return Err(validate(
                                "Plugin version alternative must be a mapping",
                                &actx,
                            ));
                        }
                        alternatives.push((
                            self.string(a, "name", &actx)?,
                            self.string(a, "version", &actx)?,
                        ));
                    }
                }
                let req = PluginRequirement {
                    name,
                    version,
                    alternatives,
                };
                if let Err(message) = req.check(BUILTIN_PLUGINS) {
                    return Err(Stop(ErrorCode::Validate, message, pctx));
                }
                self.coll.required_plugin_versions.push(req);
            }
            let ctx = self.ctx(item, "required_plugin_versions", "");
            self.warn_unknown_keys(item, &["required_plugin_versions"], &ctx);
        } else if item.get("list").is_some() {
            self.read_list(item)?;
        } else if item.get("macro").is_some() {
            self.read_macro(item)?;
        } else if item.get("rule").is_some() {
            self.read_rule(item)?;
        } else {
            self.warn(WarningCode::UnknownItem, "Unknown top level item", &base);
        }
        Ok(())
    }

    fn legacy_append(&mut self, item: &Node, ctx: &Context) -> R<bool> {
        let append = self.opt_bool(item, "append", ctx)?.unwrap_or(false);
        if append {
            self.warn(
                WarningCode::DeprecatedItem,
                "The 'append' key is deprecated. Use 'override' instead.",
                ctx,
            );
        }
        Ok(append)
    }

    fn read_list(&mut self, item: &Node) -> R<()> {
        let tmp = self.ctx(item, "list", "");
        let name = self.string(item, "list", &tmp)?;
        let ctx = self.ctx(item, "list", &name);
        if !is_bare_str(&name) {
            self.warn(
                WarningCode::InvalidListName,
                "List has an invalid name. List names should match a regular expression: ([^()\"'[:space:]=,]+)",
                &ctx,
            );
        }
        let items = match self.seq_of_strings(item, "items", &ctx)? {
            Some(i) => i,
            None => return Err(validate("Item has no mapping for key 'items'", &ctx)),
        };
        let mut append = self.legacy_append(item, &ctx)?;
        let (app, rep) = self.overrides(item, &["items"], &["items"], &ctx)?;
        if append && !(app.is_empty() && rep.is_empty()) {
            return Err(validate(
                "Keys 'override' and 'append: true' cannot be used together. Add an 'append' entry (e.g. 'condition: append') under 'override' instead.",
                &ctx,
            ));
        }
        append |= app.iter().any(|k| k == "items");
        let id = self.coll.bump();
        if append {
            let Some(prev) = self.coll.list_mut(&name) else {
                return Err(Stop(
                    ErrorCode::Validate,
                    "List has 'append' key or an append override but no list by that name already exists".into(),
                    ctx,
                ));
            };
            prev.items.extend(items);
            prev.visibility = id;
        } else {
            self.counts.lists += 1;
            let info = ListInfo {
                name: name.clone(),
                items,
                index: id,
                visibility: id,
                ctx: ctx.clone(),
            };
            self.coll.define_list(info);
        }
        self.warn_unknown_keys(item, LIST_KEYS, &ctx);
        Ok(())
    }

    fn read_macro(&mut self, item: &Node) -> R<()> {
        let tmp = self.ctx(item, "macro", "");
        let name = self.string(item, "macro", &tmp)?;
        let ctx = self.ctx(item, "macro", &name);
        if !is_identifier(&name) {
            self.warn(
                WarningCode::InvalidMacroName,
                "Macro has an invalid name. Macro names should match a regular expression: ([a-zA-Z]+[a-zA-Z0-9_]*)",
                &ctx,
            );
        }
        let condition = self.string(item, "condition", &ctx)?;
        let cond_ctx = self.value_ctx(item.get("condition").unwrap_or(item), &ctx);
        let mut append = self.legacy_append(item, &ctx)?;
        let (app, rep) = self.overrides(item, &["condition"], &["condition"], &ctx)?;
        if append && !(app.is_empty() && rep.is_empty()) {
            return Err(validate(
                "Keys 'override' and 'append: true' cannot be used together. Add an 'append' entry (e.g. 'condition: append') under 'override' instead.",
                &ctx,
            ));
        }
        append |= app.iter().any(|k| k == "condition");
        let id = self.coll.bump();
        if append {
            let Some(prev) = self.coll.macro_mut(&name) else {
                return Err(Stop(
                    ErrorCode::Validate,
                    "Macro has 'append' key or an append override but no macro by that name already exists".into(),
                    ctx,
                ));
            };
            prev.condition.push(' ');
            prev.condition.push_str(&condition);
            prev.visibility = id;
        } else {
            self.counts.macros += 1;
            let info = MacroInfo {
                name: name.clone(),
                condition,
                index: id,
                visibility: id,
                ctx: ctx.clone(),
                cond_ctx,
            };
            self.coll.define_macro(info);
        }
        self.warn_unknown_keys(item, MACRO_KEYS, &ctx);
        Ok(())
    }

    fn read_rule(&mut self, item: &Node) -> R<()> {
        let tmp = self.ctx(item, "rule", "");
        let name = self.string(item, "rule", &tmp)?;
        let ctx = self.ctx(item, "rule", &name);
        let source = self
            .opt_string(item, "source", &ctx, true)?
            .unwrap_or_default();
        let has_append_flag = self.legacy_append(item, &ctx)?;
        let (app, rep) = self.overrides(item, RULE_APPENDABLE, RULE_REPLACEABLE, &ctx)?;
        if has_append_flag && !(app.is_empty() && rep.is_empty()) {
            return Err(validate(
                "Keys 'override' and 'append: true' cannot be used together. Add an 'append' entry (e.g. 'condition: append') under 'override' instead.",
                &ctx,
            ));
        }
        if !app.is_empty() || !rep.is_empty() {
            // Every appendable/replaceable key present must be named under `override`.
            let mut expected: Vec<&str> = RULE_APPENDABLE
                .iter()
                .chain(RULE_REPLACEABLE)
                .copied()
                .filter(|k| item.get(k).is_some())
                .collect();
            expected.sort_unstable();
            expected.dedup();
            for (keys, kind) in [(&app, "append"), (&rep, "replace")] {
                if keys.is_empty() {
                    continue;
                }
                for k in keys {
                    if !expected.contains(&k.as_str()) {
                        return Err(validate(
                            format!(
                                "An {kind} override for '{k}' was specified but '{k}' is not defined"
                            ),
                            &ctx,
                        ));
                    }
                }
                let update = self.rule_update(item, keys, kind == "append", &ctx)?;
                self.check_source(&name, &source, &ctx)?;
                if kind == "append" {
                    self.append_rule(&name, update, &ctx)?;
                } else {
                    self.replace_rule(&name, update, &ctx)?;
                }
                expected.retain(|e| !keys.iter().any(|k| k == e));
            }
            if let Some(k) = expected.first() {
                return Err(validate(
                    format!(
                        "Unexpected key '{k}': no corresponding entry under 'override' is defined."
                    ),
                    &ctx,
                ));
            }
        } else if has_append_flag {
            let mut update = RuleUpdate::default();
            if item.get("condition").is_some() {
                update.condition = Some(self.string(item, "condition", &ctx)?);
            }
            if item.get("exceptions").is_some() {
                update.exceptions = Some(self.exceptions(item, &ctx, true)?);
            }
            self.check_source(&name, &source, &ctx)?;
            self.append_rule(&name, update, &ctx)?;
        } else if item.get("condition").is_none()
            && item.get("output").is_none()
            && item.get("desc").is_none()
            && item.get("priority").is_none()
        {
            // Legacy form: only `enabled`, to switch an earlier rule on or off.
            let Some(enabled) = self.opt_bool(item, "enabled", &ctx)? else {
                return Err(validate("Item has no mapping for key 'enabled'", &ctx));
            };
            self.warn(
                WarningCode::DeprecatedItem,
                "The standalone 'enabled' key usage is deprecated. The correct approach requires also a 'replace' entry under the 'override' key (i.e. 'enabled: replace').",
                &ctx,
            );
            let Some(prev) = self.coll.rule_mut(&name) else {
                return Err(validate(
                    "Rule has 'enabled' key but no rule by that name already exists",
                    &ctx,
                ));
            };
            prev.enabled = enabled;
        } else {
            let condition = self.string(item, "condition", &ctx)?;
            let cond_ctx = self.value_ctx(item.get("condition").unwrap_or(item), &ctx);
            let output = self.string(item, "output", &ctx)?.trim().to_owned();
            let output_ctx = self.value_ctx(item.get("output").unwrap_or(item), &ctx);
            let desc = self.string(item, "desc", &ctx)?;
            let priority = self.priority(item, &ctx)?;
            let source = if source.is_empty() {
                aerie_alert::DEFAULT_SOURCE.to_owned()
            } else {
                source
            };
            let enabled = self.opt_bool(item, "enabled", &ctx)?.unwrap_or(true);
            let capture = self.opt_bool(item, "capture", &ctx)?.unwrap_or(false);
            let capture_duration = self.opt_u64(item, "capture_duration", &ctx)?.unwrap_or(0);
            let warn_evttypes = self.opt_bool(item, "warn_evttypes", &ctx)?.unwrap_or(true);
            let skip_if_unknown_filter = self
                .opt_bool(item, "skip-if-unknown-filter", &ctx)?
                .unwrap_or(false);
            let tags: BTreeSet<String> = self
                .seq_of_strings(item, "tags", &ctx)?
                .unwrap_or_default()
                .into_iter()
                .collect();
            let exceptions = self.exceptions(item, &ctx, false)?;
            if let Some(prev) = self.coll.rule(&name)
                && prev.source != source
            {
                return Err(validate(
                    "Rule has been re-defined with a different source",
                    &ctx,
                ));
            }
            let unknown_source = !self.known_sources.contains(&source.as_str());
            if unknown_source {
                self.warn(
                    WarningCode::UnknownSource,
                    format!("Unknown source {source}, skipping"),
                    &ctx,
                );
            }
            for ex in &exceptions {
                if ex.fields.is_none() {
                    return Err(validate(
                        "Rule exception item must have fields property with a list of fields",
                        &ex.ctx,
                    ));
                }
            }
            let mut exceptions = exceptions;
            for ex in &mut exceptions {
                validate_exception(ex)?;
            }
            self.counts.rules += 1;
            if !enabled {
                self.counts.disabled_rules += 1;
            }
            let id = self.coll.bump();
            let info = RuleInfo {
                name: name.clone(),
                condition,
                output,
                desc,
                priority,
                source,
                enabled,
                tags,
                exceptions,
                warn_evttypes,
                skip_if_unknown_filter,
                capture,
                capture_duration,
                index: id,
                ctx: ctx.clone(),
                cond_ctx,
                output_ctx,
                unknown_source,
            };
            self.coll.define_rule(info);
        }
        self.warn_unknown_keys(item, RULE_KEYS, &ctx);
        Ok(())
    }

    fn check_source(&self, name: &str, source: &str, ctx: &Context) -> R<()> {
        if let Some(prev) = self.coll.rule(name)
            && !source.is_empty()
            && prev.source != source
        {
            return Err(validate(
                "Rule has been re-defined with a different source",
                ctx,
            ));
        }
        Ok(())
    }

    fn rule_update(
        &mut self,
        item: &Node,
        keys: &[String],
        append: bool,
        ctx: &Context,
    ) -> R<RuleUpdate> {
        let mut u = RuleUpdate::default();
        for k in keys {
            match k.as_str() {
                "condition" => u.condition = Some(self.string(item, "condition", ctx)?),
                "output" => u.output = Some(self.string(item, "output", ctx)?),
                "desc" => u.desc = Some(self.string(item, "desc", ctx)?),
                "tags" => {
                    u.tags = Some(
                        self.seq_of_strings(item, "tags", ctx)?
                            .unwrap_or_default()
                            .into_iter()
                            .collect(),
                    )
                }
                "exceptions" => u.exceptions = Some(self.exceptions(item, ctx, append)?),
                "priority" => u.priority = Some(self.priority(item, ctx)?),
                "capture" => u.capture = self.opt_bool(item, "capture", ctx)?,
                "capture_duration" => {
                    u.capture_duration = self.opt_u64(item, "capture_duration", ctx)?
                }
                "enabled" => u.enabled = self.opt_bool(item, "enabled", ctx)?,
                "warn_evttypes" => u.warn_evttypes = self.opt_bool(item, "warn_evttypes", ctx)?,
                "skip-if-unknown-filter" => {
                    u.skip_if_unknown_filter = self.opt_bool(item, "skip-if-unknown-filter", ctx)?
                }
                _ => {}
            }
        }
        Ok(u)
    }

    fn append_rule(&mut self, name: &str, u: RuleUpdate, ctx: &Context) -> R<()> {
        let id = self.coll.bump();
        let Some(prev) = self.coll.rule_mut(name) else {
            return Err(Stop(
                ErrorCode::Validate,
                "Rule has 'append' key or an append override but no rule by that name already exists".into(),
                ctx.clone(),
            ));
        };
        if !u.has_any_value() {
            return Err(Stop(
                ErrorCode::Validate,
                "Appended rule must have exceptions or condition property".into(),
                ctx.clone(),
            ));
        }
        if let Some(c) = u.condition.filter(|c| !c.is_empty()) {
            prev.condition.push(' ');
            prev.condition.push_str(&c);
        }
        if let Some(o) = u.output.filter(|o| !o.is_empty()) {
            prev.output.push(' ');
            prev.output.push_str(&o);
        }
        if let Some(d) = u.desc.filter(|d| !d.is_empty()) {
            prev.desc.push(' ');
            prev.desc.push_str(&d);
        }
        if let Some(t) = u.tags {
            prev.tags.extend(t);
        }
        if let Some(exs) = u.exceptions {
            for mut ex in exs {
                match prev.exceptions.iter_mut().find(|e| e.name == ex.name) {
                    None => {
                        if ex.fields.is_none() {
                            return Err(Stop(
                                ErrorCode::Validate,
                                "Rule exception must have fields property with a list of fields"
                                    .into(),
                                ex.ctx,
                            ));
                        }
                        if ex.values.is_empty() {
                            return Err(Stop(
                                ErrorCode::Validate,
                                "Rule exception must have values property with a list of values"
                                    .into(),
                                ex.ctx,
                            ));
                        }
                        validate_exception(&mut ex)?;
                        prev.exceptions.push(ex);
                    }
                    Some(pe) => {
                        if ex.fields.is_some() {
                            return Err(Stop(
                                ErrorCode::Validate,
                                "Can not append exception fields to existing exception, only values".into(),
                                ex.ctx,
                            ));
                        }
                        if ex.comps.is_some() {
                            return Err(Stop(
                                ErrorCode::Validate,
                                "Can not append exception comps to existing exception, only values"
                                    .into(),
                                ex.ctx,
                            ));
                        }
                        pe.values.extend(ex.values);
                    }
                }
            }
        }
        let _ = id;
        Ok(())
    }

    fn replace_rule(&mut self, name: &str, u: RuleUpdate, ctx: &Context) -> R<()> {
        let _ = self.coll.bump();
        let Some(prev) = self.coll.rule_mut(name) else {
            return Err(Stop(
                ErrorCode::Validate,
                "An replace to a rule was requested but no rule by that name already exists".into(),
                ctx.clone(),
            ));
        };
        if !u.has_any_value() {
            return Err(Stop(
                ErrorCode::Validate,
                "The rule must have at least one field that can be replaced".into(),
                ctx.clone(),
            ));
        }
        if let Some(v) = u.condition {
            prev.condition = v;
        }
        if let Some(v) = u.output {
            prev.output = v;
        }
        if let Some(v) = u.desc {
            prev.desc = v;
        }
        if let Some(v) = u.tags {
            prev.tags = v;
        }
        if let Some(mut v) = u.exceptions {
            for ex in &mut v {
                validate_exception(ex)?;
            }
            prev.exceptions = v;
        }
        if let Some(v) = u.priority {
            prev.priority = v;
        }
        if let Some(v) = u.capture {
            prev.capture = v;
        }
        if let Some(v) = u.capture_duration {
            prev.capture_duration = v;
        }
        if let Some(v) = u.enabled {
            prev.enabled = v;
        }
        if let Some(v) = u.warn_evttypes {
            prev.warn_evttypes = v;
        }
        if let Some(v) = u.skip_if_unknown_filter {
            prev.skip_if_unknown_filter = v;
        }
        Ok(())
    }

    fn entry(&self, v: &Node, ctx: &Context) -> R<Entry> {
        match &v.kind {
            Kind::Scalar { text, .. } => {
                if text.is_empty() {
                    Err(validate("Value must be non-empty", &self.value_ctx(v, ctx)))
                } else {
                    Ok(Entry::Item(text.clone()))
                }
            }
            Kind::Seq(items) => Ok(Entry::List(
                items
                    .iter()
                    .map(|i| self.entry(i, ctx))
                    .collect::<R<Vec<_>>>()?,
            )),
            Kind::Null => Err(validate("Value must be non-empty", &self.value_ctx(v, ctx))),
            Kind::Map(_) => Err(validate(
                "Exception value must be a string or a list",
                &self.value_ctx(v, ctx),
            )),
        }
    }

    fn exceptions(&mut self, item: &Node, parent: &Context, append: bool) -> R<Vec<ExceptionInfo>> {
        let mut out: Vec<ExceptionInfo> = Vec::new();
        let Some(exs) = item.get("exceptions") else {
            return Ok(out);
        };
        if exs.is_null() {
            return Ok(out);
        }
        let exes_ctx = self.value_ctx(exs, parent);
        let Kind::Seq(list) = &exs.kind else {
            return Err(validate("Rule exceptions must be a sequence", &exes_ctx));
        };
        for ex in list {
            let tmp = self.value_ctx(ex, parent);
            if !matches!(ex.kind, Kind::Map(_)) {
                return Err(validate("Rule exception must be a mapping", &tmp));
            }
            let name = self.string(ex, "name", &tmp)?;
            let ex_ctx = Context {
                item_type: "exception".into(),
                item: name.clone(),
                ..tmp
            };
            if out.iter().any(|e| e.name == name) {
                self.warn(
                    WarningCode::ExceptionNameNotUnique,
                    format!("Multiple definitions of exception '{name}' in the same rule"),
                    &ex_ctx,
                );
            }
            let fields = match ex.get("fields") {
                None if append => None,
                None => {
                    return Err(validate("Item has no mapping for key 'fields'", &ex_ctx));
                }
                Some(f) => Some(self.entry(f, &ex_ctx)?),
            };
            let comps = match ex.get("comps") {
                None => None,
                Some(c) => Some(self.entry(c, &ex_ctx)?),
            };
            let mut values = Vec::new();
            match ex.get("values") {
                Some(vals) => {
                    let vctx = self.value_ctx(vals, &ex_ctx);
                    match &vals.kind {
                        Kind::Seq(items) => {
                            for v in items {
                                values.push(self.entry(v, &vctx)?);
                            }
                        }
                        Kind::Null => {}
                        _ => {
                            return Err(validate(
                                "Rule exception values must be a sequence",
                                &vctx,
                            ));
                        }
                    }
                }
                None if append => self.warn(
                    WarningCode::AppendNoValues,
                    "Overriding/appending exception with no values",
                    &ex_ctx,
                ),
                None => {}
            }
            out.push(ExceptionInfo {
                name,
                fields,
                comps,
                values,
                ctx: ex_ctx,
            });
        }
        Ok(out)
    }
}

/// Fill default comps and check shapes, as Falco's collector does. Field names are
/// checked against the source at compile time.
fn validate_exception(ex: &mut ExceptionInfo) -> R<()> {
    let ctx = ex.ctx.clone();
    let err = |m: &str| Stop(ErrorCode::Validate, m.to_owned(), ctx.clone());
    match &ex.fields {
        Some(Entry::List(fields)) => {
            let comps = match ex.comps.take() {
                None => Entry::List(fields.iter().map(|_| Entry::Item("=".into())).collect()),
                Some(c) => c,
            };
            let Entry::List(cs) = &comps else {
                return Err(err("Fields and comps lists must have equal length"));
            };
            if cs.len() != fields.len() {
                return Err(err("Fields and comps lists must have equal length"));
            }
            let mut norm = Vec::with_capacity(cs.len());
            for c in cs {
                let Entry::Item(c) = c else {
                    return Err(err("Exception comps must be strings"));
                };
                let c = c.trim();
                if !is_operator(c) && !is_operator_with_modifier(c) {
                    return Err(err(&format!(
                        "'{c}' is not a supported comparison operator"
                    )));
                }
                norm.push(Entry::Item(c.to_owned()));
            }
            for f in fields {
                if !matches!(f, Entry::Item(_)) {
                    return Err(err("Exception fields must be strings"));
                }
            }
            ex.comps = Some(Entry::List(norm));
        }
        Some(Entry::Item(_)) => {
            let comp = match ex.comps.take() {
                None => "in".to_owned(),
                Some(Entry::Item(c)) => c.trim().to_owned(),
                Some(Entry::List(_)) => return Err(err("Fields and comps must both be strings")),
            };
            if !matches!(comp.as_str(), "in" | "pmatch" | "intersects")
                && !is_operator_with_modifier(&comp)
            {
                return Err(err(
                    "When fields is a single value, comps must be one of (in, pmatch, intersects) or a modifier operator (e.g. startswith oneof)",
                ));
            }
            ex.comps = Some(Entry::Item(comp));
        }
        None => {}
    }
    Ok(())
}

/// A string operator and a list modifier, one space apart: `startswith oneof` (Falco 0.44).
pub(crate) fn is_operator_with_modifier(s: &str) -> bool {
    let Some((op, m)) = s.split_once(' ') else {
        return false;
    };
    matches!(m, "oneof" | "anyof" | "allof")
        && matches!(
            op,
            "=" | "=="
                | "!="
                | "contains"
                | "icontains"
                | "bcontains"
                | "startswith"
                | "bstartswith"
                | "endswith"
                | "glob"
                | "iglob"
                | "regex"
        )
}

fn is_operator(s: &str) -> bool {
    matches!(
        s,
        "=" | "=="
            | "!="
            | "<"
            | "<="
            | ">"
            | ">="
            | "contains"
            | "icontains"
            | "bcontains"
            | "startswith"
            | "bstartswith"
            | "endswith"
            | "glob"
            | "iglob"
            | "regex"
            | "in"
            | "intersects"
            | "pmatch"
            | "exists"
    )
}
