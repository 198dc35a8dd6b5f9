//! From syntax tree to compiled checks: resolve fields against a source's registry, expand
//! lists, link macros (compiled once per source and shared), and type the literals.
//!
//! Every error carries the byte offset of the offending token (field, value, list name or
//! macro name) in the text it was written in: the rule's condition, or the innermost macro.

use std::collections::{BTreeSet, HashMap};

use super::ast::{Expr, Lit, Modifier, Op, Operand, Rhs, Transformer};
use super::matchers::{PathSet, TextSet};
use super::program::{self, CField, Check, Kind, Node, OwnedArg};
use crate::evttypes;
use crate::fields::{ArgKind, FieldRegistry, FieldType};
use crate::suggest;
use crate::value::IpNet;

/// ` Did you mean 'X'?` (with the leading period) when there is a suggestion.
fn hint(h: &Option<String>) -> String {
    h.as_ref()
        .map(|s| format!(". Did you mean '{s}'?"))
        .unwrap_or_default()
}

/// Why a condition could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// An unknown field (and a suggestion): a warning instead of an error under
    /// `skip-if-unknown-filter`.
    #[error("filter_check called with nonexistent field {0}{h}", h = hint(.1))]
    UnknownField(String, Option<String>),
    #[error("Undefined macro '{0}' used in filter{h}", h = if .1.is_some() { hint(.1) } else { ".".into() })]
    UndefinedMacro(String, Option<String>),
    #[error("{0}")]
    Invalid(String),
}

impl CompileError {
    /// What `skip-if-unknown-filter: true` turns into a warning (Falco's
    /// `err_is_unknown_type_or_field`): an unknown field or an unknown event type.
    pub fn is_unknown_type_or_field(&self) -> bool {
        match self {
            CompileError::UnknownField(..) => true,
            CompileError::Invalid(m) => m.starts_with("unknown event type "),
            CompileError::UndefinedMacro(..) => false,
        }
    }
}

/// A compile error and where its token is: a byte offset in the rule's condition, or in the
/// condition of the macro `in_macro` when the token was written in a macro.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub error: CompileError,
    pub offset: usize,
    pub in_macro: Option<String>,
}

impl std::fmt::Display for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

fn at(error: CompileError, offset: usize) -> Located {
    Located {
        error,
        offset,
        in_macro: None,
    }
}

fn invalid(msg: impl Into<String>, offset: usize) -> Located {
    at(CompileError::Invalid(msg.into()), offset)
}

/// Deepest expansion (macros inside macros inside parentheses) accepted.
pub const MAX_EXPANDED_DEPTH: usize = 400;

/// The lists and macros a compilation can see.
pub struct Scope<'a> {
    /// Every list, fully expanded (lists inside lists resolved).
    pub lists: &'a HashMap<String, Vec<String>>,
    /// Every macro's parsed condition.
    pub macros: &'a HashMap<String, Expr>,
}

/// Compiles conditions for one source, sharing compiled macros across rules.
pub struct Compiler<'a> {
    pub registry: &'static FieldRegistry,
    pub scope: Scope<'a>,
    /// Compiled macros of this source: name → slot in `program.macros`.
    slots: HashMap<String, u32>,
    in_progress: Vec<String>,
    pub used_lists: BTreeSet<String>,
    pub used_macros: BTreeSet<String>,
}

/// A list item and the offset of the token it came from (the literal, or the list's name).
type Item = (String, usize);

impl<'a> Compiler<'a> {
    pub fn new(registry: &'static FieldRegistry, scope: Scope<'a>) -> Self {
        Compiler {
            registry,
            scope,
            slots: HashMap::new(),
            in_progress: Vec::new(),
            used_lists: BTreeSet::new(),
            used_macros: BTreeSet::new(),
        }
    }

    /// Compile a condition; compiled macros are appended to `prog`.
    pub fn compile(&mut self, e: &Expr, prog: &mut program::Program) -> Result<Node, Located> {
        self.node(e, prog, 0)
    }

