//! Where each key of a YAML document is: `outputs[1].min_priority` → line 7. The `config`
//! crate forgets positions, so errors about a key (unknown, misspelt, wrong type, invalid
//! value) are located here by the key's path instead of by searching for its text, which
//! finds the first `min_priority:` of the file rather than the one in the output at fault.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Lines (1-based) of every mapping key and sequence item, by path.
#[derive(Debug, Default, Clone)]
pub struct KeyLines {
    lines: HashMap<String, usize>,
}

enum Frame {
    /// A mapping: its path, and the key whose value comes next.
    Map(String, Option<String>),
    /// A sequence: its path and the index of the next item.
    Seq(String, usize),
}

#[derive(Default)]
struct Collector {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Collector {
    /// The path of the node that starts now (the value of a key, or the next sequence item),
    /// recording its line; `None` when the node is a mapping key.
    fn enter(&mut self, line: usize) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map(base, key)) => key.take().map(|k| join(base, &k)),
            Some(Frame::Seq(base, i)) => {
                let p = format!("{base}[{i}]");
                *i += 1;
                self.lines.entry(p.clone()).or_insert(line);
                Some(p)
            }
        }
    }
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}.{key}")
    }
}

impl MarkedEventReceiver for Collector {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(text, ..) => {
                if let Some(Frame::Map(base, key @ None)) = self.stack.last_mut() {
                    self.lines.entry(join(base, &text)).or_insert(line);
                    *key = Some(text);
                } else {
                    self.enter(line);
                }
            }
            Event::Alias(_) => {
                self.enter(line);
            }
            Event::MappingStart(..) => {
                let path = self.enter(line).unwrap_or_default();
                self.stack.push(Frame::Map(path, None));
            }
            Event::SequenceStart(..) => {
                let path = self.enter(line).unwrap_or_default();
                self.stack.push(Frame::Seq(path, 0));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl KeyLines {
    /// Index `text`; a document that does not parse gives an empty index (the parse error
    /// itself carries the line).
    pub fn new(text: &str) -> KeyLines {
        let mut c = Collector::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut c, false).is_err() {
            return KeyLines::default();
        }
        KeyLines { lines: c.lines }
    }

    /// The line of `path` (`outputs[1].rate_limit`, `routes[0].match.rule`), or of its nearest
    /// ancestor that is in the document.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(&l) = self.lines.get(p) {
                return Some(l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// The line of `path` itself only.
    pub fn exact(&self, path: &str) -> Option<usize> {
        self.lines.get(path).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_items_have_their_own_lines() {
        let text = "listen: x\noutputs:\n  - name: a\n    min_priority: warning\n  - name: b\n    rate_limit: fast\n    retry:\n      max_attempts: 3\n  - {name: c, min_priorty: x}\nroutes:\n  - match: { rule: r }\n    outputs: [a, b]\n";
        let k = KeyLines::new(text);
        assert_eq!(k.exact("listen"), Some(1));
        assert_eq!(k.exact("outputs[0].min_priority"), Some(4));
        assert_eq!(k.exact("outputs[1]"), Some(5));
        assert_eq!(k.exact("outputs[1].rate_limit"), Some(6));
        assert_eq!(k.exact("outputs[1].retry.max_attempts"), Some(8));
        assert_eq!(k.exact("outputs[2].min_priorty"), Some(9));
        assert_eq!(k.exact("routes[0].match.rule"), Some(11));
        assert_eq!(k.exact("routes[0].outputs[1]"), Some(12));
        // An absent key falls back to its nearest ancestor.
        assert_eq!(k.line("outputs[1].retry.initial_backoff"), Some(7));
        assert_eq!(k.line("nothing.here"), None);
    }
}
