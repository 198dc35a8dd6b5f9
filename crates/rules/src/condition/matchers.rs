//! Value matchers used by compiled checks: glob, path prefixes, literal sets, fast hashing.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// A small, fast, non-cryptographic hasher (FxHash) for short keys on the per-event path.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h.rotate_left(5) ^ v).wrapping_mul(SEED);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(SEED);
        }
        self.0 = h;
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(SEED);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(SEED);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;
pub type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuild>;

/// A set of literal byte strings: a short list is scanned, a long one hashed.
#[derive(Debug, Clone)]
pub enum TextSet {
    Small(Vec<Box<[u8]>>),
    Hashed(HashSet<Box<[u8]>, FxBuild>),
}

const SMALL_SET: usize = 6;

impl TextSet {
    pub fn new(items: impl IntoIterator<Item = Vec<u8>>) -> Self {
        let mut v: Vec<Box<[u8]>> = items.into_iter().map(Vec::into_boxed_slice).collect();
        v.sort();
        v.dedup();
        if v.len() <= SMALL_SET {
            TextSet::Small(v)
        } else {
            TextSet::Hashed(v.into_iter().collect())
        }
    }

    #[inline]
    pub fn contains(&self, s: &[u8]) -> bool {
        match self {
            TextSet::Small(v) => v.iter().any(|i| **i == *s),
            TextSet::Hashed(h) => h.contains(s),
        }
    }

    /// The members, in no particular order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = &[u8]> + '_> {
        match self {
            TextSet::Small(v) => Box::new(v.iter().map(|b| &**b)),
            TextSet::Hashed(h) => Box::new(h.iter().map(|b| &**b)),
        }
    }
}

/// Path prefixes for `pmatch`: a value matches a prefix when it equals it or continues it
/// with a `/` (whole path components only).
#[derive(Debug, Clone)]
pub struct PathSet(Vec<Box<[u8]>>);

impl PathSet {
    pub fn new(items: impl IntoIterator<Item = Vec<u8>>) -> Self {
        PathSet(
            items
                .into_iter()
                .map(|mut p| {
                    while p.len() > 1 && p.last() == Some(&b'/') {
                        p.pop();
                    }
                    p.into_boxed_slice()
                })
                .collect(),
        )
    }

    /// The prefixes, without trailing `/`.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(|b| &**b)
    }

    pub fn matches(&self, path: &[u8]) -> bool {
        self.0.iter().any(|p| {
            if **p == *b"/" {
                return path.first() == Some(&b'/');
            }
            path.starts_with(p) && (path.len() == p.len() || path[p.len()] == b'/')
        })
    }
}

/// Shell-style glob where `*` also crosses `/` (Falco's `glob`): `*`, `?`, `[abc]`, `[a-z]`,
/// `[!x]` and `\` escapes.
pub fn glob_match(pat: &[u8], text: &[u8], icase: bool) -> bool {
    let eq = |a: u8, b: u8| {
        if icase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pat, p, text[t], icase) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if eq(b'[', text[t]) {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pat.len() => {
                    if eq(pat[p + 1], text[t]) {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if eq(c, text[t]) {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// Match a `[...]` class at `pat[p]`; returns (matched, index after the class), or None
/// when the class is not closed (then `[` is literal).
fn class_match(pat: &[u8], p: usize, c: u8, icase: bool) -> Option<(bool, usize)> {
    let mut i = p + 1;
    let negate = matches!(pat.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    let c_l = c.to_ascii_lowercase();
    while i < pat.len() {
        let mut lo = pat[i];
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if lo == b'\\' && i + 1 < pat.len() {
            i += 1;
            lo = pat[i];
        }
        let mut hi = lo;
        if i + 2 < pat.len() && pat[i + 1] == b'-' && pat[i + 2] != b']' {
            hi = pat[i + 2];
            i += 2;
        }
        if (lo..=hi).contains(&c)
            || (icase && (lo.to_ascii_lowercase()..=hi.to_ascii_lowercase()).contains(&c_l))
        {
            matched = true;
        }
        i += 1;
    }
    None
}

/// ASCII case-insensitive substring search; `needle` must already be lower-case.
pub fn icontains(hay: &[u8], needle_lower: &[u8]) -> bool {
    if needle_lower.is_empty() {
        return true;
    }
    if hay.len() < needle_lower.len() {
        return false;
    }
    let first = needle_lower[0];
    (0..=hay.len() - needle_lower.len()).any(|i| {
        hay[i].to_ascii_lowercase() == first
            && hay[i..i + needle_lower.len()]
                .iter()
                .zip(needle_lower)
                .all(|(a, b)| a.to_ascii_lowercase() == *b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_star_crosses_slashes() {
        assert!(glob_match(b"/etc/*", b"/etc/ssh/sshd_config", false));
        assert!(glob_match(b"*.sh", b"/tmp/x/run.sh", false));
        assert!(!glob_match(b"/etc/*.conf", b"/etc/x.cfg", false));
        assert!(glob_match(b"/dev/tty[0-9]", b"/dev/tty3", false));
        assert!(!glob_match(b"/dev/tty[!0-9]", b"/dev/tty3", false));
        assert!(glob_match(b"a?c", b"abc", false));
        assert!(glob_match(b"A*", b"abc", true));
        assert!(!glob_match(b"A*", b"abc", false));
        assert!(glob_match(b"a\\*", b"a*", false));
        assert!(!glob_match(b"a\\*", b"ab", false));
    }

    #[test]
    fn pmatch_takes_whole_components() {
        let s = PathSet::new([b"/etc".to_vec(), b"/var/lib/".to_vec()]);
        assert!(s.matches(b"/etc"));
        assert!(s.matches(b"/etc/passwd"));
        assert!(!s.matches(b"/etcd/x"));
        assert!(s.matches(b"/var/lib/x"));
        assert!(!s.matches(b"/var/library"));
    }

    #[test]
    fn text_sets_small_and_hashed() {
        let small = TextSet::new([b"a".to_vec(), b"b".to_vec()]);
        assert!(small.contains(b"a") && !small.contains(b"c"));
        let big = TextSet::new((0..100).map(|i| format!("v{i}").into_bytes()));
        assert!(matches!(big, TextSet::Hashed(_)));
        assert!(big.contains(b"v42") && !big.contains(b"v100"));
    }

    #[test]
    fn icontains_ignores_ascii_case() {
        assert!(icontains(b"Hello World", b"o w"));
        assert!(!icontains(b"Hello", b"xyz"));
    }
}
