//! Compiled conditions and their evaluation. Nothing here allocates per event: values are
//! compared where the extractor hands them over, transformers write into reused scratch
//! buffers, and macro results are memoized per event in a generation-stamped table.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::ast::{Modifier, Op, Transformer};
use super::matchers::{PathSet, TextSet, glob_match, icontains};
use crate::event::Event;
use crate::fields::{FieldArg, FieldId, FieldInfo, FieldRef};
use crate::value::{IpNet, Value};

/// A field argument owned by the compiled program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedArg {
    None,
    Index(u64),
    Key(Box<str>),
}

/// A compiled field reference.
#[derive(Debug, Clone)]
pub struct CField {
    pub id: FieldId,
    pub info: &'static FieldInfo,
    pub arg: OwnedArg,
}

impl CField {
    #[inline]
    pub fn as_ref(&self) -> FieldRef<'_> {
        FieldRef {
            id: self.id,
            info: self.info,
            arg: match &self.arg {
                OwnedArg::None => FieldArg::None,
                OwnedArg::Index(i) => FieldArg::Index(*i),
                OwnedArg::Key(k) => FieldArg::Key(k),
            },
        }
    }
}

/// A field with transformers applied innermost first.
#[derive(Debug, Clone)]
pub struct Operand {
    pub field: CField,
    pub transforms: Vec<Transformer>,
}

/// How values are compared, decided at compile time from the operand's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Float,
    Bool,
    Ip,
}

/// The compiled right-hand side.
#[derive(Debug)]
pub enum Rhs {
    None,
    Text(Box<[u8]>),
    /// `contains` needle with a precomputed searcher.
    Finder(Box<memchr::memmem::Finder<'static>>),
    /// `icontains` needle, lower-case.
    Lower(Box<[u8]>),
    Int(i128),
    Float(f64),
    Bool(bool),
    Net(IpNet),
    TextSet(TextSet),
    IntSet(Vec<i128>),
    FloatSet(Vec<f64>),
    BoolSet(Vec<bool>),
    NetSet(Vec<IpNet>),
    Paths(PathSet),
    Glob(Box<[u8]>),
    Regex(regex::bytes::Regex),
    /// `val(field)` or a transformed field.
    Field(Operand),
    /// `OP oneof|anyof|allof (a, b)`: the operator against each item, combined by the
    /// modifier. Never nested, never `Field`.
    Multi(Modifier, Box<[Rhs]>),
}

#[derive(Debug)]
pub struct Check {
    pub lhs: Operand,
    pub op: Op,
    pub kind: Kind,
    pub rhs: Rhs,
    /// `in` on a list field: every value must be in the set.
    pub all_values: bool,
    /// For `evt.type = x` / `evt.type in (...)`: the types named.
    pub evt_types: Option<Vec<String>>,
}

#[derive(Debug)]
pub enum Node {
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    /// A macro, evaluated once per event and shared by every rule that uses it.
    Macro(u32),
    Check(Box<Check>),
    Const(bool),
}

/// Per-evaluation scratch space, reused across events.
#[derive(Debug, Default)]
pub struct Scratch {
    generation: u64,
    memo: Vec<u64>,
    buf: Vec<u8>,
    rhs_buf: Vec<u8>,
}

impl Scratch {
    /// Start a new event: forget every memoized macro result.
    #[inline]
    pub fn next_event(&mut self, macros: usize) {
        if self.memo.len() < macros {
            self.memo.resize(macros, 0);
        }
        self.generation += 1;
    }
}

/// Compiled macros, shared by every rule of an engine.
#[derive(Debug, Default)]
pub struct Program {
    pub macros: Vec<Node>,
}

/// A small stack buffer for rendering numbers and addresses as text without allocating.
struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let b = s.as_bytes();
        let end = self.len + b.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(b);
        self.len = end;
        Ok(())
    }
}

/// Call `f` with the value as text bytes.
#[inline]
fn with_text<R>(v: &Value<'_>, f: impl FnOnce(&[u8]) -> R) -> R {
    match v {
        Value::Str(s) => f(s.as_bytes()),
        Value::Bytes(b) => f(b),
        other => {
            let mut t = StackText {
                buf: [0; 64],
                len: 0,
            };
            let _ = write!(t, "{other}");
            f(&t.buf[..t.len])
        }
    }
}

