//! Condition parser: Falco's filter grammar (libsinsp `filter/parser.h`), by recursive descent.
//!
//! ```text
//! Expr      ::= Or
//! Or        ::= And ('or' And)*
//! And       ::= Not ('and' Not)*
//! Not       ::= 'not' Not | 'not(' Or ')' | Check
//! Check     ::= '(' Or ')' | Operand Condition | Identifier          (a macro)
//! Operand   ::= FieldName ('[' Arg ']')? | Transformer '(' Operand ')'
//! Condition ::= 'exists' | NumOp NumValue | StrOp StrValue | StrOp Modifier ListValue
//!             | ListOp ListValue
//! Modifier  ::= 'oneof' | 'anyof' | 'allof'        (followed by a blank, then a ListValue)
//! ListValue ::= '(' (StrValue (',' StrValue)*)? ')' | Identifier   (a list)
//! StrValue  ::= QuotedStr | BareStr | 'val(' Field ')' | Transformer '(' Operand ')'
//! ```

use super::ast::{Expr, Lit, Modifier, Op, Operand, Rhs, Transformer};

/// Deepest nesting of parentheses and `not`s accepted; deeper input is rejected, not overflowed.
pub const MAX_DEPTH: usize = 200;

/// A condition could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at offset {offset})")]
pub struct ParseError {
    pub message: String,
    /// Byte offset in the condition text.
    pub offset: usize,
}

/// Parse one condition.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        s: input.as_bytes(),
        src: input,
        pos: 0,
        depth: 0,
    };
    p.blank();
    if p.pos == p.s.len() {
        return Err(p.err("filter input string is empty"));
    }
    let e = p.or()?;
    p.blank();
    if p.pos != p.s.len() {
        return Err(p.err("unexpected token, expecting 'or', 'and'"));
    }
    Ok(e)
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    pos: usize,
    depth: usize,
}

const STR_OPS: &[(&str, Op, bool)] = &[
    // (token, op, needs a blank after it)
    ("==", Op::Eq, false),
    ("=", Op::Eq, false),
    ("!=", Op::Ne, false),
    ("glob", Op::Glob, true),
    ("iglob", Op::IGlob, true),
    ("contains", Op::Contains, true),
    ("icontains", Op::IContains, true),
    ("bcontains", Op::BContains, true),
    ("startswith", Op::StartsWith, true),
    ("bstartswith", Op::BStartsWith, true),
    ("endswith", Op::EndsWith, true),
    ("regex", Op::Regex, true),
];
const NUM_OPS: &[(&str, Op)] = &[("<=", Op::Le), ("<", Op::Lt), (">=", Op::Ge), (">", Op::Gt)];
const LIST_OPS: &[(&str, Op)] = &[
    ("intersects", Op::Intersects),
    ("in", Op::In),
    ("pmatch", Op::PMatch),
];

