//! Text helpers shared by templates and outputs: escaping for JSON strings and Slack mrkdwn,
//! truncation on character boundaries, one-line JSON, and the PagerDuty severity of a priority.

use aerie_alert::Priority;

/// Escape text for the inside of a JSON string literal.
pub fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    push_json_escaped(&mut out, s);
    out
}

fn push_json_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Other control characters, and the JS line separators some parsers reject.
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
}

/// Slack mrkdwn control characters: `&`, `<`, `>` (Slack's documented escapes).
pub fn mrkdwn_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// mrkdwn-escape, then JSON-escape.
pub fn slack_escape(s: &str) -> String {
    json_escape(&mrkdwn_escape(s))
}

/// PagerDuty Events API v2 severity.
pub fn pagerduty_severity(p: Priority) -> &'static str {
    match p {
        Priority::Emergency | Priority::Alert | Priority::Critical => "critical",
        Priority::Error => "error",
        Priority::Warning => "warning",
        Priority::Notice | Priority::Informational | Priority::Debug => "info",
    }
}

/// Cut to at most `max` characters, ending with `…` when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some(_) if max == 0 => String::new(),
        Some(_) => {
            let cut = s.char_indices().nth(max - 1).map(|(i, _)| i).unwrap_or(0);
            let mut out = s[..cut].to_owned();
            out.push('…');
            out
        }
    }
}

/// Raw newlines can only sit between JSON tokens (escaping covers strings), so replacing them
/// keeps the JSON valid and makes it one line.
pub fn one_line(s: &str) -> Vec<u8> {
    s.bytes()
        .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b })
        .collect()
}

/// A JSON body for webhook/file/stdout: must parse; file and stdout also need one line.
pub fn json_body(rendered: &str) -> Result<Vec<u8>, String> {
    let trimmed = rendered.trim();
    serde_json::from_str::<serde::de::IgnoredAny>(trimmed)
        .map_err(|e| format!("template rendered invalid JSON: {e}"))?;
    Ok(one_line(trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn slack_escape_defuses_mentions_links_and_json() {
        let s = slack_escape("<!channel> <http://evil|click> \"q\" \n\u{1} é");
        assert!(!s.contains('<') && !s.contains('>'));
        assert_eq!(
            s,
            "&lt;!channel&gt; &lt;http://evil|click&gt; \\\"q\\\" \\n\\u0001 é"
        );
        let v: Value = serde_json::from_str(&format!("\"{s}\"")).unwrap();
        assert!(v.as_str().unwrap().starts_with("&lt;!channel&gt;"));
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate_chars("héllo", 10), "héllo");
        assert_eq!(truncate_chars("héllo", 3), "hé…");
        assert_eq!(truncate_chars("héllo", 3).chars().count(), 3);
        assert_eq!(truncate_chars("ab", 0), "");
    }

    #[test]
    fn json_lines_are_single_lines() {
        assert_eq!(json_body("\n{\"a\":\n 1}\n").unwrap(), b"{\"a\":  1}");
        assert!(json_body("{oops").is_err());
    }
}
