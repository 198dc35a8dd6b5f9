//! A YAML tree that remembers where each node was written (line and column), built
//! iteratively from yaml-rust2's event parser so hostile nesting cannot overflow the stack.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

/// Where a node starts: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub line: usize,
    pub column: usize,
}

/// A YAML node and its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub mark: Mark,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `~`, `null` or nothing.
    Null,
    /// A scalar; `plain` is false for quoted and block scalars (`"true"` is text, `true` a bool).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// The YAML text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub message: String,
    pub mark: Mark,
}

/// Deepest nesting of sequences and mappings accepted.
pub const MAX_NESTING: usize = 128;
/// Most nodes one document may expand to (bounds alias expansion, "billion laughs").
pub const MAX_NODES: usize = 2_000_000;

impl Node {
    /// The value for `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }

    /// Keys of a mapping, in order.
    pub fn keys(&self) -> impl Iterator<Item = &Node> {
        let entries: &[(Node, Node)] = match &self.kind {
            Kind::Map(e) => e,
            _ => &[],
        };
        entries.iter().map(|(k, _)| k)
    }

    /// A short name for the node's kind, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Scalar { .. } => "scalar",
            Kind::Seq(_) => "sequence",
            Kind::Map(_) => "mapping",
        }
    }
}

impl Node {
    /// The node as JSON: plain scalars become numbers, bools and nulls where YAML reads
    /// them so; quoted scalars stay strings; mapping keys become strings.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.kind {
            Kind::Null => J::Null,
            Kind::Scalar { text, plain } => {
                if !*plain {
                    return J::String(text.clone());
                }
                match text.as_str() {
                    "true" | "True" | "TRUE" => return J::Bool(true),
                    "false" | "False" | "FALSE" => return J::Bool(false),
                    _ => {}
                }
                if let Ok(i) = text.parse::<i64>() {
                    return J::from(i);
                }
                if let Ok(u) = text.parse::<u64>() {
                    return J::from(u);
                }
                if text.contains('.')
                    && let Ok(f) = text.parse::<f64>()
                    && let Some(n) = serde_json::Number::from_f64(f)
                {
                    return J::Number(n);
                }
                J::String(text.clone())
            }
            Kind::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let key = match &k.kind {
                            Kind::Scalar { text, .. } => text.clone(),
                            Kind::Null => String::new(),
                            _ => k.to_json().to_string(),
                        };
                        (key, v.to_json())
                    })
                    .collect(),
            ),
        }
    }
}

fn mark_of(m: &yaml_rust2::scanner::Marker) -> Mark {
    Mark {
        line: m.line(),
        column: m.col() + 1,
    }
}

enum Frame {
    Seq(Mark, usize, Vec<Node>),
    Map(Mark, usize, Vec<(Node, Node)>, Option<Node>),
}

/// Parse every document of a YAML stream.
///
/// yaml-rust2 follows YAML 1.2 strictly and rejects a flow collection closed by a bracket
/// less indented than its content (`items: [` ... `  ]`), which yaml-cpp (Falco) accepts and
/// Falco's own files use. On that error the text is parsed once more with such closing
/// lines indented like the line before them; whitespace inside a flow collection carries
/// no meaning, so the result is the same document.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, YamlError> {
    match parse_strict(text) {
        Err(e) if e.message.starts_with("invalid indentation") => {
            let relaxed = indent_closing_brackets(text);
            if relaxed == text {
                return Err(e);
            }
            parse_strict(&relaxed).map_err(|_| e)
        }
        other => other,
    }
}

/// Indent lines holding only `]` or `}` (and maybe `,`) like the previous non-blank line.
fn indent_closing_brackets(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut prev_indent = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start_matches(' ');
        let body = trimmed.trim_end();
        let indent = line.len() - trimmed.len();
        if matches!(body, "]" | "}" | "]," | "},") && indent < prev_indent {
            out.extend(std::iter::repeat_n(' ', prev_indent - indent));
        } else if !body.is_empty() {
            prev_indent = indent;
        }
        out.push_str(line);
    }
    out
}

