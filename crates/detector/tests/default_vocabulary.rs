//! Falco's macro and list vocabulary on the default rules (config/rules/aerie_rules.yaml):
//! a custom rule written for Falco loads and behaves the same on the defaults, every name the
//! defaults share with Falco's files means the same there, Falco's files load next to the
//! defaults in either order without errors and with their exact counts, and the Helm chart
//! carries an identical copy.

mod synthetic;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use aerie_detector::config::DetectorConfig;
use aerie_rules::condition::ast::{Expr, Operand, Rhs};
use aerie_rules::condition::parse;
use aerie_rules::{EngineConfig, OpenPathNeed, RuleLoader};
use synthetic::*;

const O_RDONLY: u64 = 0;
const O_WRONLY: u64 = 1;

/// The custom rule of Falco's tutorial, verbatim.
const TUTORIAL_RULE: &str = r#"- rule: Access to Sensitive Files
  desc: Detect access to sensitive files
  condition: open_read and (fd.name = "/etc/shadow" or fd.name = "/etc/passwd")
  output: "Sensitive file accessed (user=%user.name file=%fd.name command=%proc.cmdline)"
  priority: WARNING
"#;
const TUTORIAL: &str = "Access to Sensitive Files";

/// The names Falco rule authors rely on most; the defaults must define each.
const VOCABULARY: &[&str] = &[
    "open_read",
    "open_write",
    "open_directory",
    "open_file_failed",
    "spawned_process",
    "container",
    "container_started",
    "container_entrypoint",
    "interactive",
    "shell_procs",
    "shell_binaries",
    "sensitive_files",
    "sensitive_file_names",
    "proc_name_exists",
    "never_true",
    "always_true",
    "bin_dir",
    "etc_dir",
    "user_ssh_directory",
    "k8s_containers",
    "outbound",
    "inbound",
    "inbound_outbound",
    "rfc_1918_addresses",
    "modify",
    "rename",
    "remove",
    "mkdir",
    "chmod",
    "create_symlink",
    "create_hardlink",
    "kernel_module_load",
    "package_mgmt_binaries",
    "package_mgmt_procs",
    "user_mgmt_binaries",
    "network_tool_procs",
    "interpreted_procs",
    "trusted_images",
];

const UPSTREAM: &[&str] = &[
    "falco_rules.yaml",
    "falco-incubating_rules.yaml",
    "falco-sandbox_rules.yaml",
    "k8s_audit_rules.yaml",
];

fn upstream_dir() -> Option<PathBuf> {
    falco_rules().map(|p| p.parent().unwrap().to_owned())
}

fn tutorial_file() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aerie-vocab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("tutorial_rules.yaml");
    std::fs::write(&p, TUTORIAL_RULE).unwrap();
    p
}

#[test]
fn tutorial_rule_loads_on_the_defaults_and_fires_on_reading_shadow() {
    // The default configuration: every matching rule alerts, so the default rule on
    // /etc/shadow does not hide the custom one.
    let cfg = DetectorConfig::default().engine_config();
    let mut s = Scenario::with_config(&[default_rules(), tutorial_file()], &cfg);
    s.spawn(&Proc {
        pid: 40,
        exe: "/usr/bin/cat",
        argv: &["cat", "/etc/shadow"],
        uid: 1000,
        ..Default::default()
    });
    let a = s.open(40, "/etc/shadow", O_RDONLY, 3);
    let hit = a
        .iter()
        .find(|a| a.rule == TUTORIAL)
        .expect("no tutorial alert");
    assert!(
        hit.output.ends_with(
            "Warning Sensitive file accessed (user=alice file=/etc/shadow command=cat /etc/shadow)"
        ),
        "{}",
        hit.output
    );
    assert!(rules(&s.open(40, "/etc/passwd", O_RDONLY, 4)).contains(&TUTORIAL));
    // Another file, a write-only open, a failed open and a directory: not `open_read` of those files.
    assert!(!rules(&s.open(40, "/etc/hostname", O_RDONLY, 5)).contains(&TUTORIAL));
    assert!(!rules(&s.open(40, "/etc/passwd", O_WRONLY, 6)).contains(&TUTORIAL));
    assert!(!rules(&s.open(40, "/etc/shadow", O_RDONLY, -13)).contains(&TUTORIAL));
}

