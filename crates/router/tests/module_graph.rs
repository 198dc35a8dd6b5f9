//! The router's modules form no import cycle: no two modules of `src/` use each other,
//! directly or through a loop. Each file under `src/` is one module; a module uses another when
//! its code names it through `crate::…`, `super::…`, `self::…` or (for a parent) a declared
//! child module; a parent also uses every child it declares. Paths resolve to the longest module prefix that is a file. `#[cfg(test)]`
//! code counts too: a test helper borrowed from a module is still a use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`outputs::slack`) → source file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read src dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = p.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            match parts.last().map(String::as_str) {
                Some("main") => continue, // the binary is not part of the library's graph
                Some("lib") | Some("mod") => {
                    parts.pop();
                }
                _ => {}
            }
            out.insert(parts.join("::"), p);
        }
    }
    out
}

/// Code without comments and string literals, so that paths in docs or messages do not count.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if !in_str && c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
                prev = c;
                continue;
            }
            if !in_str {
                out.push(c);
            }
            prev = if prev == '\\' && c == '\\' { ' ' } else { c };
        }
        out.push('\n');
    }
    out
}

/// Identifier paths (`a::b::c`) that start at position `i` of `code`.
fn path_at(code: &str, i: usize) -> Vec<String> {
    let mut segs = Vec::new();
    let mut rest = &code[i..];
    loop {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        segs.push(rest[..end].to_owned());
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    segs
}

/// Expand `use crate::{a, b::{c, d}}` groups into plain paths.
fn expand_groups(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for stmt in code.split(';') {
        let Some(pos) = stmt.find("use ") else {
            continue;
        };
        let body: String = stmt[pos + 4..]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        expand(&body, "", &mut out);
    }
    out
}

fn expand(body: &str, prefix: &str, out: &mut Vec<String>) {
    let Some(open) = body.find('{') else {
        out.push(format!("{prefix}{body}"));
        return;
    };
    let head = &body[..open];
    let inner = &body[open + 1..body.rfind('}').unwrap_or(body.len())];
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&inner[start..i], &format!("{prefix}{head}"), out);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < inner.len() {
        expand(&inner[start..], &format!("{prefix}{head}"), out);
    }
}

fn resolve(mods: &BTreeMap<String, PathBuf>, segs: &[String]) -> Option<String> {
    (1..=segs.len())
        .rev()
        .map(|n| segs[..n].join("::"))
        .find(|m| mods.contains_key(m))
}

/// Edges of the module graph: module → modules it uses.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, file) in &mods {
        let text = std::fs::read_to_string(file).expect("read module");
        let code = code_only(&text);
        let here: Vec<String> = if name.is_empty() {
            Vec::new()
        } else {
            name.split("::").map(str::to_owned).collect()
        };
        let children: BTreeSet<String> = mods
            .keys()
            .filter_map(|m| {
                let rest = if here.is_empty() {
                    Some(m.as_str())
                } else {
                    m.strip_prefix(&format!("{name}::"))
                };
                rest.filter(|r| !r.is_empty() && !r.contains("::"))
                    .map(str::to_owned)
            })
            .collect();
        let mut paths: Vec<Vec<String>> = Vec::new();
        for (i, _) in code.match_indices("::") {
            // The start of the identifier path that contains this `::`.
            let start = code[..i]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(0, |p| p + 1);
            if start > 0 && code[..start].ends_with("::") {
                continue;
            }
            paths.push(path_at(&code, start));
        }
        for p in expand_groups(&code) {
            paths.push(p.split("::").map(str::to_owned).collect());
        }
        let edges = g.entry(name.clone()).or_default();
        // Declaring a child module is a use of it (also when a macro declares it).
        if !name.is_empty() {
            edges.extend(children.iter().map(|c| format!("{name}::{c}")));
        }
        for segs in paths {
            let Some(first) = segs.first() else { continue };
            if segs.len() == 1 {
                continue; // `super::*`, `crate::{…}`: the group is expanded separately
            }
            let abs: Vec<String> = match first.as_str() {
                "crate" => segs[1..].to_vec(),
                "self" => here.iter().chain(&segs[1..]).cloned().collect(),
                "super" => {
                    let mut base = here.clone();
                    let mut rest = &segs[..];
                    while rest.first().map(String::as_str) == Some("super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    // `use super::*` inside an inline `mod tests` names this very module.
                    if rest.first().map(String::as_str) == Some("*") {
                        continue;
                    }
                    base.into_iter().chain(rest.iter().cloned()).collect()
                }
                c if children.contains(c) => here.iter().chain(&segs[..]).cloned().collect(),
                _ => continue,
            };
            if let Some(target) = resolve(&mods, &abs)
                && target != *name
                && !target.is_empty()
            {
                edges.insert(target);
            }
        }
    }
    g
}

