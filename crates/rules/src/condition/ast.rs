//! Condition syntax tree, and its canonical text (used by `describe-rule` and tests).

use std::fmt;

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// A bare identifier: a macro reference.
    Macro {
        name: String,
        offset: usize,
    },
    /// `offset` is where the check (its field) starts, `op_offset` where its operator does.
    Check {
        left: Operand,
        op: Op,
        rhs: Rhs,
        offset: usize,
        op_offset: usize,
    },
    /// Only produced by rewriting (an empty list expansion never is); kept for completeness.
    Const(bool),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    IContains,
    BContains,
    StartsWith,
    BStartsWith,
    EndsWith,
    Glob,
    IGlob,
    Regex,
    In,
    Intersects,
    PMatch,
    Exists,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::BContains => "bcontains",
            Op::StartsWith => "startswith",
            Op::BStartsWith => "bstartswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
            Op::IGlob => "iglob",
            Op::Regex => "regex",
            Op::In => "in",
            Op::Intersects => "intersects",
            Op::PMatch => "pmatch",
            Op::Exists => "exists",
        }
    }

    /// Operators whose right-hand side is a list.
    pub fn takes_list(self) -> bool {
        matches!(self, Op::In | Op::Intersects | Op::PMatch)
    }
}

/// A list modifier after a string operator (libs 0.25): `proc.name startswith anyof (a, b)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modifier {
    /// Exactly one list item matches.
    OneOf,
    /// At least one list item matches.
    AnyOf,
    /// Every list item matches.
    AllOf,
}

impl Modifier {
    pub const ALL: [Modifier; 3] = [Modifier::OneOf, Modifier::AnyOf, Modifier::AllOf];

    pub fn as_str(self) -> &'static str {
        match self {
            Modifier::OneOf => "oneof",
            Modifier::AnyOf => "anyof",
            Modifier::AllOf => "allof",
        }
    }
}

impl Op {
    /// Operators that take a list modifier (libs' `StrOperator`s).
    pub fn takes_modifier(self) -> bool {
        matches!(
            self,
            Op::Eq
                | Op::Ne
                | Op::Contains
                | Op::IContains
                | Op::BContains
                | Op::StartsWith
                | Op::BStartsWith
                | Op::EndsWith
                | Op::Glob
                | Op::IGlob
                | Op::Regex
        )
    }
}

/// A field transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transformer {
    ToLower,
    ToUpper,
    B64,
    Basename,
    Len,
    /// `val(field)`: the right-hand side is another field's value.
    Val,
}

impl Transformer {
    pub const ALL: [Transformer; 6] = [
        Transformer::ToLower,
        Transformer::ToUpper,
        Transformer::B64,
        Transformer::Basename,
        Transformer::Len,
        Transformer::Val,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Transformer::ToLower => "tolower",
            Transformer::ToUpper => "toupper",
            Transformer::B64 => "b64",
            Transformer::Basename => "basename",
            Transformer::Len => "len",
            Transformer::Val => "val",
        }
    }

    pub(crate) fn open_token(self) -> &'static str {
        match self {
            Transformer::ToLower => "tolower(",
            Transformer::ToUpper => "toupper(",
            Transformer::B64 => "b64(",
            Transformer::Basename => "basename(",
            Transformer::Len => "len(",
            Transformer::Val => "val(",
        }
    }
}

/// A field, possibly transformed.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Field {
        name: String,
        arg: Option<String>,
        offset: usize,
    },
    Transform(Transformer, Box<Operand>),
}

/// A literal value; `quoted` records whether it was written in quotes (a bare value in a
/// list may name a list). `offset` is its byte offset in the condition text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lit {
    pub text: String,
    pub quoted: bool,
    pub offset: usize,
}

impl Lit {
    pub fn bare(text: String, offset: usize) -> Self {
        Lit {
            text,
            quoted: false,
            offset,
        }
    }
    pub fn quoted(text: String, offset: usize) -> Self {
        Lit {
            text,
            quoted: true,
            offset,
        }
    }
}

/// The right-hand side of a check.
#[derive(Debug, Clone, PartialEq)]
pub enum Rhs {
    None,
    Value(Lit),
    List(Vec<Lit>),
    /// `in list_name`, and the name's offset.
    ListRef(String, usize),
    /// `val(field)` or a transformed field.
    Field(Operand),
    /// `anyof (a, b)` after a string operator: the list is a `List` or a `ListRef`.
    Modified(Modifier, Box<Rhs>),
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Field { name, arg, .. } => {
                f.write_str(name)?;
                if let Some(a) = arg {
                    write!(f, "[{a}]")?;
                }
                Ok(())
            }
            Operand::Transform(t, inner) => write!(f, "{}({inner})", t.name()),
        }
    }
}

/// Write a value so the parser reads it back unchanged: bare when possible, else quoted.
pub fn write_value(f: &mut impl fmt::Write, v: &str) -> fmt::Result {
    let bare_ok = !v.is_empty()
        && v.bytes().all(|c| {
            !matches!(c, b'(' | b')' | b'"' | b'\'' | b'=' | b',' | b'\\') && c > b' ' && c != 0x7f
        })
        && !matches!(v, "and" | "or" | "not");
    if bare_ok {
        return f.write_str(v);
    }
    f.write_char('"')?;
    for c in v.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\u{8}' => f.write_str("\\b")?,
            '\u{c}' => f.write_str("\\f")?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

impl fmt::Display for Rhs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rhs::None => Ok(()),
            Rhs::Value(v) => write_value(f, &v.text),
            Rhs::List(items) => {
                f.write_str("(")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_value(f, &v.text)?;
                }
                f.write_str(")")
            }
            Rhs::ListRef(name, _) => f.write_str(name),
            Rhs::Modified(m, list) => write!(f, "{} {list}", m.as_str()),
            Rhs::Field(o) => match o {
                Operand::Field { .. } => write!(f, "val({o})"),
                _ => write!(f, "{o}"),
            },
        }
    }
}

impl Expr {
    fn is_compound(&self) -> bool {
        matches!(self, Expr::And(_) | Expr::Or(_))
    }
}

impl fmt::Display for Expr {
    /// Canonical text: compound children of `and`/`or`/`not` are parenthesized.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn join(f: &mut fmt::Formatter<'_>, items: &[Expr], sep: &str) -> fmt::Result {
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                if e.is_compound() {
                    write!(f, "({e})")?;
                } else {
                    write!(f, "{e}")?;
                }
            }
            Ok(())
        }
        match self {
            Expr::And(items) => join(f, items, " and "),
            Expr::Or(items) => join(f, items, " or "),
            Expr::Not(e) => {
                if e.is_compound() {
                    write!(f, "not ({e})")
                } else {
                    write!(f, "not {e}")
                }
            }
            Expr::Macro { name, .. } => f.write_str(name),
            Expr::Check { left, op, rhs, .. } => {
                if *op == Op::Exists {
                    write!(f, "{left} exists")
                } else {
                    write!(f, "{left} {} {rhs}", op.as_str())
                }
            }
            Expr::Const(b) => write!(f, "{b}"),
        }
    }
}
