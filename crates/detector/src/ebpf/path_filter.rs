//! The kernel layout of the open filter: rule-derived prefixes and suffixes as masked
//! little-endian words (`detector_common::PathFilter`), compared a word at a time in BPF.

use aerie_rules::OpenPathFilter;
use detector_common::{PF_PREFIX_WORDS, PF_PREFIXES, PF_SUFFIX_WORDS, PF_SUFFIXES, PathFilter};

use super::CaptureError;

const PREFIX_BYTES: usize = PF_PREFIX_WORDS * 8;
const SUFFIX_BYTES: usize = PF_SUFFIX_WORDS * 8;

/// Encode `f` for the kernel, fitted to what it holds ([`OpenPathFilter::fit`]: long atoms
/// cut, too many merged, each only widening the filter). Atoms holding a NUL can match no
/// path and are dropped. An error when an atom is empty or merging would need one (the
/// filter would admit every path).
pub fn encode(f: &OpenPathFilter) -> Result<PathFilter, CaptureError> {
    if let Some(bad) = f.prefixes.iter().chain(&f.suffixes).find(|a| a.is_empty()) {
        return Err(CaptureError::PathFilter(format!(
            "empty atom {:?} admits every path",
            String::from_utf8_lossy(bad)
        )));
    }
    let live = |v: &[Vec<u8>]| v.iter().filter(|a| !a.contains(&0)).cloned().collect();
    let f = OpenPathFilter {
        prefixes: live(&f.prefixes),
        suffixes: live(&f.suffixes),
    }
    .fit(PF_PREFIXES, PREFIX_BYTES, PF_SUFFIXES, SUFFIX_BYTES)
    .ok_or_else(|| {
        CaptureError::PathFilter(format!(
            "{} prefixes and {} suffixes do not merge into the kernel's {PF_PREFIXES} and {PF_SUFFIXES} without admitting every path",
            f.prefixes.len(),
            f.suffixes.len()
        ))
    })?;
    let mut out = PathFilter::disabled();
    // `fit` has cut every atom to the bytes the kernel compares.
    for (i, p) in f.prefixes.iter().enumerate() {
        let (mut bytes, mut mask) = ([0u8; PREFIX_BYTES], [0u8; PREFIX_BYTES]);
        bytes[..p.len()].copy_from_slice(p);
        mask[..p.len()].fill(0xff);
        out.prefix[i] = words(&bytes);
        out.prefix_mask[i] = words(&mask);
    }
    for (i, s) in f.suffixes.iter().enumerate() {
        let (mut bytes, mut mask) = ([0u8; SUFFIX_BYTES], [0u8; SUFFIX_BYTES]);
        bytes[SUFFIX_BYTES - s.len()..].copy_from_slice(s);
        mask[SUFFIX_BYTES - s.len()..].fill(0xff);
        out.suffix[i] = words(&bytes);
        out.suffix_mask[i] = words(&mask);
    }
    out.n_prefixes = f.prefixes.len() as u32;
    out.n_suffixes = f.suffixes.len() as u32;
    out.enabled = 1;
    Ok(out)
}

fn words<const N: usize>(bytes: &[u8]) -> [u64; N] {
    let mut w = [0u64; N];
    for (i, c) in bytes.chunks_exact(8).take(N).enumerate() {
        w[i] = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel computes for an in-range plain absolute path (the always-sent cases
    /// are the kernel's own and tested there, end to end).
    fn kernel_matches(pf: &PathFilter, path: &[u8]) -> bool {
        let mut buf = [0xaau8; 512]; // stale bytes past the NUL, as in the task slot
        buf[..path.len()].copy_from_slice(path);
        buf[path.len()] = 0;
        let w = |i: usize| u64::from_le_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap());
        let pre = (0..pf.n_prefixes as usize)
            .any(|k| (0..PF_PREFIX_WORDS).all(|j| w(j) & pf.prefix_mask[k][j] == pf.prefix[k][j]));
        let at = |off: isize| -> u64 {
            let mut b = [0u8; 8];
            for (j, x) in b.iter_mut().enumerate() {
                let i = off + j as isize;
                *x = if i < 0 { 0 } else { buf[i as usize] };
            }
            u64::from_le_bytes(b)
        };
        let (lo, hi) = (at(path.len() as isize - 16), at(path.len() as isize - 8));
        let suf = (0..pf.n_suffixes as usize).any(|k| {
            lo & pf.suffix_mask[k][0] == pf.suffix[k][0]
                && hi & pf.suffix_mask[k][1] == pf.suffix[k][1]
        });
        pre || suf
    }

    fn filter(prefixes: &[&str], suffixes: &[&str]) -> PathFilter {
        encode(&OpenPathFilter {
            prefixes: prefixes.iter().map(|p| p.as_bytes().to_vec()).collect(),
            suffixes: suffixes.iter().map(|s| s.as_bytes().to_vec()).collect(),
        })
        .unwrap()
    }

    #[test]
    fn prefixes_and_suffixes_match_like_the_kernel() {
        let pf = filter(
            &[
                "/etc",
                "/var/log/",
                "/a/very/long/prefix/that/is/cut/after/32",
            ],
            &["release_agent", "/syslog", "/x"],
        );
        for yes in [
            "/etc/shadow",
            "/etc",
            "/etcetera",
            "/var/log/messages",
            "/sys/fs/cgroup/release_agent",
            "/release_agent",
            "/tmp/syslog",
            "/x",
            "/a/very/long/prefix/that/is/cut/XXXX",
        ] {
            assert!(kernel_matches(&pf, yes.as_bytes()), "{yes} should match");
        }
        for no in [
            "/et",
            "/tmp/x/target",
            "/var/lo",
            "/var/logs",
            "/tmp/release_agentx",
            "/tmp/xsyslog",
            "/tmp/y",
            "/a/very/long/prefix/that/is/cu",
        ] {
            assert!(!kernel_matches(&pf, no.as_bytes()), "{no} should not match");
        }
    }

    #[test]
    fn too_many_atoms_merge_and_empty_atoms_are_errors() {
        let many: Vec<String> = (0..PF_PREFIXES + 8).map(|i| format!("/p/{i:02}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let pf = filter(&many, &[]);
        assert!(pf.n_prefixes as usize <= PF_PREFIXES);
        for p in &many {
            assert!(kernel_matches(&pf, p.as_bytes()), "{p} must still match");
        }
        assert!(!kernel_matches(&pf, b"/q/1"));
        let unrelated: Vec<String> = (0..PF_SUFFIXES + 1)
            .map(|i| format!("{}", (b'a' + i as u8) as char))
            .collect();
        let err = encode(&OpenPathFilter {
            prefixes: vec![],
            suffixes: unrelated.iter().map(|s| s.as_bytes().to_vec()).collect(),
        })
        .unwrap_err();
        assert!(err.to_string().contains("17 suffixes"), "{err}");
        let err = encode(&OpenPathFilter {
            prefixes: vec![vec![]],
            suffixes: vec![],
        })
        .unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let pf = filter(&["/etc\0x", "/var"], &[]);
        assert_eq!(pf.n_prefixes, 1);
    }
}