impl<'a> Parser<'a> {
    fn err(&self, msg: &str) -> ParseError {
        ParseError {
            message: msg.to_owned(),
            offset: self.pos,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn rest(&self) -> &'a [u8] {
        &self.s[self.pos.min(self.s.len())..]
    }

    fn blank(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n' | 0x08)) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn lit(&mut self, t: &str) -> bool {
        if self.rest().starts_with(t.as_bytes()) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }

    /// A keyword (`and`, `or`, `not`) followed by a blank or `(`; consumes only the keyword.
    fn keyword(&mut self, kw: &str) -> bool {
        let r = self.rest();
        if r.starts_with(kw.as_bytes())
            && matches!(
                r.get(kw.len()),
                Some(b' ' | b'\t' | b'\r' | b'\n' | 0x08 | b'(')
            )
        {
            self.pos += kw.len();
            true
        } else {
            false
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("condition is nested too deeply"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let mut children = vec![self.and()?];
        self.blank();
        while self.keyword("or") {
            self.blank();
            children.push(self.and()?);
            self.blank();
        }
        self.depth -= 1;
        Ok(if children.len() == 1 {
            children.pop().unwrap_or(Expr::Const(false))
        } else {
            Expr::Or(children)
        })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut children = vec![self.not()?];
        self.blank();
        while self.keyword("and") {
            self.blank();
            children.push(self.not()?);
            self.blank();
        }
        Ok(if children.len() == 1 {
            children.pop().unwrap_or(Expr::Const(false))
        } else {
            Expr::And(children)
        })
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        self.blank();
        let mut negate = false;
        let mut levels = 0;
        while self.keyword("not") {
            negate = !negate;
            levels += 1;
            self.enter()?;
            self.blank();
        }
        let e = self.check()?;
        self.depth -= levels;
        Ok(if negate { Expr::Not(Box::new(e)) } else { e })
    }

    fn embedded(&mut self) -> Result<Expr, ParseError> {
        self.blank();
        let e = self.or()?;
        self.blank();
        if !self.lit(")") {
            return Err(self.err("expected a ')' token"));
        }
        Ok(e)
    }

    fn check(&mut self) -> Result<Expr, ParseError> {
        self.blank();
        let start = self.pos;
        if self.lit("(") {
            return self.embedded();
        }
        if let Some(left) = self.try_operand()? {
            return self.condition(left, start);
        }
        if let Some(id) = self.identifier() {
            return Ok(Expr::Macro {
                name: id.to_owned(),
                offset: start,
            });
        }
        Err(self.err("expected a '(' token, a field check, or an identifier"))
    }

    /// `[a-zA-Z]+[a-zA-Z0-9_]*`
    fn identifier(&mut self) -> Option<&'a str> {
        let r = self.rest();
        let mut n = r.iter().take_while(|c| c.is_ascii_alphabetic()).count();
        if n == 0 {
            return None;
        }
        n += r[n..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count();
        let s = &self.src[self.pos..self.pos + n];
        self.pos += n;
        Some(s)
    }

    /// `ident(.ident)+`, where each segment after the first may also start with a digit or `_`
    /// only if the first character is a letter (Falco: `[a-zA-Z]+[a-zA-Z0-9_]*`).
    fn field_name(&mut self) -> Option<&'a str> {
        let start = self.pos;
        self.identifier()?;
        let mut segments = 1;
        loop {
            let save = self.pos;
            if self.lit(".") && self.identifier().is_some() {
                segments += 1;
            } else {
                self.pos = save;
                break;
            }
        }
        if segments < 2 {
            self.pos = start;
            return None;
        }
        Some(&self.src[start..self.pos])
    }

    fn field_arg(&mut self) -> Result<Option<String>, ParseError> {
        if !self.lit("[") {
            return Ok(None);
        }
        let arg = if let Some(q) = self.quoted()? {
            q
        } else {
            let r = self.rest();
            let n = r
                .iter()
                .take_while(|c| {
                    !matches!(c, b'[' | b']' | b'"' | b'\'') && !c.is_ascii_whitespace()
                })
                .count();
            if n == 0 {
                return Err(
                    self.err("expected a valid field argument: a quoted string or a bare string")
                );
            }
            let s = self.src[self.pos..self.pos + n].to_owned();
            self.pos += n;
            s
        };
        if !self.lit("]") {
            return Err(self.err("expected a ']' token"));
        }
        Ok(Some(arg))
    }

    fn transformer(&mut self) -> Option<Transformer> {
        Transformer::ALL
            .into_iter()
            .find(|&t| t != Transformer::Val && self.lit(t.open_token()))
    }

    fn try_operand(&mut self) -> Result<Option<Operand>, ParseError> {
        let start = self.pos;
        if let Some(name) = self.field_name() {
            let arg = self.field_arg()?;
            return Ok(Some(Operand::Field {
                name: name.to_owned(),
                arg,
                offset: start,
            }));
        }
        if let Some(t) = self.transformer() {
            self.enter()?;
            self.blank();
            let inner = match self.try_operand()? {
                Some(o) => o,
                None => return Err(self.err("expected a field or a nested transformer")),
            };
            self.blank();
            if !self.lit(")") {
                return Err(self.err("expected a ')' token closing the transformer"));
            }
            self.depth -= 1;
            return Ok(Some(Operand::Transform(t, Box::new(inner))));
        }
        Ok(None)
    }

    fn condition(&mut self, left: Operand, start: usize) -> Result<Expr, ParseError> {
        self.blank();
        let op_offset = self.pos;
        if self.op_word("exists") {
            return Ok(Expr::Check {
                left,
                op: Op::Exists,
                rhs: Rhs::None,
                offset: start,
                op_offset,
            });
        }
        for (t, op) in NUM_OPS {
            if self.lit(t) {
                self.blank();
                let rhs = match self.try_value_transformer()? {
                    Some(o) => Rhs::Field(o),
                    None => Rhs::Value(self.number()?),
                };
                return Ok(Expr::Check {
                    left,
                    op: *op,
                    rhs,
                    offset: start,
                    op_offset,
                });
            }
        }
        for (t, op, word) in STR_OPS {
            let ok = if *word { self.op_word(t) } else { self.lit(t) };
            if ok {
                let had_blank = self.blank();
                if had_blank && let Some(m) = self.modifier() {
                    let list = self.list_value()?;
                    return Ok(Expr::Check {
                        left,
                        op: *op,
                        rhs: Rhs::Modified(m, Box::new(list)),
                        offset: start,
                        op_offset,
                    });
                }
                let rhs = match self.try_value_transformer()? {
                    Some(o) => Rhs::Field(o),
                    None => Rhs::Value(self.str_value()?),
                };
                return Ok(Expr::Check {
                    left,
                    op: *op,
                    rhs,
                    offset: start,
                    op_offset,
                });
            }
        }
        for (t, op) in LIST_OPS {
            if self.lit(t) {
                self.blank();
                let rhs = self.list_value()?;
                return Ok(Expr::Check {
                    left,
                    op: *op,
                    rhs,
                    offset: start,
                    op_offset,
                });
            }
        }
        Err(self.err(
            "expected a valid check operator: one of '=', '==', '!=', '<', '<=', '>', '>=', \
             'contains', 'icontains', 'bcontains', 'startswith', 'bstartswith', 'endswith', \
             'glob', 'iglob', 'regex', 'in', 'intersects', 'pmatch', 'exists'",
        ))
    }

    /// A list modifier (libs: `'oneof ' | 'anyof ' | 'allof '`), taken only when a blank and
    /// then a list value (`(` or an identifier other than `and`/`or`/`not`) follow it;
    /// otherwise nothing is consumed and the word is an ordinary value.
    fn modifier(&mut self) -> Option<Modifier> {
        let save = self.pos;
        for m in Modifier::ALL {
            if self.lit(m.as_str()) && self.blank() {
                let r = self.rest();
                let keyword = ["and", "or", "not"].iter().any(|k| {
                    r.starts_with(k.as_bytes())
                        && !r.get(k.len()).is_some_and(|c| c.is_ascii_alphanumeric())
                });
                let list_follows =
                    r.first() == Some(&b'(') || r.first().is_some_and(u8::is_ascii_alphabetic);
                if list_follows && !keyword {
                    return Some(m);
                }
            }
            self.pos = save;
        }
        None
    }

    /// A word operator: the word followed by a blank (or the end, for `exists`).
    fn op_word(&mut self, w: &str) -> bool {
        let r = self.rest();
        if r.starts_with(w.as_bytes()) {
            match r.get(w.len()) {
                None => {
                    self.pos += w.len();
                    true
                }
                Some(c)
                    if c.is_ascii_whitespace() || *c == 0x08 || (w == "exists" && *c == b')') =>
                {
                    self.pos += w.len();
                    true
                }
                _ => false,
            }
        } else {
            false
        }
    }

    fn try_value_transformer(&mut self) -> Result<Option<Operand>, ParseError> {
        if self.lit("val(") {
            self.blank();
            let start = self.pos;
            let Some(name) = self.field_name() else {
                return Err(self.err("expected a field within 'val' transformer"));
            };
            let arg = self.field_arg()?;
            self.blank();
            if !self.lit(")") {
                return Err(self.err("expected a ')' token closing the transformer"));
            }
            return Ok(Some(Operand::Transform(
                Transformer::Val,
                Box::new(Operand::Field {
                    name: name.to_owned(),
                    arg,
                    offset: start,
                }),
            )));
        }
        let save = self.pos;
        if self.transformer().is_some() {
            self.pos = save;
            return self.try_operand();
        }
        Ok(None)
    }

    fn quoted(&mut self) -> Result<Option<String>, ParseError> {
        let Some(delim @ (b'"' | b'\'')) = self.peek() else {
            return Ok(None);
        };
        let start = self.pos;
        let mut out = Vec::new();
        let mut i = self.pos + 1;
        while i < self.s.len() {
            let c = self.s[i];
            if c == delim {
                self.pos = i + 1;
                return Ok(Some(String::from_utf8_lossy(&out).into_owned()));
            }
            if c == b'\\' {
                let Some(&e) = self.s.get(i + 1) else { break };
                match e {
                    b'b' => out.push(0x08),
                    b'f' => out.push(0x0c),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b' ' | b'\\' => out.push(b'\\'),
                    b'/' => out.push(b'/'),
                    b'"' | b'\'' => out.push(e),
                    _ => {
                        self.pos = i;
                        return Err(self.err("invalid escape sequence in quoted string"));
                    }
                }
                i += 2;
                continue;
            }
            out.push(c);
            i += 1;
        }
        self.pos = start;
        Err(self.err("unterminated quoted string"))
    }

    /// `[^()"'\s=,]+`
    fn bare_str(&mut self) -> Option<String> {
        let n = self
            .rest()
            .iter()
            .take_while(|c| {
                !matches!(c, b'(' | b')' | b'"' | b'\'' | b'=' | b',') && !c.is_ascii_whitespace()
            })
            .count();
        if n == 0 {
            return None;
        }
        let s = self.src.get(self.pos..self.pos + n)?.to_owned();
        self.pos += n;
        Some(s)
    }

    fn str_value(&mut self) -> Result<Lit, ParseError> {
        let at = self.pos;
        if let Some(q) = self.quoted()? {
            return Ok(Lit::quoted(q, at));
        }
        if let Some(b) = self.bare_str() {
            return Ok(Lit::bare(b, at));
        }
        Err(self.err("expected a string value"))
    }

    fn number(&mut self) -> Result<Lit, ParseError> {
        let r = self.rest();
        let mut n = 0;
        if r.starts_with(b"0x") || r.starts_with(b"0X") {
            n = 2 + r[2..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
            if n == 2 {
                n = 0;
            }
        }
        if n == 0 {
            if matches!(r.first(), Some(b'+' | b'-')) {
                n = 1;
            }
            let digits = r[n..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return Err(self.err("expected a number value"));
            }
            n += digits;
            if r.get(n) == Some(&b'.') {
                n += 1 + r[n + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            }
        }
        let s = self.src[self.pos..self.pos + n].to_owned();
        let at = self.pos;
        self.pos += n;
        Ok(Lit::bare(s, at))
    }

    fn list_value(&mut self) -> Result<Rhs, ParseError> {
        if self.lit("(") {
            let mut items = Vec::new();
            self.blank();
            if !self.lit(")") {
                loop {
                    self.blank();
                    items.push(self.str_value()?);
                    self.blank();
                    if self.lit(",") {
                        continue;
                    }
                    if self.lit(")") {
                        break;
                    }
                    return Err(self.err("expected a ')' token"));
                }
            }
            return Ok(Rhs::List(items));
        }
        if let Some(o) = self.try_value_transformer()? {
            return Ok(Rhs::Field(o));
        }
        let at = self.pos;
        if let Some(id) = self.identifier() {
            return Ok(Rhs::ListRef(id.to_owned(), at));
        }
        Err(self.err("expected a list or an identifier"))
    }
}