#[test]
fn vocabulary_is_defined_by_the_defaults() {
    let mut loader = RuleLoader::new();
    loader.load_file(&default_rules());
    let engine = loader.compile(&EngineConfig::default());
    assert!(!loader.has_errors(), "{:?}", loader.results());
    let coll = loader.collection();
    let missing: Vec<_> = VOCABULARY
        .iter()
        .filter(|n| coll.macro_info(n).is_none() && coll.list(n).is_none())
        .collect();
    assert!(missing.is_empty(), "not defined: {missing:?}");
    assert!(engine.rules().len() >= 14);
}

/// A condition's text with the order of `and`/`or` operands and of list items made
/// irrelevant, and quoting ignored: two macros with equal canonical text mean the same.
fn canonical(e: &Expr) -> String {
    fn operand(o: &Operand) -> String {
        o.to_string()
    }
    fn flat<'a>(e: &'a Expr, and: bool, out: &mut Vec<&'a Expr>) {
        match (e, and) {
            (Expr::And(v), true) | (Expr::Or(v), false) => v.iter().for_each(|x| flat(x, and, out)),
            _ => out.push(e),
        }
    }
    match e {
        Expr::And(_) | Expr::Or(_) => {
            let and = matches!(e, Expr::And(_));
            let mut parts = Vec::new();
            flat(e, and, &mut parts);
            let mut texts: Vec<String> = parts.into_iter().map(canonical).collect();
            texts.sort();
            texts.dedup();
            if texts.len() == 1 {
                return texts.pop().unwrap_or_default();
            }
            format!("{}({})", if and { "and" } else { "or" }, texts.join(", "))
        }
        Expr::Not(x) => format!("not({})", canonical(x)),
        Expr::Macro { name, .. } => name.clone(),
        Expr::Const(b) => b.to_string(),
        Expr::Check { left, op, rhs, .. } => {
            format!("{} {} {}", operand(left), op.as_str(), canonical_rhs(rhs))
        }
    }
}

/// A check's right-hand side, with list items in a stable order.
fn canonical_rhs(rhs: &Rhs) -> String {
    match rhs {
        Rhs::None => String::new(),
        Rhs::Value(l) => l.text.clone(),
        Rhs::List(items) => {
            let mut t: Vec<&str> = items.iter().map(|l| l.text.as_str()).collect();
            t.sort();
            format!("({})", t.join(", "))
        }
        Rhs::ListRef(n, _) => n.clone(),
        Rhs::Field(o) => format!("val({})", o),
        Rhs::Modified(m, inner) => format!("{} {}", m.as_str(), canonical_rhs(inner)),
    }
}

/// Every list of a loaded collection with nested lists expanded, as a set.
fn expanded_lists(loader: &RuleLoader) -> BTreeMap<String, BTreeSet<String>> {
    let coll = loader.collection();
    fn expand(
        coll: &aerie_rules::loader::Collection,
        items: &[String],
        out: &mut BTreeSet<String>,
    ) {
        for i in items {
            match coll.list(i) {
                Some(l) => expand(coll, &l.items, out),
                None => {
                    out.insert(i.trim_matches('"').to_owned());
                }
            }
        }
    }
    coll.lists
        .iter()
        .map(|l| {
            let mut set = BTreeSet::new();
            expand(coll, &l.items, &mut set);
            (l.name.clone(), set)
        })
        .collect()
}

