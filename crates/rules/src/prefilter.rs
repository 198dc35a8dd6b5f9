//! Which opens the enabled rules can match, by path: the detector keeps every other open
//! (and its close) in the kernel.
//!
//! The kernel sends an open when its raw path is relative or not plain (`//`, `/.`, `..`,
//! a trailing `/`), or starts with one of the prefixes, or ends with one of the suffixes.
//! For such a plain absolute path `fd.name` equals the raw path, so a rule whose condition,
//! on an open or close event, can only hold for paths with a given prefix or suffix
//! misses nothing. Anything the analysis cannot bound (`proc.name = x and open_write`, a
//! regex, a `contains` of an ordinary word) makes the rule need every open.
//!
//! A kept-in-kernel open also leaves its fd unknown to user space, so a rule on any other
//! event type that reads `fd.*` must require a non-file fd (`fd.type in (ipv4, ipv6)`) or
//! bound the fd's path (its atoms join the filter), and no rule may read the whole fd table
//! (`proc.stdin.name`).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use crate::condition::ast::Op;
use crate::condition::program::{Check, Node, OwnedArg, Program, Rhs};
use crate::engine::{CompiledRule, Engine};

/// Event types whose fd is the opened file: the analysed set.
const OPEN_FAMILY: [&str; 4] = ["open", "openat", "creat", "close"];

/// Event types without an fd (`fd.*` is empty on them whatever the opens), so their rules
/// may read `fd.*` freely. Anything not listed is assumed to take one.
const FDLESS: &[&str] = &[
    "execve",
    // Its dirfd is a directory, or with AT_EMPTY_PATH the executed file, whose fd.* the
    // detector does not attach to the event.
    "execveat",
    "clone",
    "clone3",
    "fork",
    "vfork",
    "procexit",
    "exit",
    "exit_group",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "capset",
    "ptrace",
    "kill",
    "tkill",
    "tgkill",
    "init_module",
    "delete_module",
    "mount",
    "umount",
    "umount2",
    "unlink",
    "rename",
    "mkdir",
    "rmdir",
    "link",
    "symlink",
    "chmod",
    "chown",
    "lchown",
    "chdir",
    "chroot",
    "unshare",
    "socket",
    "socketpair",
    "pipe",
    "pipe2",
    "memfd_create",
    "bpf",
    "prctl",
    "seccomp",
    "userfaultfd",
    "personality",
    "mprotect",
    "brk",
    "getpid",
    "getppid",
    "uname",
    "nanosleep",
    // Their descriptors are directories (dirfd), which the kernel always sends.
    "renameat",
    "renameat2",
    "unlinkat",
    "mkdirat",
    "mknodat",
    "symlinkat",
    "fchmodat",
];

/// Path prefixes and suffixes (raw bytes) that some rule can match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenPathFilter {
    pub prefixes: Vec<Vec<u8>>,
    pub suffixes: Vec<Vec<u8>>,
}

/// What the enabled syscall rules need of opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenPathNeed {
    /// Every open must be sent: `rule` is the first rule that can match any path.
    All { rule: String, why: String },
    /// Only opens of these paths (plus the always-sent relative and non-plain ones).
    Paths(OpenPathFilter),
}

