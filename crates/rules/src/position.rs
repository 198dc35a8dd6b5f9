//! Where a token inside a YAML scalar is written: an offset in a condition's or output's text
//! mapped back to its line and column in the file, through quotes, escapes, and the line
//! folding and indentation of multi-line plain and `>`/`|` block scalars.

/// How the scalar is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
}

/// The 1-based line and column of the character at byte `offset` of `value`, a scalar whose
/// node starts at `line`:`column` (1-based) in `source`. `None` when the text cannot be
/// followed through the source (then the caller falls back to a plainer estimate).
pub fn locate(
    source: &str,
    line: usize,
    column: usize,
    value: &str,
    offset: usize,
) -> Option<(usize, usize)> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let line_start = if line <= 1 {
        0
    } else {
        source
            .match_indices('\n')
            .nth(line - 2)
            .map(|(i, _)| i + 1)?
    };
    let node = line_start
        + source[line_start..]
            .char_indices()
            .nth(column.checked_sub(1)?)
            .map(|(i, _)| i)?;
    let (style, start) = match source[node..].chars().next()? {
        '"' => (Style::Double, node + 1),
        '\'' => (Style::Single, node + 1),
        // Block scalars: the content starts on the next line.
        '|' | '>' => (Style::Plain, node + source[node..].find('\n')? + 1),
        _ => (Style::Plain, node),
    };
    let target = value.get(..offset)?;
    let token_first = value.get(offset..)?.chars().next()?;
    let mut s = source[start..].char_indices().peekable();
    let mut t = target.chars().peekable();
    while let Some(&c) = t.peek() {
        if c.is_whitespace() {
            // A run of blanks in the value is a run of blanks, line breaks and indentation
            // in the source (folding). (An escaped blank such as `\t` is followed by the
            // escape branch below only when the source has no blank there.)
            while t.peek().is_some_and(|c| c.is_whitespace()) {
                t.next();
            }
            while s.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                s.next();
            }
            continue;
        }
        let &(_, sc) = s.peek()?;
        if sc == c && !(style == Style::Double && sc == '\\') {
            s.next();
            t.next();
        } else if sc.is_whitespace() {
            // Indentation of a block's first line, or a line break folded away.
            s.next();
        } else if style == Style::Double && sc == '\\' {
            // One escape (`\"`, `\\`, `\n`, ...) is one character of the value.
            s.next();
            s.next()?;
            t.next();
        } else if style == Style::Single && sc == '\'' {
            // `''` is one `'`.
            s.next();
            s.next()?;
            t.next();
        } else {
            return None;
        }
    }
    while s.peek().is_some_and(|(_, c)| c.is_whitespace()) {
        s.next();
    }
    let at = start + s.peek().map_or(source.len() - start, |(i, _)| *i);
    let first = source[at..].chars().next()?;
    if first != token_first && !(style == Style::Double && first == '\\') {
        return None;
    }
    let before = &source[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, col))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_quoted_and_block_scalars() {
        let src = "- rule: r\n  condition: a and bad\n  output: \"x \\\"q\\\" %bad\"\n";
        assert_eq!(locate(src, 2, 14, "a and bad", 6), Some((2, 20)));
        assert_eq!(locate(src, 3, 11, "x \"q\" %bad", 6), Some((3, 20)));
        let src = "- macro: m\n  condition: >\n    a and\n      b or\n    evt.type = bad\n";
        let v = "a and\n  b or\nevt.type = bad\n";
        assert_eq!(locate(src, 2, 14, v, v.find("bad").unwrap()), Some((5, 16)));
        let folded = "a and b or evt.type = bad\n";
        assert_eq!(
            locate(src, 2, 14, folded, folded.find("bad").unwrap()),
            Some((5, 16))
        );
        assert_eq!(
            locate("x: 'it''s bad'\n", 1, 4, "it's bad", 5),
            Some((1, 11))
        );
        // Text that is not there: no guess.
        assert_eq!(locate(src, 2, 14, "zzz", 1), None);
    }
}