fn as_f64(v: &Value<'_>) -> Option<f64> {
    match *v {
        Value::Double(d) => Some(d),
        Value::Int(i) => Some(i as f64),
        Value::Uint(u) => Some(u as f64),
        Value::Str(s) => s.trim().parse().ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

fn as_ip(v: &Value<'_>) -> Option<IpAddr> {
    match *v {
        Value::Net(n) => Some(n.addr),
        _ => v.as_ip(),
    }
}

/// Apply one transformer to text, writing into `out`.
pub(crate) fn transform_text(t: Transformer, input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    match t {
        Transformer::ToLower => out.extend(input.iter().map(u8::to_ascii_lowercase)),
        Transformer::ToUpper => out.extend(input.iter().map(u8::to_ascii_uppercase)),
        Transformer::B64 => b64_decode(input, out),
        Transformer::Basename => {
            let end = input.len()
                - input
                    .iter()
                    .rev()
                    .take_while(|c| **c == b'/')
                    .count()
                    .min(input.len().saturating_sub(1));
            let trimmed = &input[..end];
            let start = trimmed
                .iter()
                .rposition(|c| *c == b'/')
                .map_or(0, |i| i + 1);
            out.extend_from_slice(&trimmed[start..]);
        }
        Transformer::Len => {
            let _ = write!(Writer(out), "{}", input.len());
        }
        Transformer::Val => out.extend_from_slice(input),
    }
}

struct Writer<'a>(&'a mut Vec<u8>);
impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Standard base64 decoding; on invalid input the original text is kept (as Falco does).
fn b64_decode(input: &[u8], out: &mut Vec<u8>) {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }
    let data: &[u8] = {
        let mut end = input.len();
        while end > 0 && input[end - 1] == b'=' {
            end -= 1;
        }
        &input[..end]
    };
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in data {
        let Some(v) = val(c) else {
            out.clear();
            out.extend_from_slice(input);
            return;
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
}

impl Program {
    /// Evaluate a node against an event.
    pub fn eval(&self, node: &Node, ev: &(impl Event + ?Sized), s: &mut Scratch) -> bool {
        match node {
            Node::And(items) => items.iter().all(|n| self.eval(n, ev, s)),
            Node::Or(items) => items.iter().any(|n| self.eval(n, ev, s)),
            Node::Not(n) => !self.eval(n, ev, s),
            Node::Const(b) => *b,
            Node::Macro(i) => {
                let i = *i as usize;
                let stamp = s.memo.get(i).copied().unwrap_or(0);
                if stamp >> 1 == s.generation {
                    return stamp & 1 == 1;
                }
                let r = match self.macros.get(i) {
                    Some(n) => self.eval(n, ev, s),
                    None => false,
                };
                if let Some(slot) = s.memo.get_mut(i) {
                    *slot = (s.generation << 1) | u64::from(r);
                }
                r
            }
            Node::Check(c) => {
                // `evt.type` checks read the type the index already used, without extracting.
                if c.evt_types.is_some()
                    && let Some(t) = ev.event_type()
                {
                    return compare(c, &Value::Str(t), &[]);
                }
                eval_check(c, ev, s)
            }
        }
    }
}

fn eval_check(c: &Check, ev: &(impl Event + ?Sized), s: &mut Scratch) -> bool {
    let Scratch { buf, rhs_buf, .. } = s;
    // `val(field)`: fetch the right-hand value first.
    if let Rhs::Field(op) = &c.rhs {
        let mut rhs_ok = false;
        rhs_buf.clear();
        let r = op.field.as_ref();
        let mut first = true;
        let got = ev.extract(&r, &mut |v| {
            if first {
                first = false;
                with_text(&v, |t| apply_transforms(&op.transforms, t, rhs_buf));
                rhs_ok = true;
            }
        });
        if !got || !rhs_ok {
            return false;
        }
    }
    let r = c.lhs.field.as_ref();
    let mut any = false;
    let mut all = true;
    let extracted = ev.extract(&r, &mut |v| {
        if c.op == Op::Exists || (any && !c.all_values) || (!all && c.all_values) {
            return;
        }
        let ok = if c.lhs.transforms.is_empty() {
            compare(c, &v, rhs_buf)
        } else {
            with_text(&v, |t| apply_transforms(&c.lhs.transforms, t, buf));
            if c.lhs.transforms.last() == Some(&Transformer::Len) {
                let n = std::str::from_utf8(buf)
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
                    .unwrap_or(0);
                compare(c, &Value::Uint(n), rhs_buf)
            } else {
                compare(c, &Value::Bytes(buf), rhs_buf)
            }
        };
        any |= ok;
        all &= ok;
    });
    if !extracted {
        return false;
    }
    match c.op {
        Op::Exists => true,
        _ if c.all_values => all,
        _ => any,
    }
}

fn apply_transforms(ts: &[Transformer], input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(input);
    let mut tmp = Vec::new();
    for t in ts {
        transform_text(*t, out, &mut tmp);
        std::mem::swap(out, &mut tmp);
    }
}

/// Compare one extracted value with the compiled right-hand side.
#[inline]
fn compare(c: &Check, v: &Value<'_>, rhs_field: &[u8]) -> bool {
    compare_rhs(&c.rhs, c.op, v, rhs_field)
}

/// `op` between a value and each item of a modified list (libs `compare_rhs_with_mod`): an
/// empty list matches nothing; `oneof` stops at the second match.
fn compare_multi(m: Modifier, items: &[Rhs], op: Op, v: &Value<'_>) -> bool {
    if items.is_empty() {
        return false;
    }
    match m {
        Modifier::AnyOf => items.iter().any(|r| compare_rhs(r, op, v, &[])),
        Modifier::AllOf => items.iter().all(|r| compare_rhs(r, op, v, &[])),
        Modifier::OneOf => {
            let mut hits = items.iter().filter(|r| compare_rhs(r, op, v, &[]));
            hits.next().is_some() && hits.next().is_none()
        }
    }
}

fn compare_rhs(rhs: &Rhs, op: Op, v: &Value<'_>, rhs_field: &[u8]) -> bool {
    use Op::*;
    match (rhs, op) {
        (Rhs::Multi(m, items), op) => compare_multi(*m, items, op, v),
        (Rhs::Field(_), op) => with_text(v, |t| match op {
            Eq | In | Intersects => t == rhs_field,
            Ne => t != rhs_field,
            Contains => memchr::memmem::find(t, rhs_field).is_some(),
            StartsWith | BStartsWith => t.starts_with(rhs_field),
            EndsWith => t.ends_with(rhs_field),
            Lt | Le | Gt | Ge => {
                let a = crate::value::parse_int(t);
                let b = crate::value::parse_int(rhs_field);
                match (a, b) {
                    (Some(a), Some(b)) => ordered(op, a.cmp(&b)),
                    _ => false,
                }
            }
            _ => false,
        }),
        (Rhs::Text(lit), op) => with_text(v, |t| match op {
            Eq => t == &**lit,
            Ne => t != &**lit,
            StartsWith | BStartsWith => t.starts_with(lit),
            EndsWith => t.ends_with(lit),
            BContains => memchr::memmem::find(t, lit).is_some(),
            Lt | Le | Gt | Ge => ordered(op, t.cmp(lit)),
            _ => false,
        }),
        (Rhs::Finder(f), _) => with_text(v, |t| f.find(t).is_some()),
        (Rhs::Lower(n), _) => with_text(v, |t| icontains(t, n)),
        (Rhs::Glob(p), op) => with_text(v, |t| glob_match(p, t, op == IGlob)),
        (Rhs::Regex(r), _) => with_text(v, |t| r.is_match(t)),
        (Rhs::TextSet(set), _) => with_text(v, |t| set.contains(t)),
        (Rhs::Paths(p), _) => with_text(v, |t| p.matches(t)),
        (Rhs::Int(n), op) => match v.as_i128() {
            Some(x) => match op {
                Eq => x == *n,
                Ne => x != *n,
                _ => ordered(op, x.cmp(n)),
            },
            None => false,
        },
        (Rhs::Float(n), op) => match as_f64(v) {
            Some(x) => match op {
                Eq => x == *n,
                Ne => x != *n,
                _ => x.partial_cmp(n).is_some_and(|o| ordered(op, o)),
            },
            None => false,
        },
        (Rhs::IntSet(set), _) => v.as_i128().is_some_and(|x| set.contains(&x)),
        (Rhs::FloatSet(set), _) => as_f64(v).is_some_and(|x| set.contains(&x)),
        (Rhs::Bool(b), op) => match v.as_bool() {
            Some(x) => (x == *b) == (op != Ne),
            None => false,
        },
        (Rhs::BoolSet(set), _) => v.as_bool().is_some_and(|x| set.contains(&x)),
        (Rhs::Net(n), op) => match v {
            Value::Net(vn) => (vn == n) == (op != Ne),
            _ => match as_ip(v) {
                Some(ip) => n.contains(ip) == (op != Ne),
                None => false,
            },
        },
        (Rhs::NetSet(set), _) => match v {
            Value::Net(vn) => set.contains(vn),
            _ => as_ip(v).is_some_and(|ip| set.iter().any(|n| n.contains(ip))),
        },
        (Rhs::None, _) => true,
    }
}

#[inline]
fn ordered(op: Op, o: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Lt => o == Less,
        Op::Le => o != Greater,
        Op::Gt => o == Greater,
        Op::Ge => o != Less,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transformers() {
        let mut out = Vec::new();
        transform_text(Transformer::Basename, b"/usr/bin/bash", &mut out);
        assert_eq!(out, b"bash");
        transform_text(Transformer::Basename, b"/usr/bin/", &mut out);
        assert_eq!(out, b"bin");
        transform_text(Transformer::B64, b"aGVsbG8=", &mut out);
        assert_eq!(out, b"hello");
        transform_text(Transformer::B64, b"*not*", &mut out);
        assert_eq!(out, b"*not*");
        transform_text(Transformer::ToUpper, b"aBc", &mut out);
        assert_eq!(out, b"ABC");
        transform_text(Transformer::Len, b"abcd", &mut out);
        assert_eq!(out, b"4");
    }
}