impl OpenPathFilter {
    /// Atoms as text for logs: space-separated, lossy UTF-8.
    pub fn atoms_text(atoms: &[Vec<u8>]) -> String {
        atoms
            .iter()
            .map(|a| String::from_utf8_lossy(a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Fit the filter to a kernel that compares `prefix_len` leading and `suffix_len`
    /// trailing bytes and holds at most `max_prefixes` and `max_suffixes` atoms: atoms are
    /// cut to length, covered ones dropped, and while there are too many the two sharing
    /// the longest head (tail) are replaced by it. Each step only widens the filter, so the
    /// result admits every path this one does. `None` when merging would leave an empty
    /// atom (every path).
    pub fn fit(
        &self,
        max_prefixes: usize,
        prefix_len: usize,
        max_suffixes: usize,
        suffix_len: usize,
    ) -> Option<OpenPathFilter> {
        let prefixes = self
            .prefixes
            .iter()
            .map(|p| p[..p.len().min(prefix_len)].to_vec());
        let suffixes = self.suffixes.iter().map(|s| {
            s[s.len().saturating_sub(suffix_len)..]
                .iter()
                .rev()
                .copied()
                .collect()
        });
        let prefixes = merge_heads(prefixes.collect(), max_prefixes)?;
        // A suffix is a head of the reversed path.
        let suffixes = merge_heads(suffixes.collect(), max_suffixes)?
            .into_iter()
            .map(|s| s.into_iter().rev().collect())
            .collect::<BTreeSet<Vec<u8>>>()
            .into_iter()
            .collect();
        Some(OpenPathFilter { prefixes, suffixes })
    }
}

/// Sorted heads without covered ones, at most `max` of them (see [`OpenPathFilter::fit`]).
fn merge_heads(atoms: Vec<Vec<u8>>, max: usize) -> Option<Vec<Vec<u8>>> {
    let mut v = minimal_heads(atoms);
    while v.len() > max {
        // Neighbours in sorted order share the longest heads.
        let (i, n) = v
            .windows(2)
            .enumerate()
            .map(|(i, w)| (i, common_head(&w[0], &w[1])))
            .max_by_key(|&(i, n)| (n, usize::MAX - i))?;
        if n == 0 {
            return None;
        }
        let head = v[i][..n].to_vec();
        v.splice(i..i + 2, [head]);
        v = minimal_heads(v);
    }
    Some(v)
}

fn common_head(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Sorted, deduplicated heads with every head that a shorter one starts removed.
fn minimal_heads(atoms: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let sorted: BTreeSet<Vec<u8>> = atoms.into_iter().collect();
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(sorted.len());
    for a in sorted {
        // In sorted order a covering head comes right before what it covers.
        if out.last().is_some_and(|k| a.starts_with(k)) {
            continue;
        }
        out.push(a);
    }
    out
}

/// What a condition needs on an open or close event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Need {
    /// It can hold for any path.
    Any,
    /// It holds only for paths with one of these prefixes or suffixes (or always-sent
    /// ones). Both empty: it never holds on such an event for a plain path.
    Paths {
        prefixes: BTreeSet<Vec<u8>>,
        suffixes: BTreeSet<Vec<u8>>,
    },
}

impl Need {
    fn none() -> Need {
        Need::Paths {
            prefixes: BTreeSet::new(),
            suffixes: BTreeSet::new(),
        }
    }

    fn prefixes(items: impl IntoIterator<Item = Vec<u8>>) -> Need {
        Need::Paths {
            prefixes: items.into_iter().collect(),
            suffixes: BTreeSet::new(),
        }
    }

    fn suffixes(items: impl IntoIterator<Item = Vec<u8>>) -> Need {
        Need::Paths {
            prefixes: BTreeSet::new(),
            suffixes: items.into_iter().collect(),
        }
    }

    /// A rough cost for choosing among the conjuncts of an `and`: any bound beats none; a
    /// longer shortest atom lets fewer opens through (`/etc/shadow` beats `/etc`, which
    /// every dynamic exec opens through `/etc/ld.so.cache`); then fewer atoms mean fewer
    /// compares. No atom at all (never holds) is cheapest.
    fn cost(&self) -> (bool, Reverse<usize>, usize) {
        match self {
            Need::Any => (true, Reverse(0), usize::MAX),
            Need::Paths { prefixes, suffixes } => {
                let shortest = prefixes.iter().chain(suffixes).map(Vec::len).min();
                (
                    false,
                    Reverse(shortest.unwrap_or(usize::MAX)),
                    prefixes.len() + suffixes.len(),
                )
            }
        }
    }

    fn union(self, other: Need) -> Need {
        match (self, other) {
            (
                Need::Paths {
                    mut prefixes,
                    mut suffixes,
                },
                Need::Paths {
                    prefixes: p,
                    suffixes: s,
                },
            ) => {
                prefixes.extend(p);
                suffixes.extend(s);
                Need::Paths { prefixes, suffixes }
            }
            _ => Need::Any,
        }
    }
}

/// The events a condition is analysed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Ctx<'a> {
    /// open, openat, creat and close: the path is the raw argument (or the opened one).
    OpenFamily,
    /// Another event type that takes an fd: `fd.*` names the fd's opened path.
    Type(&'a str),
    /// Any event type (an untyped rule).
    Unknown,
}

/// Memoized analysis over one engine's macros.
struct Analysis<'a> {
    prog: &'a Program,
    open_memo: HashMap<(u32, Ctx<'a>), Need>,
    safe_memo: HashMap<(u32, Option<&'a str>), bool>,
}

impl<'a> Analysis<'a> {
    /// What `node` needs of the event's (opened) path on `ctx` events.
    fn open_need(&mut self, node: &Node, ctx: Ctx<'a>) -> Need {
        match node {
            Node::Const(false) => Need::none(),
            Node::Const(true) | Node::Not(_) => Need::Any,
            Node::And(items) => items
                .iter()
                .map(|n| self.open_need(n, ctx))
                .min_by_key(Need::cost)
                .unwrap_or(Need::Any),
            Node::Or(items) => items
                .iter()
                .fold(Need::none(), |acc, n| acc.union(self.open_need(n, ctx))),
            Node::Macro(i) => {
                if let Some(n) = self.open_memo.get(&(*i, ctx)) {
                    return n.clone();
                }
                let n = match self.prog.macros.get(*i as usize) {
                    Some(m) => self.open_need(m, ctx),
                    None => Need::Any,
                };
                self.open_memo.insert((*i, ctx), n.clone());
                n
            }
            Node::Check(c) => check_need(c, ctx),
        }
    }

    /// Whether `node`, on an event of type `ty` (`None`: unknown), holds only when the
    /// event's fd is not a file, so an fd unknown to user space cannot make it match.
    fn requires_non_file(&mut self, node: &Node, ty: Option<&'a str>) -> bool {
        match node {
            Node::Const(b) => !*b,
            Node::Not(_) => false,
            Node::And(items) => items.iter().any(|n| self.requires_non_file(n, ty)),
            Node::Or(items) => items.iter().all(|n| self.requires_non_file(n, ty)),
            Node::Macro(i) => {
                if let Some(b) = self.safe_memo.get(&(*i, ty)) {
                    return *b;
                }
                let b = match self.prog.macros.get(*i as usize) {
                    Some(m) => self.requires_non_file(m, ty),
                    None => false,
                };
                self.safe_memo.insert((*i, ty), b);
                b
            }
            Node::Check(c) => {
                if let (Some(types), Some(ty)) = (&c.evt_types, ty) {
                    // Never true on this type: nothing to fear from it.
                    return !types.iter().any(|t| t == ty);
                }
                check_requires_non_file(c)
            }
        }
    }

    /// Whether `node` reads a field `wanted` accepts.
    fn reads(&self, node: &Node, wanted: fn(&str) -> bool, seen: &mut Vec<u32>) -> bool {
        match node {
            Node::Const(_) => false,
            Node::Not(n) => self.reads(n, wanted, seen),
            Node::And(items) | Node::Or(items) => items.iter().any(|n| self.reads(n, wanted, seen)),
            Node::Macro(i) => {
                if seen.contains(i) {
                    return false;
                }
                seen.push(*i);
                self.prog
                    .macros
                    .get(*i as usize)
                    .is_some_and(|m| self.reads(m, wanted, seen))
            }
            Node::Check(c) => {
                wanted(c.lhs.field.info.name)
                    || matches!(&c.rhs, Rhs::Field(o) if wanted(o.field.info.name))
            }
        }
    }
}

/// Fields resolved through the event's descriptor: `fd.*`, and `fs.path.*`, which an `*at`
/// call with AT_EMPTY_PATH (linkat, fchownat) resolves through a file's fd.
fn is_fd_field(name: &str) -> bool {
    name.starts_with("fd.") || name.starts_with("fs.path.")
}

/// Fields read from the process's whole fd table, on any event: a kept open leaves them
/// wrong (`proc.stdin.name` after `cat < /tmp/x`), so a rule using one needs every open.
fn reads_fd_table(name: &str) -> bool {
    name.starts_with("fd.types")
        || name.starts_with("proc.stdin.")
        || name.starts_with("proc.stdout.")
        || name.starts_with("proc.stderr.")
        || name.starts_with("proc.fd")
}

/// Which path a field names on an open or close event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PathPart {
    Whole,
    Directory,
    Filename,
}

fn path_part(c: &Check, ctx: Ctx<'_>) -> Option<PathPart> {
    if !c.lhs.transforms.is_empty() {
        return None;
    }
    let f = &c.lhs.field;
    match (f.info.name, &f.arg) {
        ("fd.name" | "fd.nameraw", _) => Some(PathPart::Whole),
        // The open family's path argument; other events' `name` arguments are other paths.
        ("evt.arg" | "evt.rawarg", OwnedArg::Key(k))
            if &**k == "name" && ctx == Ctx::OpenFamily =>
        {
            Some(PathPart::Whole)
        }
        ("fd.directory", _) => Some(PathPart::Directory),
        ("fd.filename", _) => Some(PathPart::Filename),
        _ => None,
    }
}

/// The literal strings of an `=`, `in` or `startswith`-like right-hand side. For a modified
/// list (`startswith anyof (a, b)`) every modifier is true only if some item's check is, so
/// the items' literals together cover it (an empty list is never true and needs nothing).
fn literals(rhs: &Rhs) -> Option<Vec<Vec<u8>>> {
    match rhs {
        Rhs::Text(t) => Some(vec![t.to_vec()]),
        Rhs::TextSet(s) => Some(s.iter().map(<[u8]>::to_vec).collect()),
        Rhs::Multi(_, items) => {
            let mut out = Vec::new();
            for i in items.iter() {
                match i {
                    Rhs::Text(t) => out.push(t.to_vec()),
                    _ => return None,
                }
            }
            Some(out)
        }
        _ => None,
    }
}

/// Whether the kernel sends every path holding `needle` (not a plain absolute path).
fn always_sent_with(needle: &[u8]) -> bool {
    needle
        .windows(2)
        .any(|w| w == b"//" || w == b"/." || w == b"..")
}

fn check_need(c: &Check, ctx: Ctx<'_>) -> Need {
    if let Some(types) = &c.evt_types {
        // `evt.type in (...)` without the analysed types is false on them.
        let may_hold = match ctx {
            Ctx::OpenFamily => types.iter().any(|t| OPEN_FAMILY.contains(&t.as_str())),
            Ctx::Type(ty) => types.iter().any(|t| t == ty),
            Ctx::Unknown => true,
        };
        return if may_hold { Need::Any } else { Need::none() };
    }
    let Some(part) = path_part(c, ctx) else {
        return Need::Any;
    };
    match (part, c.op) {
        (PathPart::Whole, Op::Eq | Op::In | Op::Intersects | Op::StartsWith | Op::BStartsWith) => {
            literals(&c.rhs).map_or(Need::Any, Need::prefixes)
        }
        (PathPart::Whole, Op::EndsWith) => literals(&c.rhs).map_or(Need::Any, Need::suffixes),
        (PathPart::Whole, Op::Glob) => match &c.rhs {
            Rhs::Glob(pat) => glob_need(pat),
            _ => Need::Any,
        },
        (PathPart::Whole, Op::Contains | Op::BContains) => match &c.rhs {
            Rhs::Finder(f) if always_sent_with(f.needle()) => Need::none(),
            Rhs::Text(t) if always_sent_with(t) => Need::none(),
            _ => Need::Any,
        },
        (PathPart::Directory, Op::Eq | Op::In | Op::Intersects) => literals(&c.rhs)
            .map_or(Need::Any, |dirs| {
                Need::prefixes(dirs.into_iter().map(dir_prefix))
            }),
        // A directory under D, or a path under it, starts with D.
        (PathPart::Directory, Op::StartsWith | Op::BStartsWith) => {
            literals(&c.rhs).map_or(Need::Any, Need::prefixes)
        }
        (PathPart::Whole | PathPart::Directory, Op::PMatch) => match &c.rhs {
            Rhs::Paths(set) => Need::prefixes(set.iter().map(<[u8]>::to_vec)),
            _ => Need::Any,
        },
        (PathPart::Filename, Op::Eq | Op::In | Op::Intersects) => literals(&c.rhs)
            .map_or(Need::Any, |names| {
                Need::suffixes(names.into_iter().map(|n| [b"/".as_slice(), &n].concat()))
            }),
        (PathPart::Filename, Op::EndsWith) => literals(&c.rhs).map_or(Need::Any, Need::suffixes),
        _ => Need::Any,
    }
}

/// Files directly in `dir` start with `dir/`, and a directory's own fd has `fd.directory`
/// equal to its path: `dir` itself (without a trailing `/`) covers both.
fn dir_prefix(mut dir: Vec<u8>) -> Vec<u8> {
    while dir.len() > 1 && dir.last() == Some(&b'/') {
        dir.pop();
    }
    dir
}

/// A glob's literal head (as a prefix) or, failing that, its literal tail (as a suffix).
fn glob_need(pat: &[u8]) -> Need {
    let meta = |b: &u8| matches!(b, b'*' | b'?' | b'[' | b'\\');
    let head = pat.iter().position(meta).unwrap_or(pat.len());
    if head == pat.len() {
        return Need::prefixes([pat.to_vec()]);
    }
    if head > 0 {
        return Need::prefixes([pat[..head].to_vec()]);
    }
    // `]` ends a class: what follows the last `[` or `]` is literal.
    let tail = pat
        .iter()
        .rposition(|b| meta(b) || *b == b']')
        .map_or(0, |i| i + 1);
    if tail < pat.len() && !pat[..tail].contains(&b'\\') {
        return Need::suffixes([pat[tail..].to_vec()]);
    }
    Need::Any
}

/// `fd.type`/`fd.typechar` checks that exclude regular files (and unknown fds).
fn check_requires_non_file(c: &Check) -> bool {
    if !c.lhs.transforms.is_empty() || !matches!(c.op, Op::Eq | Op::In | Op::Intersects) {
        return false;
    }
    let file: &[u8] = match c.lhs.field.info.name {
        "fd.type" => b"file",
        "fd.typechar" => b"f",
        _ => return false,
    };
    literals(&c.rhs).is_some_and(|v| !v.is_empty() && v.iter().all(|x| x.as_slice() != file))
}

impl Engine {
    /// Which opens the enabled syscall rules can match (see the module docs).
    pub fn open_path_need(&self) -> OpenPathNeed {
        let mut a = Analysis {
            prog: self.program(),
            open_memo: HashMap::new(),
            safe_memo: HashMap::new(),
        };
        let (mut prefixes, mut suffixes) = (BTreeSet::new(), BTreeSet::new());
        for rule in self
            .rules()
            .iter()
            .filter(|r| r.enabled && r.source == "syscall")
        {
            match rule_need(&mut a, rule) {
                Ok((p, s)) => {
                    prefixes.extend(p);
                    suffixes.extend(s);
                }
                Err(why) => {
                    return OpenPathNeed::All {
                        rule: rule.name.clone(),
                        why,
                    };
                }
            }
        }
        OpenPathNeed::Paths(OpenPathFilter {
            prefixes: prefixes.into_iter().collect(),
            suffixes: suffixes.into_iter().collect(),
        })
    }
}

const ANY_PATH: &str =
    "can match an open or close of any path (no fd.name prefix, suffix or directory bounds it)";

/// Path prefixes and suffixes.
type Atoms = (BTreeSet<Vec<u8>>, BTreeSet<Vec<u8>>);

/// The path prefixes and suffixes `rule` can match; `Err` says why it needs every open.
fn rule_need<'a>(a: &mut Analysis<'a>, rule: &'a CompiledRule) -> Result<Atoms, String> {
    let node = rule.node();
    let output_reads = |wanted: fn(&str) -> bool| {
        rule.output
            .split('%')
            .skip(1)
            .any(|f| wanted(f.trim_start_matches('(')))
    };
    if a.reads(node, reads_fd_table, &mut Vec::new()) || output_reads(reads_fd_table) {
        return Err(
            "reads the process's fd table (proc.stdin/stdout/stderr, proc.fd*, fd.types), which kept opens would leave incomplete"
                .into(),
        );
    }
    let types = rule.event_types.as_ref();
    let on_open = types.is_none_or(|t| t.iter().any(|t| OPEN_FAMILY.contains(&t.as_str())));
    let mut need = if on_open {
        a.open_need(node, Ctx::OpenFamily)
    } else {
        Need::none()
    };
    if need == Need::Any {
        return Err(ANY_PATH.into());
    }
    let others: Vec<Option<&'a str>> = match types {
        None => vec![None],
        Some(t) => t
            .iter()
            .map(String::as_str)
            // openat2 is always sent; fd-less types never see an fd.
            .filter(|t| !OPEN_FAMILY.contains(t) && *t != "openat2" && !FDLESS.contains(t))
            .map(Some)
            .collect(),
    };
    let reads_fd = a.reads(node, is_fd_field, &mut Vec::new()) || output_reads(is_fd_field);
    // On another fd-taking event, a kept open's fd is unknown to user space: fine when the
    // rule requires a non-file fd, or bounds the fd's path (those opens are then sent).
    for ty in others.into_iter().filter(|_| reads_fd) {
        if a.requires_non_file(node, ty) {
            continue;
        }
        match a.open_need(node, ty.map_or(Ctx::Unknown, Ctx::Type)) {
            Need::Any => {
                return Err(format!(
                    "reads fd.* on {} events without requiring a non-file fd (fd.type) or bounding fd.name, so it needs every open's fd",
                    ty.unwrap_or("all")
                ));
            }
            n => need = need.union(n),
        }
    }
    let Need::Paths { prefixes, suffixes } = need else {
        return Err(ANY_PATH.into());
    };
    let every = |a: &Vec<u8>| a.is_empty() || a.as_slice() == b"/";
    if prefixes.iter().any(every) || suffixes.iter().any(Vec::is_empty) {
        return Err("can match an open of any absolute path (a path prefix of /)".into());
    }
    Ok((prefixes, suffixes))
}

#[cfg(test)]
mod tests;