/// Each name the defaults share with Falco is compared with its definition in the first of
/// Falco's files that defines it (stable, then incubating, then sandbox): the incubating and
/// sandbox files redefine a few lists of the stable file differently among themselves
/// (`python_package_managers`, `falco_containers`), and as in Falco the file loaded last wins.
#[test]
fn names_shared_with_falco_mean_the_same() {
    let Some(dir) = upstream_dir() else { return };
    let mut ours = RuleLoader::new();
    ours.load_file(&default_rules());
    let references: Vec<RuleLoader> = [&UPSTREAM[..1], &UPSTREAM[..2], &[UPSTREAM[0], UPSTREAM[2]]]
        .iter()
        .map(|files| {
            let mut l = RuleLoader::new();
            for f in *files {
                l.load_file(&dir.join(f));
            }
            l
        })
        .collect();
    // The file that first defines a name, as the last file of its reference set.
    let defines = |r: &RuleLoader, name: &str| {
        let last = r.results().len() - 1;
        let file = &r.results()[last].name;
        let c = r.collection();
        c.macro_info(name).is_some_and(|m| &m.ctx.file == file)
            || c.list(name).is_some_and(|l| &l.ctx.file == file)
    };
    let reference = |name: &str| references.iter().find(|r| defines(r, name));
    let oc = ours.collection();
    let ol = expanded_lists(&ours);
    let mut shared = 0;
    let mut differ = Vec::new();
    for m in &oc.macros {
        let Some(up) = reference(&m.name).and_then(|r| r.collection().macro_info(&m.name)) else {
            continue;
        };
        shared += 1;
        let a = canonical(&parse(&m.condition).expect(&m.name));
        let b = canonical(&parse(&up.condition).expect(&up.name));
        if a != b {
            differ.push(format!("macro {}:\n  ours:  {a}\n  falco: {b}", m.name));
        }
    }
    for (name, items) in &ol {
        let Some(r) = reference(name) else { continue };
        let Some(up) = expanded_lists(r).remove(name) else {
            continue;
        };
        shared += 1;
        if *items != up {
            differ.push(format!(
                "list {name}: only ours {:?}, only falco {:?}",
                items.difference(&up).collect::<Vec<_>>(),
                up.difference(items).collect::<Vec<_>>()
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    // Everything in VOCABULARY but always_true (which today's Falco files no longer define),
    // and more lists, is shared.
    assert!(shared >= VOCABULARY.len(), "only {shared} shared names");
}

/// The canonical form tells a different meaning apart (negative control of the test above).
#[test]
fn canonical_form_separates_meanings() {
    let c = |s: &str| canonical(&parse(s).unwrap());
    assert_eq!(
        c("(evt.type in (open,openat) and fd.typechar='f')"),
        c("fd.typechar = f and evt.type in (openat, open)")
    );
    assert_ne!(
        c("evt.type in (open, openat) and fd.typechar = f"),
        c("evt.type in (open, openat) and fd.typechar = d")
    );
    assert_ne!(c("a and (b or c)"), c("(a and b) or c"));
    assert_ne!(
        c("fd.num >= 0 and evt.type = open"),
        c("fd.num > 0 and evt.type = open")
    );
}

/// Per file: (rules, macros, lists, disabled) and each rule's event types.
type Shape = (
    Vec<(usize, usize, usize, usize)>,
    BTreeMap<String, Option<BTreeSet<String>>>,
);

fn load(files: &[PathBuf]) -> (RuleLoader, Shape) {
    let mut loader = RuleLoader::new();
    for f in files {
        loader.load_file(f);
    }
    let engine = loader.compile(&EngineConfig::default());
    let counts = loader
        .results()
        .iter()
        .map(|r| {
            (
                r.counts.rules,
                r.counts.macros,
                r.counts.lists,
                r.counts.disabled_rules,
            )
        })
        .collect();
    let types = engine
        .rules()
        .iter()
        .map(|r| (r.name.clone(), r.event_types.clone()))
        .collect();
    (loader, (counts, types))
}

#[test]
fn falco_files_load_next_to_the_defaults_in_either_order() {
    let Some(dir) = upstream_dir() else { return };
    let defaults = default_rules();
    let (_, (dcounts, dtypes)) = load(std::slice::from_ref(&defaults));
    for set in [
        &["falco_rules.yaml"][..],
        &["falco_rules.yaml", "falco-incubating_rules.yaml"],
        &["falco_rules.yaml", "falco-sandbox_rules.yaml"],
        &["k8s_audit_rules.yaml"],
    ] {
        let files: Vec<PathBuf> = set.iter().map(|f| dir.join(f)).collect();
        let (_, (ucounts, utypes)) = load(&files);
        for defaults_first in [true, false] {
            let mut all = files.clone();
            if defaults_first {
                all.insert(0, defaults.clone());
            } else {
                all.push(defaults.clone());
            }
            let (loader, (counts, types)) = load(&all);
            let what = format!("{set:?}, defaults first: {defaults_first}");
            let errors: Vec<String> = loader
                .results()
                .iter()
                .flat_map(|r| r.errors.iter().map(|e| e.to_string()))
                .collect();
            assert!(errors.is_empty(), "{what}: {errors:?}");
            let expected: Vec<_> = if defaults_first {
                dcounts.iter().chain(&ucounts).copied().collect()
            } else {
                ucounts.iter().chain(&dcounts).copied().collect()
            };
            assert_eq!(counts, expected, "{what}");
            // Same rules, each watching the same event types as when loaded alone.
            let mut alone = utypes.clone();
            alone.extend(dtypes.clone());
            let changed: Vec<_> = alone
                .iter()
                .filter(|(name, t)| types.get(*name) != Some(t))
                .map(|(name, t)| format!("{name}: alone {t:?}, together {:?}", types.get(name)))
                .collect();
            assert!(
                changed.is_empty() && types.len() == alone.len(),
                "{what}: {changed:#?}"
            );
        }
    }
}

#[test]
fn helm_chart_carries_an_identical_copy_of_the_defaults() {
    let chart = repo_root().join("deploy/helm/aerie/files/aerie_rules.yaml");
    let a = std::fs::read(default_rules()).unwrap();
    let b = std::fs::read(&chart).unwrap();
    assert!(
        a == b,
        "{} differs from the defaults: copy config/rules/aerie_rules.yaml over it",
        chart.display()
    );
}

#[test]
fn open_path_filter_stays_narrow_with_the_vocabulary_and_the_tutorial_rule() {
    let mut loader = RuleLoader::new();
    loader.load_file(&default_rules());
    loader.load_file(&tutorial_file());
    let engine = loader.compile(&EngineConfig::default());
    assert!(!loader.has_errors());
    let OpenPathNeed::Paths(f) = engine.open_path_need() else {
        panic!("defaults need every open: {:?}", engine.open_path_need());
    };
    let admits = |p: &str| {
        f.prefixes.iter().any(|a| p.as_bytes().starts_with(a))
            || f.suffixes.iter().any(|a| p.as_bytes().ends_with(a))
    };
    for p in ["/etc/shadow", "/etc/passwd", "/home/a/.ssh/id_rsa"] {
        assert!(admits(p), "{p} must be sent");
    }
    for p in [
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/proc/self/stat",
        "/etc/hostname",
    ] {
        assert!(!admits(p), "{p} needs no rule");
    }
}

/// Custom rules written the way Falco rule authors write them, each on one macro of the
/// vocabulary, against synthetic events: they fire on what the macro describes and not on a
/// close variant.
const AUTHOR_RULES: &str = r#"
- rule: V outbound
  desc: curl connects out
  condition: outbound and proc.name = curl
  output: out %fd.name
  priority: NOTICE
- rule: V etc write
  desc: write below /etc
  condition: open_write and etc_dir
  output: wrote %fd.name
  priority: NOTICE
- rule: V container shell
  desc: a shell in a container
  condition: spawned_process and container and shell_procs and proc_name_exists
  output: shell %proc.name in %container.id
  priority: NOTICE
- rule: V ssh dir
  desc: read below a user's ~/.ssh
  condition: open_read and user_ssh_directory
  output: ssh %fd.name
  priority: NOTICE
- rule: V sensitive
  desc: read a sensitive file
  condition: open_read and sensitive_files and not proc.name in (shell_binaries)
  output: sensitive %fd.name
  priority: NOTICE
- rule: V interactive
  desc: a program run from an ssh session
  condition: spawned_process and interactive
  output: interactive %proc.cmdline
  priority: NOTICE
- rule: V failed open
  desc: a refused open below /root
  condition: open_file_failed and fd.name startswith /root/
  output: failed %fd.name %evt.res
  priority: NOTICE
"#;

#[test]
fn custom_rules_on_the_vocabulary_behave_as_on_falco() {
    let dir = std::env::temp_dir().join(format!("aerie-vocab-author-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("author_rules.yaml");
    std::fs::write(&file, AUTHOR_RULES).unwrap();
    let cfg = DetectorConfig::default().engine_config();
    let mut s = Scenario::with_config(&[default_rules(), file], &cfg);
    let has = |a: &[aerie_alert::Alert], r: &str| rules(a).contains(&r);

    // A login session: sshd, then a shell below it.
    s.spawn(&Proc {
        pid: 50,
        exe: "/usr/sbin/sshd",
        argv: &["sshd"],
        ..Default::default()
    });
    let a = s.spawn(&Proc {
        pid: 51,
        ppid: 50,
        exe: "/usr/bin/bash",
        argv: &["bash"],
        ..Default::default()
    });
    assert!(has(&a, "V interactive"), "{:?}", rules(&a));
    assert!(!has(&a, "V container shell"));
    let a = s.spawn(&Proc {
        pid: 52,
        ppid: 1,
        exe: "/usr/bin/bash",
        argv: &["bash"],
        ..Default::default()
    });
    assert!(!has(&a, "V interactive"));
    // Files.
    assert!(has(&s.open(51, "/etc/hosts", O_WRONLY, 3), "V etc write"));
    assert!(!has(&s.open(51, "/etc/hosts", O_RDONLY, 4), "V etc write"));
    assert!(!has(&s.open(51, "/tmp/etc/x", O_WRONLY, 5), "V etc write"));
    assert!(has(
        &s.open(51, "/home/bob/.ssh/id_rsa", O_RDONLY, 6),
        "V ssh dir"
    ));
    assert!(!has(
        &s.open(51, "/root/.ssh/id_rsa", O_RDONLY, 7),
        "V ssh dir"
    ));
    assert!(has(
        &s.open(51, "/root/secret", O_RDONLY, -13),
        "V failed open"
    ));
    assert!(!has(
        &s.open(51, "/root/secret", O_RDONLY, 8),
        "V failed open"
    ));
    s.spawn(&Proc {
        pid: 53,
        exe: "/usr/bin/python3",
        argv: &["python3"],
        ..Default::default()
    });
    assert!(has(
        &s.open(53, "/etc/pam.d/sshd", O_RDONLY, 3),
        "V sensitive"
    ));
    assert!(has(&s.open(53, "/etc/shadow", O_RDONLY, 4), "V sensitive"));
    assert!(!has(&s.open(53, "/etc/passwd", O_RDONLY, 5), "V sensitive"));
    assert!(!has(&s.open(51, "/etc/shadow", O_RDONLY, 9), "V sensitive"));
    // Containers.
    let a = s.spawn(&Proc {
        pid: 54,
        exe: "/bin/sh",
        argv: &["sh"],
        container: CONTAINER,
        ..Default::default()
    });
    assert!(has(&a, "V container shell"), "{:?}", rules(&a));
    // Network: public addresses count, private and loopback ones do not.
    s.spawn(&Proc {
        pid: 55,
        exe: "/usr/bin/curl",
        argv: &["curl", "https://example.org"],
        ..Default::default()
    });
    for (fd, addr, want) in [
        (3, "198.51.100.7:443", true),
        (4, "10.1.2.3:443", false),
        (5, "127.0.0.1:443", false),
    ] {
        s.socket(55, 2, 1, fd);
        let a = s.connect(
            55,
            fd as i32,
            aerie_detector::fields::SockAddr::Inet(addr.parse().unwrap()),
            0,
        );
        assert_eq!(has(&a, "V outbound"), want, "{addr}: {:?}", rules(&a));
    }
}