fn parse_strict(text: &str) -> Result<Vec<Node>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut nodes = 0usize;
    let mut doc_root: Option<Node> = None;
    loop {
        let (ev, marker) = parser.next_token().map_err(|e| YamlError {
            message: e.info().to_owned(),
            mark: mark_of(e.marker()),
        })?;
        let mark = mark_of(&marker);
        let too_big = |mark| YamlError {
            message: "document too large (alias expansion or node count over the limit)".into(),
            mark,
        };
        let node = match ev {
            Event::StreamEnd => break,
            Event::StreamStart | Event::Nothing => continue,
            Event::DocumentStart => {
                anchors.clear();
                continue;
            }
            Event::DocumentEnd => {
                docs.push(doc_root.take().unwrap_or(Node {
                    mark,
                    kind: Kind::Null,
                }));
                continue;
            }
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= MAX_NESTING {
                    return Err(YamlError {
                        message: format!("nesting deeper than {MAX_NESTING} levels"),
                        mark,
                    });
                }
                stack.push(Frame::Seq(mark, anchor, Vec::new()));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_NESTING {
                    return Err(YamlError {
                        message: format!("nesting deeper than {MAX_NESTING} levels"),
                        mark,
                    });
                }
                stack.push(Frame::Map(mark, anchor, Vec::new(), None));
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(m, anchor, items)) => {
                    let n = Node {
                        mark: m,
                        kind: Kind::Seq(items),
                    };
                    if anchor > 0 {
                        anchors.insert(anchor, n.clone());
                    }
                    n
                }
                _ => {
                    return Err(YamlError {
                        message: "unbalanced sequence end".into(),
                        mark,
                    });
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(m, anchor, entries, _)) => {
                    let n = Node {
                        mark: m,
                        kind: Kind::Map(entries),
                    };
                    if anchor > 0 {
                        anchors.insert(anchor, n.clone());
                    }
                    n
                }
                _ => {
                    return Err(YamlError {
                        message: "unbalanced mapping end".into(),
                        mark,
                    });
                }
            },
            Event::Scalar(text, style, anchor, _) => {
                let plain = style == TScalarStyle::Plain;
                let kind = if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Kind::Null
                } else {
                    Kind::Scalar { text, plain }
                };
                let n = Node { mark, kind };
                if anchor > 0 {
                    anchors.insert(anchor, n.clone());
                }
                n
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => {
                    nodes += count_nodes(n, MAX_NODES);
                    if nodes > MAX_NODES {
                        return Err(too_big(mark));
                    }
                    Node {
                        mark,
                        kind: n.kind.clone(),
                    }
                }
                None => {
                    return Err(YamlError {
                        message: "unknown alias".into(),
                        mark,
                    });
                }
            },
        };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(too_big(mark));
        }
        match stack.last_mut() {
            None => doc_root = Some(node),
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(m, _, entries, key)) => match key.take() {
                None => {
                    // A block mapping's start event points past its first key; use the key.
                    if entries.is_empty() {
                        *m = node.mark;
                    }
                    *key = Some(node)
                }
                Some(k) => entries.push((k, node)),
            },
        }
    }
    if let Some(root) = doc_root.take() {
        docs.push(root);
    }
    Ok(docs)
}

/// Nodes in a tree, counting no further than `limit` (iterative).
fn count_nodes(n: &Node, limit: usize) -> usize {
    let mut count = 0;
    let mut todo = vec![n];
    while let Some(n) = todo.pop() {
        count += 1;
        if count > limit {
            return count;
        }
        match &n.kind {
            Kind::Seq(items) => todo.extend(items.iter()),
            Kind::Map(entries) => {
                for (k, v) in entries {
                    todo.push(k);
                    todo.push(v);
                }
            }
            _ => {}
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_line_and_column() {
        let docs = parse_documents("- list: a\n  items: [x, \"y\"]\n- macro: m\n").unwrap();
        assert_eq!(docs.len(), 1);
        let Kind::Seq(items) = &docs[0].kind else {
            panic!("not a sequence")
        };
        assert_eq!(items[1].mark, Mark { line: 3, column: 3 });
        let list = items[0].get("items").unwrap();
        assert_eq!(list.mark.line, 2);
        let Kind::Seq(v) = &list.kind else { panic!() };
        assert_eq!(v[1].as_str(), Some("y"));
    }

    #[test]
    fn errors_have_positions_and_nesting_is_bounded() {
        let e = parse_documents("- a: [1, 2\n- b").unwrap_err();
        assert!(e.mark.line >= 1);
        let deep = "[".repeat(10_000);
        assert!(parse_documents(&deep).is_err());
    }

    #[test]
    fn closing_brackets_may_be_less_indented() {
        let docs = parse_documents("- list: a\n  items: [\n    \"x\",\n    \"y\"\n  ]\n").unwrap();
        let Kind::Seq(items) = &docs[0].kind else {
            panic!()
        };
        let Kind::Seq(v) = &items[0].get("items").unwrap().kind else {
            panic!()
        };
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn aliases_expand_within_limits() {
        let docs = parse_documents("a: &x [1, 2]\nb: *x\n").unwrap();
        let Kind::Seq(v) = &docs[0].get("b").unwrap().kind else {
            panic!()
        };
        assert_eq!(v.len(), 2);
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..9 {
            let prev = if i == 0 { 'a' } else { (b'a' + i) as char };
            let cur = (b'a' + i + 1) as char;
            bomb += &format!(
                "{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            );
        }
        assert!(parse_documents(&bomb).is_err());
    }
}