/// One cycle, if there is any.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        mark: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        mark.insert(n.to_owned(), Mark::Active);
        stack.push(n.to_owned());
        for m in g.get(n).into_iter().flatten() {
            match mark.get(m).copied().unwrap_or(Mark::New) {
                Mark::Active => {
                    let from = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(m, g, mark, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark.insert(n.to_owned(), Mark::Done);
        None
    }
    let mut mark = BTreeMap::new();
    for n in g.keys() {
        if mark.get(n).copied().unwrap_or(Mark::New) == Mark::New {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, g, &mut mark, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn router_modules_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    assert!(g.len() > 10, "found only {} modules under src/", g.len());
    if std::env::var_os("MODULE_GRAPH_PRINT").is_some() {
        for (n, uses) in &g {
            println!("{n} → {uses:?}");
        }
    }
    if let Some(cycle) = find_cycle(&g) {
        // Every module on some cycle, with its uses, to see the whole knot at once.
        let reach = |from: &str| {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from.to_owned()];
            while let Some(n) = todo.pop() {
                for m in g.get(&n).into_iter().flatten() {
                    if seen.insert(m.clone()) {
                        todo.push(m.clone());
                    }
                }
            }
            seen
        };
        let knot: Vec<String> = g
            .iter()
            .filter(|(n, _)| reach(n).contains(*n))
            .map(|(n, uses)| format!("  {n} → {uses:?}"))
            .collect();
        panic!(
            "import cycle in crates/router/src: {}\nmodules on cycles:\n{}",
            cycle.join(" → "),
            knot.join("\n")
        );
    }
}

/// Negative control: the checker does see a cycle, through groups, `super::` and children.
#[test]
fn the_checker_finds_cycles() {
    let dir = std::env::temp_dir().join(format!("aerie-modgraph-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("outputs")).unwrap();
    std::fs::write(
        dir.join("lib.rs"),
        "pub mod a;\npub mod b;\npub mod outputs;\n",
    )
    .unwrap();
    std::fs::write(dir.join("a.rs"), "use crate::{x::Y, b::{C, D}};\n").unwrap();
    std::fs::write(
        dir.join("b.rs"),
        "// crate::a is only a comment\nfn f() { let s = \"crate::a\"; }\n",
    )
    .unwrap();
    std::fs::write(dir.join("outputs/mod.rs"), "mod file;\nuse file::Sink;\n").unwrap();
    std::fs::write(dir.join("outputs/file.rs"), "use super::Shared;\n").unwrap();
    let g = graph(&dir);
    assert_eq!(g["a"], BTreeSet::from(["b".to_owned()]));
    assert!(g["b"].is_empty(), "{:?}", g["b"]);
    let cycle = find_cycle(&g).expect("outputs ↔ outputs::file is a cycle");
    assert!(cycle.contains(&"outputs::file".to_owned()), "{cycle:?}");
    std::fs::write(dir.join("b.rs"), "pub fn f() { crate::a::g() }\n").unwrap();
    std::fs::write(dir.join("outputs/file.rs"), "use crate::a::G;\n").unwrap();
    let cycle = find_cycle(&graph(&dir)).expect("a ↔ b is a cycle");
    assert_eq!(cycle.first(), cycle.last());
    let _ = std::fs::remove_dir_all(&dir);
}