    fn node(
        &mut self,
        e: &Expr,
        prog: &mut program::Program,
        depth: usize,
    ) -> Result<Node, Located> {
        if depth > MAX_EXPANDED_DEPTH {
            return Err(invalid(
                "condition is nested too deeply after macro expansion",
                0,
            ));
        }
        Ok(match e {
            Expr::And(items) => Node::And(
                items
                    .iter()
                    .map(|i| self.node(i, prog, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Or(items) => Node::Or(
                items
                    .iter()
                    .map(|i| self.node(i, prog, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Not(inner) => Node::Not(Box::new(self.node(inner, prog, depth + 1)?)),
            Expr::Const(b) => Node::Const(*b),
            Expr::Macro { name, offset } => {
                self.used_macros.insert(name.clone());
                if let Some(slot) = self.slots.get(name) {
                    return Ok(Node::Macro(*slot));
                }
                let Some(body) = self.scope.macros.get(name) else {
                    let near = suggest::closest(name, self.scope.macros.keys().map(String::as_str));
                    return Err(at(
                        CompileError::UndefinedMacro(name.clone(), near.map(str::to_owned)),
                        *offset,
                    ));
                };
                if self.in_progress.iter().any(|m| m == name) {
                    return Err(invalid(format!("macro '{name}' refers to itself"), *offset));
                }
                self.in_progress.push(name.clone());
                let compiled = self.node(body, prog, depth + 1);
                self.in_progress.pop();
                let compiled = compiled.map_err(|mut l| {
                    if l.in_macro.is_none() {
                        l.in_macro = Some(name.clone());
                    }
                    l
                })?;
                let slot = prog.macros.len() as u32;
                prog.macros.push(compiled);
                self.slots.insert(name.clone(), slot);
                Node::Macro(slot)
            }
            Expr::Check {
                left,
                op,
                rhs,
                offset,
                op_offset,
            } => Node::Check(Box::new(self.check(left, *op, rhs, *offset, *op_offset)?)),
        })
    }

    fn field(&self, name: &str, arg: &Option<String>, offset: usize) -> Result<CField, Located> {
        let Some((id, info, dotted)) = self.registry.resolve(name) else {
            let near = suggest::closest(name, self.registry.fields().iter().map(|f| f.name));
            return Err(at(
                CompileError::UnknownField(name.to_owned(), near.map(str::to_owned)),
                offset,
            ));
        };
        let arg_text = match (dotted, arg) {
            (Some(_), Some(_)) => {
                return Err(at(
                    CompileError::UnknownField(
                        format!("{name}[{}]", arg.as_deref().unwrap_or("")),
                        None,
                    ),
                    offset,
                ));
            }
            (Some(d), None) => Some(d.to_owned()),
            (None, a) => a.clone(),
        };
        let arg = match (&arg_text, info.arg) {
            (Some(_), ArgKind::None) => {
                return Err(invalid(
                    format!("field '{name}' does not take an argument"),
                    offset,
                ));
            }
            (None, ArgKind::Required) => {
                return Err(invalid(
                    format!("field '{name}' requires an argument"),
                    offset,
                ));
            }
            (None, _) => OwnedArg::None,
            (Some(a), _) => {
                // The argument starts after `name.` or `name[`.
                let arg_at = offset + info.name.len() + 1;
                evttypes::check_event_arg(info.name, a, dotted.is_some())
                    .map_err(|m| invalid(m, arg_at))?;
                match a.parse::<u64>() {
                    Ok(i) => OwnedArg::Index(i),
                    Err(_) => OwnedArg::Key(a.clone().into_boxed_str()),
                }
            }
        };
        Ok(CField { id, info, arg })
    }

    fn operand(&self, o: &Operand) -> Result<(program::Operand, FieldType), Located> {
        match o {
            Operand::Field { name, arg, offset } => {
                let f = self.field(name, arg, *offset)?;
                let ty = f.info.ty;
                Ok((
                    program::Operand {
                        field: f,
                        transforms: Vec::new(),
                    },
                    ty,
                ))
            }
            Operand::Transform(t, inner) => {
                let (mut op, ty) = self.operand(inner)?;
                if *t != Transformer::Val {
                    if !ty.is_text() && *t != Transformer::Len {
                        return Err(invalid(
                            format!(
                                "transformer '{}' is not supported on field type {ty}",
                                t.name()
                            ),
                            operand_offset(inner),
                        ));
                    }
                    op.transforms.push(*t);
                }
                let ty = if *t == Transformer::Len {
                    FieldType::Uint64
                } else {
                    ty
                };
                Ok((op, ty))
            }
        }
    }

    /// The list items a right-hand side names, with list references expanded.
    fn list_items(&mut self, rhs: &Rhs) -> Vec<Item> {
        let mut out = Vec::new();
        match rhs {
            Rhs::List(items) => {
                for Lit {
                    text,
                    quoted,
                    offset,
                } in items
                {
                    if !quoted && let Some(l) = self.scope.lists.get(text) {
                        self.used_lists.insert(text.clone());
                        out.extend(l.iter().map(|i| (i.clone(), *offset)));
                    } else {
                        out.push((text.clone(), *offset));
                    }
                }
            }
            Rhs::ListRef(name, offset) => match self.scope.lists.get(name) {
                Some(l) => {
                    self.used_lists.insert(name.clone());
                    out.extend(l.iter().map(|i| (i.clone(), *offset)));
                }
                None => out.push((name.clone(), *offset)),
            },
            Rhs::Value(v) => out.push((v.text.clone(), v.offset)),
            Rhs::Modified(_, list) => return self.list_items(list),
            Rhs::None | Rhs::Field(_) => {}
        }
        out
    }

    fn check(
        &mut self,
        left: &Operand,
        op: Op,
        rhs: &Rhs,
        offset: usize,
        op_offset: usize,
    ) -> Result<Check, Located> {
        let (lhs, ty) = self.operand(left)?;
        let is_list = lhs.field.info.is_list && lhs.transforms.is_empty();
        let modifier = match rhs {
            Rhs::Modified(m, _) => Some(*m),
            _ => None,
        };
        if is_list && !matches!(op, Op::In | Op::Intersects | Op::Exists) {
            // libs `flt_is_comparable_any_list`, wording included.
            let opname = match modifier {
                Some(m) => format!("{} {}", op.as_str(), m.as_str()),
                None => op.as_str().to_owned(),
            };
            return Err(invalid(
                format!("filter error: '{opname}' operator not supported list filters"),
                op_offset,
            ));
        }
        let kind = if ty.is_numeric() {
            if ty == FieldType::Double {
                Kind::Float
            } else {
                Kind::Int
            }
        } else {
            match ty {
                FieldType::Bool => Kind::Bool,
                FieldType::IpAddr | FieldType::IpNet => Kind::Ip,
                _ => Kind::Text,
            }
        };
        if modifier.is_some() && kind == Kind::Ip && !matches!(op, Op::Eq | Op::Ne) {
            return Err(invalid(
                format!(
                    "filter error: '{}' with modifier not supported for ip address and network filters",
                    op.as_str()
                ),
                op_offset,
            ));
        }
        let name = lhs.field.info.name;
        let bad = |what: &str, v: &str, at: usize| {
            invalid(format!("{what} {v:?} for field '{name}' of type {ty}"), at)
        };
        let is_evt_type = name == "evt.type" && lhs.transforms.is_empty();
        if is_evt_type && op != Op::Exists {
            // libsinsp checks every value compared with `evt.type` against the event table.
            for (v, at) in self.list_items(rhs) {
                if !evttypes::is_event_type(&v) {
                    return Err(invalid(
                        suggest::with_hint(
                            format!("unknown event type {v}"),
                            &v,
                            evttypes::EVENT_TYPES.iter().copied(),
                        ),
                        at,
                    ));
                }
            }
        }
        let evt_types = (is_evt_type
            && matches!(op, Op::Eq | Op::In | Op::Intersects)
            && matches!(
                rhs,
                Rhs::Value(_) | Rhs::List(_) | Rhs::ListRef(..) | Rhs::Modified(..)
            ))
        .then(|| self.list_items(rhs).into_iter().map(|(v, _)| v).collect());

        let compiled_rhs = match (op, rhs) {
            (Op::Exists, _) => program::Rhs::None,
            (_, Rhs::Field(o)) => {
                let (rop, _) = self.operand(&strip_val(o))?;
                program::Rhs::Field(rop)
            }
            (_, Rhs::Modified(m, list)) => {
                if matches!(**list, Rhs::Field(_)) {
                    return Err(invalid(
                        format!("expected a list or a list name after '{}'", m.as_str()),
                        offset,
                    ));
                }
                let items = self.list_items(list);
                if *m == Modifier::AnyOf && op == Op::Eq {
                    // `= anyof (...)` is set membership, as libs optimizes it.
                    self.set_rhs(Op::In, kind, items, &bad)?
                } else {
                    let rhs = items
                        .iter()
                        .map(|(v, at)| self.scalar_rhs(op, kind, v, *at, &bad))
                        .collect::<Result<Vec<_>, _>>()?;
                    program::Rhs::Multi(*m, rhs.into_boxed_slice())
                }
            }
            (Op::In | Op::Intersects | Op::PMatch, _) => {
                let items = self.list_items(rhs);
                self.set_rhs(op, kind, items, &bad)?
            }
            (_, Rhs::Value(v)) => self.scalar_rhs(op, kind, &v.text, v.offset, &bad)?,
            (_, Rhs::List(_) | Rhs::ListRef(..)) => {
                return Err(invalid(
                    format!("operator '{}' does not take a list", op.as_str()),
                    op_offset,
                ));
            }
            (_, Rhs::None) => {
                return Err(invalid(
                    format!("operator '{}' needs a value", op.as_str()),
                    op_offset,
                ));
            }
        };
        Ok(Check {
            all_values: is_list && op == Op::In,
            lhs,
            op,
            kind,
            rhs: compiled_rhs,
            evt_types,
        })
    }

    /// The set a list operator (`in`, `intersects`, `pmatch`) compares with.
    fn set_rhs(
        &self,
        op: Op,
        kind: Kind,
        items: Vec<Item>,
        bad: &dyn Fn(&str, &str, usize) -> Located,
    ) -> Result<program::Rhs, Located> {
        if op == Op::PMatch {
            return Ok(program::Rhs::Paths(PathSet::new(
                items.into_iter().map(|(s, _)| s.into_bytes()),
            )));
        }
        Ok(match kind {
            Kind::Text => {
                program::Rhs::TextSet(TextSet::new(items.into_iter().map(|(s, _)| s.into_bytes())))
            }
            Kind::Int => program::Rhs::IntSet(
                items
                    .iter()
                    .map(|(i, at)| parse_int(i).ok_or_else(|| bad("invalid number", i, *at)))
                    .collect::<Result<_, _>>()?,
            ),
            Kind::Float => program::Rhs::FloatSet(
                items
                    .iter()
                    .map(|(i, at)| i.trim().parse().map_err(|_| bad("invalid number", i, *at)))
                    .collect::<Result<_, _>>()?,
            ),
            Kind::Bool => program::Rhs::BoolSet(
                items
                    .iter()
                    .map(|(i, at)| {
                        crate::value::parse_bool(i).ok_or_else(|| bad("invalid bool", i, *at))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Kind::Ip => program::Rhs::NetSet(
                items
                    .iter()
                    .map(|(i, at)| {
                        i.parse::<IpNet>()
                            .map_err(|_| bad("invalid address", i, *at))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    fn scalar_rhs(
        &self,
        op: Op,
        kind: Kind,
        v: &str,
        at: usize,
        bad: &dyn Fn(&str, &str, usize) -> Located,
    ) -> Result<program::Rhs, Located> {
        use program::Rhs as R;
        Ok(match op {
            Op::Contains => R::Finder(Box::new(
                memchr::memmem::Finder::new(v.as_bytes()).into_owned(),
            )),
            Op::IContains => R::Lower(v.to_ascii_lowercase().into_bytes().into_boxed_slice()),
            Op::BContains | Op::BStartsWith => R::Text(
                hex_decode(v)
                    .ok_or_else(|| bad("invalid hex string", v, at))?
                    .into_boxed_slice(),
            ),
            Op::StartsWith | Op::EndsWith => R::Text(v.as_bytes().into()),
            Op::Glob => R::Glob(v.as_bytes().into()),
            Op::IGlob => R::Glob(v.to_ascii_lowercase().into_bytes().into_boxed_slice()),
            Op::Regex => R::Regex(
                regex::bytes::Regex::new(&format!("^(?:{v})$"))
                    .map_err(|e| invalid(format!("invalid regex {v:?}: {e}"), at))?,
            ),
            Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => match kind {
                Kind::Text if matches!(op, Op::Eq | Op::Ne) => R::Text(v.as_bytes().into()),
                Kind::Text | Kind::Int => {
                    R::Int(parse_int(v).ok_or_else(|| bad("invalid number", v, at))?)
                }
                Kind::Float => {
                    R::Float(v.trim().parse().map_err(|_| bad("invalid number", v, at))?)
                }
                Kind::Bool => {
                    R::Bool(crate::value::parse_bool(v).ok_or_else(|| bad("invalid bool", v, at))?)
                }
                Kind::Ip => R::Net(
                    v.parse::<IpNet>()
                        .map_err(|_| bad("invalid address", v, at))?,
                ),
            },
            Op::In | Op::Intersects | Op::PMatch | Op::Exists => R::None,
        })
    }
}

/// The offset of the field an operand reads.
fn operand_offset(o: &Operand) -> usize {
    match o {
        Operand::Field { offset, .. } => *offset,
        Operand::Transform(_, inner) => operand_offset(inner),
    }
}

/// `val(f)` compiles to the field itself.
fn strip_val(o: &Operand) -> Operand {
    match o {
        Operand::Transform(Transformer::Val, inner) => (**inner).clone(),
        other => other.clone(),
    }
}

fn parse_int(s: &str) -> Option<i128> {
    crate::value::parse_int(s.as_bytes())
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The event types a compiled condition can match; `None` means any type. Results for
/// macros are memoized in `macro_types`, so shared macros are visited once.
pub fn event_types(
    node: &Node,
    prog: &program::Program,
    macro_types: &mut HashMap<u32, Option<BTreeSet<String>>>,
) -> Option<BTreeSet<String>> {
    match node {
        Node::And(items) => {
            let mut acc: Option<BTreeSet<String>> = None;
            for i in items.iter() {
                if let Some(s) = event_types(i, prog, macro_types) {
                    acc = Some(match acc {
                        None => s,
                        Some(a) => a.intersection(&s).cloned().collect(),
                    });
                }
            }
            acc
        }
        Node::Or(items) => {
            let mut acc = BTreeSet::new();
            for i in items.iter() {
                acc.extend(event_types(i, prog, macro_types)?);
            }
            Some(acc)
        }
        Node::Not(_) | Node::Const(_) => None,
        Node::Macro(i) => {
            if let Some(t) = macro_types.get(i) {
                return t.clone();
            }
            let t = event_types(prog.macros.get(*i as usize)?, prog, macro_types);
            macro_types.insert(*i, t.clone());
            t
        }
        Node::Check(c) => c.evt_types.as_ref().map(|v| v.iter().cloned().collect()),
    }
}

/// How many nodes one `expand` may produce before it stops inlining macros.
pub const EXPAND_BUDGET: usize = 20_000;

/// Expand macros and lists into a condition tree, for display (`describe-rule`).
pub fn expand(e: &Expr, scope: &Scope<'_>, depth: usize, budget: &mut usize) -> Expr {
    *budget = budget.saturating_sub(1);
    if depth > MAX_EXPANDED_DEPTH {
        return e.clone();
    }
    match e {
        Expr::And(items) => Expr::And(
            items
                .iter()
                .map(|i| expand(i, scope, depth + 1, budget))
                .collect(),
        ),
        Expr::Or(items) => Expr::Or(
            items
                .iter()
                .map(|i| expand(i, scope, depth + 1, budget))
                .collect(),
        ),
        Expr::Not(i) => Expr::Not(Box::new(expand(i, scope, depth + 1, budget))),
        Expr::Macro { name, .. } => match scope.macros.get(name) {
            // Past the budget, macros stay as names: the text stays bounded.
            Some(body) if *budget > 0 => expand(body, scope, depth + 1, budget),
            _ => e.clone(),
        },
        Expr::Check {
            left,
            op,
            rhs,
            offset,
            op_offset,
        } => Expr::Check {
            left: left.clone(),
            op: *op,
            rhs: expand_rhs(rhs, scope),
            offset: *offset,
            op_offset: *op_offset,
        },
        Expr::Const(b) => Expr::Const(*b),
    }
}

/// A right-hand side with its list names replaced by their items.
fn expand_rhs(rhs: &Rhs, scope: &Scope<'_>) -> Rhs {
    match rhs {
        Rhs::List(items) => {
            let mut out = Vec::new();
            for it in items {
                match scope.lists.get(&it.text) {
                    Some(l) if !it.quoted => {
                        out.extend(l.iter().map(|s| Lit::bare(s.clone(), it.offset)))
                    }
                    _ => out.push(it.clone()),
                }
            }
            Rhs::List(out)
        }
        Rhs::ListRef(name, at) => match scope.lists.get(name) {
            Some(l) => Rhs::List(l.iter().map(|s| Lit::bare(s.clone(), *at)).collect()),
            None => rhs.clone(),
        },
        Rhs::Modified(m, list) => Rhs::Modified(*m, Box::new(expand_rhs(list, scope))),
        other => other.clone(),
    }
}
