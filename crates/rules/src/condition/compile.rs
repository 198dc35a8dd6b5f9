//! From syntax tree to compiled checks: resolve fields against a source's registry, expand
//! lists, link macros (compiled once per source and shared), and type the literals.

use std::collections::{BTreeSet, HashMap};

use super::ast::{Expr, Lit, Op, Operand, Rhs, Transformer};
use super::matchers::{PathSet, TextSet};
use super::program::{self, CField, Check, Kind, Node, OwnedArg};
use crate::fields::{ArgKind, FieldRegistry, FieldType};
use crate::value::IpNet;

/// Why a condition could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// An unknown field: a warning instead of an error under `skip-if-unknown-filter`.
    #[error("filter_check called with nonexistent field {0}")]
    UnknownField(String),
    #[error("Undefined macro '{0}' used in filter.")]
    UndefinedMacro(String),
    #[error("{0}")]
    Invalid(String),
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
    pub fn compile(&mut self, e: &Expr, prog: &mut program::Program) -> Result<Node, CompileError> {
        self.node(e, prog, 0)
    }

    fn node(
        &mut self,
        e: &Expr,
        prog: &mut program::Program,
        depth: usize,
    ) -> Result<Node, CompileError> {
        if depth > MAX_EXPANDED_DEPTH {
            return Err(CompileError::Invalid(
                "condition is nested too deeply after macro expansion".into(),
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
            Expr::Macro { name, .. } => {
                self.used_macros.insert(name.clone());
                if let Some(slot) = self.slots.get(name) {
                    return Ok(Node::Macro(*slot));
                }
                let Some(body) = self.scope.macros.get(name) else {
                    return Err(CompileError::UndefinedMacro(name.clone()));
                };
                if self.in_progress.iter().any(|m| m == name) {
                    return Err(CompileError::Invalid(format!(
                        "macro '{name}' refers to itself"
                    )));
                }
                self.in_progress.push(name.clone());
                let compiled = self.node(body, prog, depth + 1);
                self.in_progress.pop();
                let compiled = compiled?;
                let slot = prog.macros.len() as u32;
                prog.macros.push(compiled);
                self.slots.insert(name.clone(), slot);
                Node::Macro(slot)
            }
            Expr::Check { left, op, rhs, .. } => Node::Check(Box::new(self.check(left, *op, rhs)?)),
        })
    }

    fn field(&self, name: &str, arg: &Option<String>) -> Result<CField, CompileError> {
        let Some((id, info, dotted)) = self.registry.resolve(name) else {
            return Err(CompileError::UnknownField(name.to_owned()));
        };
        let arg_text = match (dotted, arg) {
            (Some(_), Some(_)) => {
                return Err(CompileError::UnknownField(format!(
                    "{name}[{}]",
                    arg.as_deref().unwrap_or("")
                )));
            }
            (Some(d), None) => Some(d.to_owned()),
            (None, a) => a.clone(),
        };
        let arg = match (&arg_text, info.arg) {
            (Some(_), ArgKind::None) => {
                return Err(CompileError::Invalid(format!(
                    "field '{name}' does not take an argument"
                )));
            }
            (None, ArgKind::Required) => {
                return Err(CompileError::Invalid(format!(
                    "field '{name}' requires an argument"
                )));
            }
            (None, _) => OwnedArg::None,
            (Some(a), _) => match a.parse::<u64>() {
                Ok(i) => OwnedArg::Index(i),
                Err(_) => OwnedArg::Key(a.clone().into_boxed_str()),
            },
        };
        Ok(CField { id, info, arg })
    }

    fn operand(&self, o: &Operand) -> Result<(program::Operand, FieldType), CompileError> {
        match o {
            Operand::Field { name, arg, .. } => {
                let f = self.field(name, arg)?;
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
                        return Err(CompileError::Invalid(format!(
                            "transformer '{}' is not supported on field type {ty}",
                            t.name()
                        )));
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
    fn list_items(&mut self, rhs: &Rhs) -> Vec<String> {
        let mut out = Vec::new();
        match rhs {
            Rhs::List(items) => {
                for Lit { text, quoted } in items {
                    if !quoted && let Some(l) = self.scope.lists.get(text) {
                        self.used_lists.insert(text.clone());
                        out.extend(l.iter().cloned());
                    } else {
                        out.push(text.clone());
                    }
                }
            }
            Rhs::ListRef(name) => match self.scope.lists.get(name) {
                Some(l) => {
                    self.used_lists.insert(name.clone());
                    out.extend(l.iter().cloned());
                }
                None => out.push(name.clone()),
            },
            Rhs::Value(v) => out.push(v.text.clone()),
            Rhs::None | Rhs::Field(_) => {}
        }
        out
    }

    fn check(&mut self, left: &Operand, op: Op, rhs: &Rhs) -> Result<Check, CompileError> {
        let (lhs, ty) = self.operand(left)?;
        let is_list = lhs.field.info.is_list && lhs.transforms.is_empty();
        if is_list && !matches!(op, Op::In | Op::Intersects | Op::Exists) {
            // Falco rejects these; aerie accepts them with "any value" semantics,
            // which is what users of the k8s audit rules expect.
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
        let name = lhs.field.info.name;
        let bad = |what: &str, v: &str| {
            CompileError::Invalid(format!("{what} {v:?} for field '{name}' of type {ty}"))
        };
        let evt_types = (name == "evt.type"
            && lhs.transforms.is_empty()
            && matches!(op, Op::Eq | Op::In | Op::Intersects)
            && matches!(rhs, Rhs::Value(_) | Rhs::List(_) | Rhs::ListRef(_)))
        .then(|| self.list_items(rhs));

        let compiled_rhs = match (op, rhs) {
            (Op::Exists, _) => program::Rhs::None,
            (_, Rhs::Field(o)) => {
                let (rop, _) = self.operand(&strip_val(o))?;
                program::Rhs::Field(rop)
            }
            (Op::In | Op::Intersects | Op::PMatch, _) => {
                let items = self.list_items(rhs);
                if op == Op::PMatch {
                    program::Rhs::Paths(PathSet::new(items.into_iter().map(String::into_bytes)))
                } else {
                    match kind {
                        Kind::Text => program::Rhs::TextSet(TextSet::new(
                            items.into_iter().map(String::into_bytes),
                        )),
                        Kind::Int => program::Rhs::IntSet(
                            items
                                .iter()
                                .map(|i| parse_int(i).ok_or_else(|| bad("invalid number", i)))
                                .collect::<Result<_, _>>()?,
                        ),
                        Kind::Float => program::Rhs::FloatSet(
                            items
                                .iter()
                                .map(|i| i.trim().parse().map_err(|_| bad("invalid number", i)))
                                .collect::<Result<_, _>>()?,
                        ),
                        Kind::Bool => program::Rhs::BoolSet(
                            items
                                .iter()
                                .map(|i| {
                                    crate::value::parse_bool(i)
                                        .ok_or_else(|| bad("invalid bool", i))
                                })
                                .collect::<Result<_, _>>()?,
                        ),
                        Kind::Ip => program::Rhs::NetSet(
                            items
                                .iter()
                                .map(|i| i.parse::<IpNet>().map_err(|_| bad("invalid address", i)))
                                .collect::<Result<_, _>>()?,
                        ),
                    }
                }
            }
            (_, Rhs::Value(v)) => self.scalar_rhs(op, kind, &v.text, &bad)?,
            (_, Rhs::List(_) | Rhs::ListRef(_)) => {
                return Err(CompileError::Invalid(format!(
                    "operator '{}' does not take a list",
                    op.as_str()
                )));
            }
            (_, Rhs::None) => {
                return Err(CompileError::Invalid(format!(
                    "operator '{}' needs a value",
                    op.as_str()
                )));
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

    fn scalar_rhs(
        &self,
        op: Op,
        kind: Kind,
        v: &str,
        bad: &dyn Fn(&str, &str) -> CompileError,
    ) -> Result<program::Rhs, CompileError> {
        use program::Rhs as R;
        Ok(match op {
            Op::Contains => R::Finder(Box::new(
                memchr::memmem::Finder::new(v.as_bytes()).into_owned(),
            )),
            Op::IContains => R::Lower(v.to_ascii_lowercase().into_bytes().into_boxed_slice()),
            Op::BContains | Op::BStartsWith => R::Text(
                hex_decode(v)
                    .ok_or_else(|| bad("invalid hex string", v))?
                    .into_boxed_slice(),
            ),
            Op::StartsWith | Op::EndsWith => R::Text(v.as_bytes().into()),
            Op::Glob => R::Glob(v.as_bytes().into()),
            Op::IGlob => R::Glob(v.to_ascii_lowercase().into_bytes().into_boxed_slice()),
            Op::Regex => R::Regex(
                regex::bytes::Regex::new(&format!("^(?:{v})$"))
                    .map_err(|e| CompileError::Invalid(format!("invalid regex {v:?}: {e}")))?,
            ),
            Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => match kind {
                Kind::Text if matches!(op, Op::Eq | Op::Ne) => R::Text(v.as_bytes().into()),
                Kind::Text | Kind::Int => {
                    R::Int(parse_int(v).ok_or_else(|| bad("invalid number", v))?)
                }
                Kind::Float => R::Float(v.trim().parse().map_err(|_| bad("invalid number", v))?),
                Kind::Bool => {
                    R::Bool(crate::value::parse_bool(v).ok_or_else(|| bad("invalid bool", v))?)
                }
                Kind::Ip => R::Net(v.parse::<IpNet>().map_err(|_| bad("invalid address", v))?),
            },
            Op::In | Op::Intersects | Op::PMatch | Op::Exists => R::None,
        })
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
        } => {
            let rhs = match rhs {
                Rhs::List(items) => {
                    let mut out = Vec::new();
                    for it in items {
                        match scope.lists.get(&it.text) {
                            Some(l) if !it.quoted => {
                                out.extend(l.iter().map(|s| Lit::bare(s.clone())))
                            }
                            _ => out.push(it.clone()),
                        }
                    }
                    Rhs::List(out)
                }
                Rhs::ListRef(name) => match scope.lists.get(name) {
                    Some(l) => Rhs::List(l.iter().map(|s| Lit::bare(s.clone())).collect()),
                    None => rhs.clone(),
                },
                other => other.clone(),
            };
            Expr::Check {
                left: left.clone(),
                op: *op,
                rhs,
                offset: *offset,
            }
        }
        Expr::Const(b) => Expr::Const(*b),
    }
}
