//! "Did you mean …" suggestions for misspelt names: the closest candidate by edit distance
//! (optimal string alignment, so a swap of two neighbours such as `opneat` counts as one edit).

/// The candidate closest to `word`, if one is close enough to be a plausible typo: at most
/// two edits, and fewer edits than half the word's length. Ties go to the first candidate.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = 2.min(word.chars().count().saturating_sub(1) / 2).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        if c == word {
            continue;
        }
        let d = distance(word, c);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// `message` followed by ` Did you mean 'X'?` when a close candidate exists.
pub fn with_hint<'a>(
    message: String,
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    match closest(word, candidates) {
        Some(c) => format!("{message}. Did you mean '{c}'?"),
        None => message,
    }
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions), by bytes.
fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len().abs_diff(b.len()) > 2 {
        return usize::MAX;
    }
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_and_non_typos() {
        assert_eq!(
            closest("opneat", ["open", "openat", "openat2"]),
            Some("openat")
        );
        assert_eq!(
            closest("proc.nme", ["proc.name", "proc.pname"]),
            Some("proc.name")
        );
        assert_eq!(closest("flgs", ["flags", "fd"]), Some("flags"));
        assert_eq!(closest("xyzzy", ["openat", "execve"]), None);
        assert_eq!(closest("ab", ["cd"]), None);
    }
}
